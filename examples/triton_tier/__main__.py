"""``python -m examples.triton_tier serve DIR --grpc-port P --http-port Q --metrics-port R``

Starts the ``tritonserver`` of the ``nvidia-pytriton`` wheel on a model repository written by
``spoof-export CKPT -o PREFIX --triton DIR --triton-backend python``, waits until every model is ready,
prints one JSON line with the endpoints on stdout, and runs until SIGINT/SIGTERM, which stop the server
and its Python-backend stubs. The exit code is the server's (0 after a signal), 2 for bad arguments, 1 when
the server cannot start.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .server import TritonServerError, start_tritonserver


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m examples.triton_tier", description=__doc__.split("\n\n")[1])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run tritonserver on a model repository")
    s.add_argument("repository", help="model repository (spoof-export --triton DIR --triton-backend python)")
    s.add_argument("--host", default="127.0.0.1", help="address the three endpoints listen on")
    s.add_argument("--grpc-port", type=int, default=8001)
    s.add_argument("--http-port", type=int, default=8000)
    s.add_argument("--metrics-port", type=int, default=8002)
    s.add_argument("--log-file", default=None, help="server log (default: this process's stderr)")
    s.add_argument("--log-verbose", type=int, default=0)
    s.add_argument("--ready-timeout-s", type=float, default=120.0)
    s.add_argument("--exit-timeout-s", type=int, default=5, help="grace for in-flight requests on stop")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server = start_tritonserver(
            args.repository,
            grpc_port=args.grpc_port,
            http_port=args.http_port,
            metrics_port=args.metrics_port,
            host=args.host,
            log_path=args.log_file,
            log_verbose=args.log_verbose,
            ready_timeout_s=args.ready_timeout_s,
            exit_timeout_s=args.exit_timeout_s,
            stdout=sys.stderr.buffer if args.log_file is None else None,
        )
    except (TritonServerError, ValueError) as exc:
        print(f"triton_tier: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    print(
        json.dumps(
            {
                "event": "ready",
                "pid": server.pid,
                "grpc": server.grpc_url,
                "http": server.http_url,
                "metrics": server.metrics_url,
                "repository": args.repository,
            }
        ),
        flush=True,
    )
    code: int | None = None
    try:
        while not stop.is_set():
            if not server.alive():
                code = server.proc.returncode
                print(f"triton_tier: tritonserver exited with code {code}", file=sys.stderr)
                break
            stop.wait(0.5)
    finally:
        final = server.stop()
    if code is not None:  # the server ended on its own
        return code if code > 0 else 1
    return 0 if final in (0, -signal.SIGTERM) else 1


if __name__ == "__main__":
    sys.exit(main())
