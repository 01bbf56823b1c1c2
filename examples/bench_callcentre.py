"""Measure the call-centre servers with the load simulator, against baselines in the same run.

    python -m examples.bench_callcentre --model tiny.onnx [--seconds 8] [--calls 25,50,100,200]
    python -m examples.bench_callcentre --synthetic 256 --calls 10,25,50   # a model with a real cost

Runs, in one process and one after the other (loopback only, every run bounded):

1. the model alone: ms per window of ``Detector.infer_logits`` at batch 1 and 16 (inference cost);
2. a *null* server per protocol that parses every frame and discards it, with the same simulated
   real-time callers: the CPU cost of the callers + protocol handling, without scoring;
3. the real servers at the second ``--calls`` count of concurrent real-time calls, for
   ``push_interval_ms`` 0 and 60, and the same calls sent as fast as possible (``x_realtime``: seconds
   of call audio scored per second of wall time, i.e. the real-time calls this process could carry);
4. the AudioSocket server at the other ``--calls`` counts.

Reported per run: CPU ms per second of call audio (process total, callers included), the share of a
core used, window lag (score time - time the window's last sample was sent) p50/p95, verdict latency
(hangup -> verdict) p50/p95, mean scheduler batch, and audio dropped / pushes shed (overload).
The machine's load average is printed before and after: other processes on a shared host slow every
figure, so compare rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import uuid
from typing import Any

import numpy as np

from .asterisk_audiosocket.protocol import KIND_HANGUP, read_frame
from .simulate_calls import audiosocket_call, media_stream_call, simulate, synth_audio


def make_synthetic_detector(path: str, channels: int = 256) -> str:
    """Write a random conv detector whose inference cost is closer to a real front-end than the tiny
    test model's: Conv1d(1->C, 25 ms kernel, 10 ms stride) + ReLU + Conv1d(C->C, 1) + ReLU + mean + linear
    (about 17 M multiply-adds per 1 s window at C=256). Scores are meaningless; only the cost matters."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from spoofsdk.manifest import Manifest, write_onnx_manifest

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.standard_normal((channels, 1, 400)) * 0.05).astype(np.float32), "w1"),
        numpy_helper.from_array(
            (rng.standard_normal((channels, channels, 1)) * 0.05).astype(np.float32), "w2"
        ),
        numpy_helper.from_array((rng.standard_normal((channels, 2)) * 0.05).astype(np.float32), "w3"),
        numpy_helper.from_array(np.zeros(2, dtype=np.float32), "b3"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["audio", "axis1"], ["x"]),
        helper.make_node("Conv", ["x", "w1"], ["c1"], strides=[160]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("ReduceMean", ["r2"], ["m"], axes=[2], keepdims=0),
        helper.make_node("Gemm", ["m", "w3", "b3"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "synthetic_detector",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # this onnxruntime rejects the newest IR (docs/cpu-baseline.md)
    manifest = Manifest(
        sample_rate=16000,
        window_samples=16000,
        hop_samples=8000,
        min_samples=400,
        backbone="synthetic-conv",
        exporter="examples.bench_callcentre",
        exporter_version="1",
    )
    write_onnx_manifest(model, manifest)
    onnx.save(model, path)
    return path


def _one_batch_s(det: Any, windows: list[Any]) -> float:
    t0 = time.perf_counter()
    det.infer_logits(windows, max_batch=len(windows))
    return time.perf_counter() - t0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def model_cost(model: str, threads: int) -> dict[str, float]:
    from spoofsdk import Detector

    det = Detector(model, backend="cpu", num_threads=threads)
    rng = np.random.default_rng(0)
    w = [(0.1 * rng.standard_normal(det.window_samples)).astype(np.float32) for _ in range(16)]
    det.infer_logits(w)  # warm-up
    out = {}
    for batch in (1, 16):
        reps = max(4, int(0.5 / max(1e-4, _one_batch_s(det, w[:batch]))))  # about half a second each
        t0, c0 = time.perf_counter(), _cpu()
        for _ in range(reps):
            det.infer_logits(w[:batch], max_batch=batch)
        # CPU time is what a loaded, shared host does not inflate; wall time is what a caller waits
        out[f"cpu_ms_per_window_b{batch}"] = round(1000 * (_cpu() - c0) / (reps * batch), 4)
        out[f"wall_ms_per_window_b{batch}"] = round(1000 * (time.perf_counter() - t0) / (reps * batch), 4)
    det.close()
    return out


async def null_run(server: str, calls: int, seconds: float) -> dict[str, Any]:
    """Real-time callers into a server that parses and discards every message."""
    ended: list[float] = []

    async def handle_as(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            f = await read_frame(reader)
            if f is None or f.kind == KIND_HANGUP:
                break
        writer.close()

    async def handle_ws(ws: Any) -> None:
        import base64

        async for raw in ws:
            msg = json.loads(raw)
            if msg.get("event") == "media":
                base64.b64decode(msg["media"]["payload"], validate=True)
            elif msg.get("event") == "stop":
                break

    if server == "audiosocket":
        srv: Any = await asyncio.start_server(handle_as, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
    else:
        from websockets.asyncio.server import serve

        srv = await serve(handle_ws, "127.0.0.1", 0, compression=None)
        port = next(iter(srv.sockets)).getsockname()[1]
    pcms = [synth_audio("tones", seconds, seed=i % 16) for i in range(min(calls, 16))]
    cpu0, t0 = _cpu(), time.monotonic()

    async def one(i: int) -> None:
        await asyncio.sleep(i / calls)
        pcm = pcms[i % len(pcms)]
        if server == "audiosocket":
            r = await audiosocket_call("127.0.0.1", port, str(uuid.uuid4()), pcm, realtime=True)
        else:
            r = await media_stream_call(
                f"ws://127.0.0.1:{port}/", "CA" + uuid.uuid4().hex, pcm, realtime=True
            )
        ended.append(r.ended - r.started)

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(calls))), 10 * seconds + 60)
    cpu, wall = _cpu() - cpu0, time.monotonic() - t0
    srv.close()
    await srv.wait_closed()
    return {
        "cpu_ms_per_audio_s": round(1000 * cpu / (calls * seconds), 3),
        "cores": round(cpu / wall, 3),
        "send_overrun_s": round(max(ended) - seconds, 3),
    }


def row(name: str, r: dict[str, Any], seconds: float) -> dict[str, Any]:
    calls = r["calls"]
    return {
        "run": name,
        "completed": f"{r['completed']}/{calls}",
        "cpu_ms_per_audio_s": round(1000 * r["cpu_s"] / (calls * seconds), 3),
        "cores": round(r["cpu_s"] / r["wall_s"], 3),
        "lag_p50_ms": r["window_lag_ms"].get("p50"),
        "lag_p95_ms": r["window_lag_ms"].get("p95"),
        "verdict_p50_ms": r["verdict_latency_ms"].get("p50"),
        "verdict_p95_ms": r["verdict_latency_ms"].get("p95"),
        "mean_batch": r.get("scheduler", {}).get("mean_batch"),
        "max_rss_mb": r["max_rss_mb"],
        "dropped_s": r["dropped_s"],
        "shed": r["pushes_shed"],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    counts = [int(x) for x in args.calls.split(",")]
    n0 = counts[min(1, len(counts) - 1)]
    for server in ("audiosocket", "media_stream"):
        base = await null_run(server, n0, args.seconds)
        rows.append({"run": f"{server} null server, {n0} calls", "completed": f"{n0}/{n0}", **base})
        for interval in (0.0, 60.0):
            r = await simulate(
                server=server,
                calls=n0,
                concurrency=n0,
                seconds=args.seconds,
                realtime=True,
                model=args.model,
                engine_options={"threads": args.threads, "config": {"push_interval_ms": interval}},
                max_wall_s=10 * args.seconds + 60,
            )
            rows.append(row(f"{server}, {n0} calls, push_interval_ms={interval:g}", r, args.seconds))
        r = await simulate(
            server=server,
            calls=n0,
            concurrency=n0,
            seconds=args.seconds,
            realtime=False,
            model=args.model,
            engine_options={"threads": args.threads},
            max_wall_s=10 * args.seconds + 60,
        )
        rows.append(
            {
                **row(f"{server}, {n0} calls sent as fast as possible", r, args.seconds),
                "x_realtime": r["throughput_x_realtime"],
            }
        )
    for n in counts:
        if n == n0:
            continue
        r = await simulate(
            server="audiosocket",
            calls=n,
            concurrency=n,
            seconds=args.seconds,
            realtime=True,
            model=args.model,
            engine_options={"threads": args.threads, "config": {"push_interval_ms": 60.0}},
            max_wall_s=10 * args.seconds + 60,
        )
        rows.append(row(f"audiosocket, {n} calls, push_interval_ms=60", r, args.seconds))
    return {"rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m examples.bench_callcentre", description=__doc__.split("\n")[0]
    )
    p.add_argument("--model", default=None, help="detector to serve (default: --synthetic)")
    p.add_argument("--synthetic", type=int, default=None, metavar="C",
                   help="serve a random conv detector with C channels (for its cost)")  # fmt: skip
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--calls", default="25,50,100,200")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.synthetic is not None:
        import tempfile

        args.model = make_synthetic_detector(
            os.path.join(tempfile.mkdtemp(prefix="spoof-bench-"), "synthetic.onnx"), args.synthetic
        )
    if args.model is None:
        p.error("give --model PATH or --synthetic C")
    load0 = os.getloadavg()
    report: dict[str, Any] = {"model": model_cost(args.model, args.threads)}
    report.update(asyncio.run(run(args)))
    report["loadavg_before_after"] = [round(load0[0], 2), round(os.getloadavg()[0], 2)]
    report["cpus"] = os.cpu_count()
    print(json.dumps(report, indent=2))
    keys = [*report["rows"][1].keys(), "x_realtime"]
    print("\n| " + " | ".join(keys) + " |", file=sys.stderr)
    print("|" + "---|" * len(keys), file=sys.stderr)
    for r in report["rows"]:
        print("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |", file=sys.stderr)
    print(f"model alone: {report['model']}; load average before/after {report['loadavg_before_after']} "
          f"on {report['cpus']} CPUs", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
