"""Call-centre adapters on one Triton tier against local inference, in one run, on loopback.

    python benchmarks/triton_tier.py --adapters 2 --calls 20 --seconds 30            # bundled detector
    python benchmarks/triton_tier.py --model wavlm6.onnx --adapters 2 --calls 20 --seconds 30

For each mode, one after the other (``local`` first, then ``triton``):

* ``triton``: the ONNX file is written into a Python-backend model repository
  (:func:`spoof_export.triton_python.write_python_model`, the model ``spoof-export --triton-backend python``
  writes) and the nvidia-pytriton wheel's ``tritonserver`` serves it (:mod:`examples.triton_tier`, one
  instance, ONNX Runtime with one thread); the adapters get ``--model grpc://127.0.0.1:PORT/MODEL``.
* ``local``: the adapters get ``--model FILE`` and run ONNX Runtime themselves (``--threads 1``).

``--adapters`` AudioSocket server processes (``python -m examples.asterisk_audiosocket``) start with their
defaults, and one client process per adapter (``python -m examples.simulate_calls --connect ... --raw``)
plays its share of ``--calls`` calls in real time (20 ms frames, speech-like synthetic tones, started over
``--ramp-s``). The speech gate (Silero VAD) runs in the adapters in both modes: the tier takes the detector.

Reported per mode: calls completed and windows scored, CPU seconds of the serving side (the adapters, plus
the tritonserver and its backend stub processes) per second of call audio, in ms; the same split by
process kind; window lag p50 / p95 (score event minus the send time of the window's last sample, as the
clients see it); verdict latency p50 / p95; the adapters' scheduler batches (mean, from their exit log) and
Triton's own batches (inferences per model execution, from its metrics endpoint); the load average before
and after. The clients' CPU is not counted in the serving side's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples.bench_capacity import _proc_cpu_s, _start_server  # noqa: E402
from examples.simulate_calls import percentiles  # noqa: E402

MODEL_NAME = "detector_python"


def _group_cpu_s(pgid: int) -> float:
    """CPU seconds of every live process in a process group (tritonserver and its stubs)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _metric(text: str, name: str) -> float:
    m = re.search(rf'^{name}\{{model="{MODEL_NAME}",version="1"\}} ([0-9.e+]+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def write_repository(onnx_path: Path, directory: Path, threads: int) -> None:
    from spoof_export.triton_python import write_python_model
    from spoofsdk.manifest import read_onnx_metadata

    meta = {k: v for k, v in read_onnx_metadata(onnx_path).items() if k.startswith("spoof.")}
    write_python_model(
        directory,
        name=MODEL_NAME.removesuffix("_python"),
        onnx_path=onnx_path,
        manifest_metadata=meta,
        max_batch_size=32,
        intra_op_threads=threads,
    )


def run_mode(mode: str, args: argparse.Namespace, model: Path, workdir: Path) -> dict[str, Any]:
    from examples.triton_tier import start_tritonserver

    srv = None
    adapters: list[Any] = []
    runners: list[subprocess.Popen[str]] = []
    load0 = os.getloadavg()
    try:
        if mode == "triton":
            repo = workdir / "repo"
            write_repository(model, repo, args.triton_threads)
            ports = [int(x) for x in args.triton_ports.split(",")]
            srv = start_tritonserver(
                repo,
                grpc_port=ports[0],
                http_port=ports[1],
                metrics_port=ports[2],
                log_path=workdir / "tritonserver.log",
            )
            target = f"{srv.grpc_url}/{MODEL_NAME}"
            metrics0 = srv.metrics()
        else:
            target = str(model)
        shares = [
            args.calls // args.adapters + (1 if i < args.calls % args.adapters else 0)
            for i in range(args.adapters)
        ]
        outs = []
        for i, n in enumerate(shares):
            out = workdir / f"events-{mode}-{i}.jsonl"
            outs.append(out)
            adapters.append(_start_server("audiosocket", out, n, target, ["--threads", "1"]))
        cpu0 = {p.pid: _proc_cpu_s(p.pid) for p, *_ in adapters}
        tcpu0 = _group_cpu_s(srv.pid) if srv is not None else 0.0
        t0 = time.monotonic()
        for (_, port, *_), out, n in zip(adapters, outs, shares, strict=True):
            cmd = [sys.executable, "-m", "examples.simulate_calls", "--server", "audiosocket"]
            cmd += ["--connect", f"127.0.0.1:{port}", "--results", str(out), "--calls", str(n)]
            cmd += ["--seconds", str(args.seconds), "--ramp-s", str(args.ramp_s), "--raw"]
            cmd += ["--max-wall-s", str(args.seconds + args.ramp_s + 120)]
            runners.append(
                subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            )
        reports = []
        for r in runners:
            stdout, stderr = r.communicate(timeout=args.seconds + args.ramp_s + 180)
            try:
                reports.append(json.loads(stdout))
            except json.JSONDecodeError:
                reports.append({"failed": [f"client exit {r.returncode}: {stderr.strip()[-300:]}"]})
        wall = time.monotonic() - t0
        adapter_cpu = sum(_proc_cpu_s(p.pid) - cpu0[p.pid] for p, *_ in adapters)
        triton_cpu = (_group_cpu_s(srv.pid) - tcpu0) if srv is not None else 0.0
        metrics1 = srv.metrics() if srv is not None else ""
        exits = []
        for p, *_ in adapters:
            p.send_signal(signal.SIGTERM)
        for p, _port, _lines, reader in adapters:
            exits.append(p.wait(timeout=60))
            reader.join(10)
    finally:
        for r in runners:
            if r.poll() is None:
                r.kill()
                r.communicate()
        for p, *_ in adapters:
            if p.poll() is None:
                p.kill()
                p.wait()
        if srv is not None:
            srv.stop()
    load1 = os.getloadavg()
    events = [json.loads(x) for out in outs for x in out.read_text().splitlines() if x.strip()]
    verdicts = [e for e in events if e["event"] == "verdict"]
    lags = [x for rep in reports for x in rep.get("raw", {}).get("window_lags_ms", [])]
    vlat = [x for rep in reports for x in rep.get("raw", {}).get("verdict_latency_ms", [])]
    summaries = [
        next((x.strip() for x in list(lines.queue) if "engine stopped" in x), "")
        for _p, _port, lines, _r in adapters
    ]
    batches = [
        re.search(r"(\d+) windows in (\d+) batches \(mean ([0-9.]+), max (\d+)\)", s) for s in summaries
    ]
    call_s = args.calls * args.seconds
    result: dict[str, Any] = {
        "mode": mode,
        "adapters": args.adapters,
        "calls": args.calls,
        "seconds_per_call": args.seconds,
        "completed": sum(int(rep.get("completed", 0)) for rep in reports),
        "verdicts": len(verdicts),
        "labels": {
            k: sum(1 for v in verdicts if v.get("label") == k) for k in ("spoof", "bonafide", "undetermined")
        },
        "windows_scored": sum(1 for e in events if e["event"] == "window" and e.get("state") == "scored"),
        "window_events": sum(1 for e in events if e["event"] == "window"),
        "scores_missing": sum(1 for e in events if e["event"] == "scores_missing"),
        "call_errors": sum(1 for e in events if e["event"] == "call_error"),
        "cpu_ms_per_call_s": round(1000.0 * (adapter_cpu + triton_cpu) / call_s, 2),
        "adapter_cpu_ms_per_call_s": round(1000.0 * adapter_cpu / call_s, 2),
        "triton_cpu_ms_per_call_s": round(1000.0 * triton_cpu / call_s, 2),
        "serving_cpu_pct": round(100.0 * (adapter_cpu + triton_cpu) / wall, 1),
        "window_lag_ms": percentiles(lags),
        "verdict_latency_ms": percentiles(vlat),
        "adapter_batches": [
            {
                "windows": int(m.group(1)),
                "batches": int(m.group(2)),
                "mean": float(m.group(3)),
                "max": int(m.group(4)),
            }
            for m in batches
            if m
        ],
        "client_failures": [f for rep in reports for f in rep.get("failed", [])][:5],
        "adapter_exits": exits,
        "wall_s": round(wall, 1),
        "load_before": [round(x, 2) for x in load0],
        "load_after": [round(x, 2) for x in load1],
    }
    if mode == "triton":
        inf = _metric(metrics1, "nv_inference_count") - _metric(metrics0, "nv_inference_count")
        exe = _metric(metrics1, "nv_inference_exec_count") - _metric(metrics0, "nv_inference_exec_count")
        req = _metric(metrics1, "nv_inference_request_success") - _metric(
            metrics0, "nv_inference_request_success"
        )
        result["triton"] = {
            "requests": int(req),
            "inferences": int(inf),
            "executions": int(exe),
            "mean_batch": round(inf / exe, 2) if exe else None,
        }
    return result


def _row(r: dict[str, Any]) -> str:
    lag, ver = r["window_lag_ms"], r["verdict_latency_ms"]
    ab = r["adapter_batches"]
    mean_ab = round(sum(b["windows"] for b in ab) / max(1, sum(b["batches"] for b in ab)), 2) if ab else None
    tri = r.get("triton", {})
    return (
        f"| {r['mode']} | {r['adapters']} | {r['completed']}/{r['calls']} | {r['windows_scored']} | "
        f"{r['cpu_ms_per_call_s']} ({r['adapter_cpu_ms_per_call_s']} + {r['triton_cpu_ms_per_call_s']}) | "
        f"{lag.get('p50')} / {lag.get('p95')} | {ver.get('p50')} / {ver.get('p95')} | {mean_ab} | "
        f"{tri.get('mean_batch', '-')} | {r['load_before'][0]} / {r['load_after'][0]} |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="exported .onnx (default: the bundled detector)")
    p.add_argument("--adapters", type=int, default=2)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--ramp-s", type=float, default=2.0)
    p.add_argument("--modes", default="local,triton")
    p.add_argument("--triton-threads", type=int, default=1, help="ONNX Runtime threads in the Triton model")
    p.add_argument("--triton-ports", default="18801,18800,18802", help="gRPC,HTTP,metrics (loopback)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.model is None:
        from importlib import resources

        model = Path(str(resources.files("spoofsdk").joinpath("models/default.onnx")))
    else:
        model = Path(args.model)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-triton-") as tmp:
        for mode in args.modes.split(","):
            workdir = Path(tmp) / mode
            workdir.mkdir()
            r = run_mode(mode, args, model, workdir)
            print(json.dumps(r), file=sys.stderr, flush=True)
            results.append(r)
    print(
        "| mode | adapters | calls completed | windows scored "
        "| serving CPU ms per call-s (adapters + Triton) | window lag p50 / p95 ms | verdict p50 / p95 ms "
        "| adapter batch (mean) | Triton batch (mean) "
        "| load 1 min before / after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(_row(r))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
