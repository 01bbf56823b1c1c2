"""Command-line plumbing shared by the call-centre servers: options, engine construction, signals."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from spoofsdk import Detector, SpoofError

from .engine import EngineConfig, JsonLinesSink, ScoringEngine

__all__ = [
    "add_engine_arguments",
    "build_engine",
    "configure_logging",
    "main_guard",
    "run_server",
    "run_until_signalled",
]

logger = logging.getLogger("spoofsdk.examples")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("detector and batching")
    g.add_argument("--model", default=None,
                   help="exported detector (.onnx / .trt), or a model on a Triton tier "
                        "(grpc://host:8001/MODEL or http://...); default: the bundled one")  # fmt: skip
    g.add_argument("--backend", default="auto", choices=("auto", "cpu", "cuda", "tensorrt", "triton"))
    g.add_argument("--remote-timeout-s", type=float, default=5.0,
                   help="Triton tier: deadline of one inference request")  # fmt: skip
    g.add_argument("--remote-retries", type=int, default=3,
                   help="Triton tier: retries after a connection failure (exponential backoff)")  # fmt: skip
    g.add_argument("--threads", type=int, default=1,
                   help="ONNX Runtime intra-op threads (default 1: measured best for these servers, whose "
                        "parallelism is across calls; 0 = ONNX Runtime's default, one per core)")  # fmt: skip
    g.add_argument("--workers", type=int, default=1,
                   help="inference threads of the batching scheduler, each running one batch at a time with "
                        "--threads intra-op threads (raise to use more cores for inference)")  # fmt: skip
    g.add_argument("--max-batch", type=int, default=None, help="largest inference batch (default 16)")
    g.add_argument("--max-wait-ms", type=float, default=2.0, help="batch fill wait once work is queued")
    g.add_argument("--max-queue", type=int, default=1024, help="scheduler queue bound, in windows")
    g.add_argument("--queue-timeout-s", type=float, default=30.0,
                   help="a push waits this long for room in the scheduler queue and for its scores before "
                        "it is shed (default 30 s, as long as a call's finish: windows of a push that gave "
                        "up are still inferred, so a short bound only throws scores away)")  # fmt: skip
    c = parser.add_argument_group("calls and output")
    c.add_argument("--max-calls", type=int, default=200, help="concurrent calls accepted")
    c.add_argument("--max-pending-s", type=float, default=5.0,
                   help="per-call audio waiting for scoring before the oldest is dropped")  # fmt: skip
    c.add_argument("--max-call-s", type=float, default=4 * 3600.0, help="longest call scored")
    c.add_argument("--max-lag-ms", type=float, default=0.0,
                   help="reject new calls while scores run this late (0 = off)")  # fmt: skip
    c.add_argument("--push-interval-ms", type=float, default=0.0,
                   help="push each call's audio at most this often (0 = every frame)")  # fmt: skip
    c.add_argument("--out", default="-", help="JSON-lines event file (appended; '-' = stdout)")
    c.add_argument("--out-queue", type=int, default=10_000,
                   help="events waiting for a slow --out consumer (per kind: windows / others) before "
                        "new ones are dropped (counted, reported as an events_dropped line)")  # fmt: skip
    c.add_argument("--no-windows", action="store_true", help="write verdicts only, not per-window scores")
    c.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def build_engine(args: argparse.Namespace, on_event: Any = None) -> tuple[ScoringEngine, JsonLinesSink]:
    """Load the detector and build the engine from parsed options (raises SpoofError on a bad model)."""
    remote = {"timeout_s": args.remote_timeout_s, "retries": args.remote_retries}
    detector = Detector(args.model, backend=args.backend, num_threads=args.threads, remote_options=remote)
    logger.info("loaded %r (backend %s)", detector, detector.backend)
    config = EngineConfig(
        max_calls=args.max_calls,
        max_pending_s=args.max_pending_s,
        max_call_s=args.max_call_s,
        push_interval_ms=args.push_interval_ms,
        max_lag_ms=args.max_lag_ms,
        emit_windows=not args.no_windows,
    )
    options: dict[str, Any] = {
        "max_wait_ms": args.max_wait_ms,
        "max_queue": args.max_queue,
        "timeout_s": args.queue_timeout_s,
        "num_workers": args.workers,
    }
    if args.max_batch is not None:
        options["max_batch"] = args.max_batch
    sink = JsonLinesSink(args.out, max_queue=args.out_queue)
    try:
        engine = ScoringEngine(
            detector, config=config, sink=sink, on_event=on_event, scheduler_options=options
        )
    except BaseException:
        sink.close()
        raise
    return engine, sink


async def run_until_signalled(
    start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
) -> None:
    """Run ``start()``, wait for SIGINT or SIGTERM, then run ``stop()`` (a second signal is ignored)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await start()
        await stopping.wait()
        logger.info("signal received: finishing active calls and shutting down")
        await stop()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run_server(args: argparse.Namespace, make_server: Callable[[ScoringEngine], Any]) -> int:
    """Build the engine, start ``make_server(engine)``, serve until SIGINT/SIGTERM, shut down cleanly."""

    async def run() -> None:
        engine, sink = build_engine(args)
        server = make_server(engine)

        async def stop() -> None:
            await server.close()
            await engine.shutdown()

        try:
            await run_until_signalled(server.start, stop)
        finally:
            if not engine.closed:  # start() failed (e.g. the port is taken)
                await engine.shutdown()
            sink.close()

    return main_guard(run)


def main_guard(run: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """asyncio.run(run()) with typed exit codes: 0 ok, 2 bad model or options, 3 cannot listen."""
    try:
        asyncio.run(run())
    except SpoofError as exc:
        logger.error("%s: %s", type(exc).__name__, exc)
        return 2
    except OSError as exc:
        logger.error("cannot listen: %s", exc)
        return 3
    return 0
