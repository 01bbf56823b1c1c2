"""Detector runtime benchmark: spoofsdk Detector (ONNX Runtime, CPU) vs PyTorch eager, same model, same run.

The model is WavLM-base-shaped (``transformers.WavLMConfig()`` defaults, random weights) pruned to 12
and 6 transformer layers by building the pruned config directly, with a mean-pool + linear head
(contract B: ``audio [batch, samples] -> logits [batch, 2]``), exported to ONNX FP32 with
``torch.onnx.export(dynamo=False)`` after removing the weight-norm parametrization of the positional
convolution, and given a manifest with :func:`spoofsdk.manifest.write_onnx_manifest` (4 s window, 2 s hop).

Measured, each in a fresh subprocess so that peak RSS belongs to one side only:

* per-window latency (one 4 s window, batch 1, median of repeats) and real-time factor of scoring a
  20 s clip (windows with 50 % overlap, i.e. what ``Detector.score`` does), Detector vs torch eager,
  both one window per inference (``batch_size=1``); plus ``Detector.score`` with
  ``batch_size=8`` (the GPU default; the CPU default is 1);
* peak RSS of each process;
* how many real-time calls this machine sustains: K streaming sessions push 20 ms frames from K
  threads, (a) each session running its own inference per window, (b) all sessions sharing a
  :class:`spoofsdk.BatchScheduler`; calls sustained = windows scored per second x hop (2 s);
* memory per idle session (RSS growth over 200 open sessions).

Usage::

    .venv/bin/python benchmarks/detector.py            # both depths, ~3-6 min on 2 cores
    .venv/bin/python benchmarks/detector.py --layers 6 --repeats 3

Machines here are shared: absolute times are noisy; read the ratios, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SR = 16000
WINDOW = 4 * SR
HOP = 2 * SR
CLIP_S = 20.0
SEED = 0
BUFFERS = (("default buffer (4 windows)", None), ("buffer_s=6 (window + hop)", 6.0))


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _audio(seconds: float, seed: int = 1) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * 150 * t) * (
        0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t)
    ) + 0.05 * rng.standard_normal(t.size)
    return x.astype(np.float32)


# ----------------------------------------------------------------------------- model (torch side)
def build_model(layers: int) -> Any:
    import torch
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(SEED)
    config = WavLMConfig(num_hidden_layers=layers)  # the pruned config, built directly

    class Detector(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = WavLMModel(config)
            self.head = torch.nn.Linear(config.hidden_size, 2)

        def forward(self, audio: torch.Tensor) -> torch.Tensor:
            hidden = self.backbone(audio).last_hidden_state
            return self.head(hidden.mean(dim=1))

    model = Detector().eval()
    conv = model.backbone.encoder.pos_conv_embed.conv
    if hasattr(conv, "parametrizations"):  # weight norm: bake it into a plain weight for the legacy exporter
        torch.nn.utils.parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
    return model


def export(layers: int, path: Path) -> dict[str, Any]:
    import torch

    from spoofsdk.manifest import Manifest, write_onnx_manifest

    t0 = time.perf_counter()
    model = build_model(layers)
    dummy = torch.zeros(1, WINDOW)
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        input_names=["audio"],
        output_names=["logits"],
        dynamic_axes={"audio": {0: "batch", 1: "samples"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    manifest = Manifest(
        sample_rate=SR,
        window_samples=WINDOW,
        hop_samples=HOP,
        min_samples=400,
        precision="fp32",
        layers=layers,
        backbone="wavlm-base (random weights)",
        exporter="benchmarks/detector.py",
        exporter_version="1",
    )
    write_onnx_manifest(str(path), manifest)
    return {"export_s": time.perf_counter() - t0, "onnx_mb": path.stat().st_size / 2**20}


# ----------------------------------------------------------------------------- children
def child_torch(layers: int, repeats: int, threads: int) -> dict[str, Any]:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    model = build_model(layers)
    window = torch.from_numpy(_audio(4.0)[None, :])
    clip = _audio(CLIP_S)
    starts = [*range(0, clip.size - WINDOW + 1, HOP)]
    if starts[-1] + WINDOW < clip.size:
        starts.append(clip.size - WINDOW)
    with torch.inference_mode():
        logits = model(window).numpy()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(window)
            times.append(time.perf_counter() - t0)
        t0, c0 = time.perf_counter(), time.process_time()
        for s in starts:
            model(torch.from_numpy(clip[None, s : s + WINDOW]))
        clip_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    return {
        "window_ms": 1000 * statistics.median(times),
        "rtf": clip_s / CLIP_S,
        "cpu_s_per_window": cpu_s / len(starts),
        "peak_rss_mb": _peak_rss_mb(),
        "logits": np.asarray(logits).tolist(),
    }


def child_detector(onnx_path: str, repeats: int, threads: int, batch_size: int) -> dict[str, Any]:
    from spoofsdk import Detector
    from spoofsdk.backends.ort import OrtOptions

    rss0 = _rss_mb()
    det = Detector(
        onnx_path, backend="cpu", num_threads=threads, batch_size=batch_size,
        ort_options=OrtOptions(inter_op_num_threads=1), speech_gate=False,  # model cost (gate: gating.py)
    )  # fmt: skip
    window = _audio(4.0)
    clip = _audio(CLIP_S)
    det.score(window, SR)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        det.score(window, SR)
        times.append(time.perf_counter() - t0)
    t0, c0 = time.perf_counter(), time.process_time()
    clip_score = det.score(clip, SR)
    clip_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    logits = det._backend.run(window[None, :])  # raw logits for the parity check
    loaded_rss = _rss_mb()
    return {
        "window_ms": 1000 * statistics.median(times),
        "rtf": clip_s / CLIP_S,
        "cpu_s_per_window": cpu_s / len(clip_score.windows),
        "clip_windows": len(clip_score.windows),
        "peak_rss_mb": _peak_rss_mb(),
        "model_rss_mb": loaded_rss - rss0,
        "logits": logits.tolist(),
    }


def child_sessions(onnx_path: str, buffer_s: float | None, audio_s: float, n: int = 200) -> dict[str, Any]:
    """RSS growth per open session (8 kHz mu-law call), fresh or after ``audio_s`` of audio pushed."""
    import numpy as np

    from spoofsdk import Detector

    det = Detector(onnx_path, backend="cpu", num_threads=1)
    kwargs = {} if buffer_s is None else {"buffer_s": buffer_s}
    frame = np.random.default_rng(0).integers(0, 256, int(audio_s * 8000), dtype=np.uint8).tobytes()
    # Windows completed by the pushes are not what we measure: keep the audio shorter than one window.
    assert audio_s * 16000 < det.window_samples
    before = _rss_mb()
    sessions = [det.stream(8000, encoding="mulaw", **kwargs) for _ in range(n)]
    if frame:
        for sess in sessions:
            sess.push(frame)
    return {"kb_per_session": 1024 * (_rss_mb() - before) / n}


def child_calls(onnx_path: str, calls: int, seconds: float, threads: int) -> dict[str, Any]:
    """K concurrent calls pushing 20 ms frames as fast as possible: with and without the scheduler."""
    from spoofsdk import BatchScheduler, Detector
    from spoofsdk.backends.ort import OrtOptions

    det = Detector(
        onnx_path, backend="cpu", num_threads=threads, ort_options=OrtOptions(inter_op_num_threads=1),
        speech_gate=False,  # synthetic audio; the model's cost (the gate's: benchmarks/gating.py)
    )  # fmt: skip
    audio = [_audio(seconds, seed=10 + i) for i in range(calls)]
    det.score(audio[0][:WINDOW], SR)  # warm-up
    frame = SR // 50
    out: dict[str, Any] = {}
    for mode in ("per_window", "batched"):
        sched = BatchScheduler(det, max_batch=min(8, calls), max_wait_ms=20.0) if mode == "batched" else None
        windows = [0] * calls
        barrier = threading.Barrier(calls + 1)

        def call(
            i: int,
            sched: BatchScheduler | None = sched,
            barrier: threading.Barrier = barrier,
            windows: list[int] = windows,
        ) -> None:
            with det.stream(SR, encoding="float32", scheduler=sched) as sess:
                barrier.wait()
                x = audio[i]
                for k in range(0, x.size, frame):
                    sess.push(x[k : k + frame])
                windows[i] = len(sess.flush().windows)

        ts = [threading.Thread(target=call, args=(i,)) for i in range(calls)]
        for t in ts:
            t.start()
        barrier.wait()
        t0, c0 = time.perf_counter(), time.process_time()
        for t in ts:
            t.join()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        stats = sched.stats() if sched else None
        if sched:
            sched.close()
        wps = sum(windows) / wall
        out[mode] = {
            "windows": sum(windows),
            "wall_s": wall,
            "windows_per_s": wps,
            "calls_sustained": wps * HOP / SR,
            "cpu_s_per_window": cpu / sum(windows),
            # On an otherwise idle machine the CPU is the limit: cores x hop / CPU-seconds per window.
            "calls_sustained_idle_estimate": (os.cpu_count() or 1) * (HOP / SR) / (cpu / sum(windows)),
            "mean_batch": stats.mean_batch if stats else 1.0,
        }
    return out


# ----------------------------------------------------------------------------- orchestration
def _spawn(*args: str) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False, env=env, timeout=1800
    )
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, nargs="+", default=[12, 6])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calls", type=int, default=8, help="concurrent simulated calls for the scheduler test")
    p.add_argument("--call-seconds", type=float, default=10.0)
    p.add_argument("--child", choices=("torch", "detector", "calls", "sessions"), help=argparse.SUPPRESS)
    p.add_argument("--buffer-s", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--batch-size", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--audio-s", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--onnx", help=argparse.SUPPRESS)
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args()

    if args.child == "torch":
        print(json.dumps(child_torch(args.layers[0], args.repeats, args.threads)))
        return
    if args.child == "detector":
        print(json.dumps(child_detector(args.onnx, args.repeats, args.threads, args.batch_size)))
        return
    if args.child == "sessions":
        print(json.dumps(child_sessions(args.onnx, args.buffer_s, args.audio_s)))
        return
    if args.child == "calls":
        print(json.dumps(child_calls(args.onnx, args.calls, args.call_seconds, args.threads)))
        return

    import numpy as np

    results: dict[str, Any] = {"threads": args.threads, "repeats": args.repeats, "clip_s": CLIP_S}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for layers in args.layers:
            path = Path(tmp) / f"wavlm{layers}.onnx"
            exp = _spawn_export(layers, path)
            common = ["--layers", str(layers), "--repeats", str(args.repeats), "--threads", str(args.threads)]
            torch_r = _spawn("--child", "torch", *common)
            # batch_size=1: one window per inference, like the torch loop (like-for-like latency, RTF, RSS);
            # batch_size=8: Detector.score's default, which batches a clip's windows.
            det_r = _spawn("--child", "detector", "--onnx", str(path), "--batch-size", "1", *common)
            det8 = _spawn("--child", "detector", "--onnx", str(path), "--batch-size", "8", *common)
            det8.pop("logits")
            diff = float(np.max(np.abs(np.array(torch_r.pop("logits")) - np.array(det_r.pop("logits")))))
            row: dict[str, Any] = {
                "detector_batch8": det8,
                "export": exp,
                "torch": torch_r,
                "detector": det_r,
                "max_abs_logit_diff": diff,
            }
            if layers == min(args.layers):
                row["sessions"] = {
                    f"{label}, {audio:g} s pushed": _spawn(
                        "--child", "sessions", "--onnx", str(path), "--audio-s", str(audio),
                        *(["--buffer-s", str(buf)] if buf else []),
                    )["kb_per_session"]
                    for label, buf in BUFFERS
                    for audio in (0.0, 3.5)
                }  # fmt: skip
                row["calls"] = _spawn(
                    "--child", "calls", "--onnx", str(path), "--calls", str(args.calls),
                    "--call-seconds", str(args.call_seconds), "--threads", str(args.threads),
                )  # fmt: skip
            results[f"wavlm{layers}"] = row
            _print_row(layers, row)
    results["total_s"] = time.perf_counter() - t_start
    print(f"\ntotal {results['total_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def _spawn_export(layers: int, path: Path) -> dict[str, Any]:
    here = str(Path(__file__).parent)
    code = (
        f"import json, sys; sys.path.insert(0, {here!r}); import detector as b; from pathlib import Path; "
        f"print(json.dumps(b.export({layers}, Path({str(path)!r}))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=1800
    )
    if proc.returncode != 0:
        raise SystemExit(f"export failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _print_row(layers: int, row: dict[str, Any]) -> None:
    t, d = row["torch"], row["detector"]
    e = row["export"]
    print(f"\nWavLM-base {layers} layers (ONNX {e['onnx_mb']:.0f} MB, export {e['export_s']:.0f} s,"
          f" max |logit diff| torch vs Detector {row['max_abs_logit_diff']:.2e})")  # fmt: skip
    print("| | torch eager | Detector (ORT CPU) | ratio |")
    print("|---|---|---|---|")
    print(f"| 4 s window, batch 1 (ms, median) | {t['window_ms']:.0f} | {d['window_ms']:.0f} | "
          f"{t['window_ms'] / d['window_ms']:.2f}x |")  # fmt: skip
    print(f"| real-time factor, {CLIP_S:.0f} s clip, 2 s hop ({d['clip_windows']} windows) "
          f"| {t['rtf']:.3f} | {d['rtf']:.3f} | {t['rtf'] / d['rtf']:.2f}x |")  # fmt: skip
    tc, dc = t["cpu_s_per_window"], d["cpu_s_per_window"]
    print(f"| CPU-seconds per window (20 s clip) | {tc:.2f} | {dc:.2f} | {tc / dc:.2f}x |")
    print(f"| peak RSS (MB) | {t['peak_rss_mb']:.0f} | {d['peak_rss_mb']:.0f} | "
          f"{t['peak_rss_mb'] / d['peak_rss_mb']:.2f}x |")  # fmt: skip
    d8 = row["detector_batch8"]
    print(f"| Detector batch_size=8 (GPU default): RTF / peak RSS | | {d8['rtf']:.3f} / "
          f"{d8['peak_rss_mb']:.0f} MB | {t['rtf'] / d8['rtf']:.2f}x |")  # fmt: skip
    print(f"model in memory (RSS growth on load + first runs): {d['model_rss_mb']:.0f} MB")
    for label, kb in row.get("sessions", {}).items():
        print(f"idle session, {label}: {kb:.0f} kB")
    if "calls" in row:
        a, b = row["calls"]["per_window"], row["calls"]["batched"]
        print("| concurrent calls | windows/s | calls sustained (this run) | CPU-s per window "
              "| calls sustained, idle-machine estimate | mean batch |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        for name, r in (("one inference per window", a), ("BatchScheduler", b)):
            print(f"| {name} | {r['windows_per_s']:.2f} | {r['calls_sustained']:.1f} "
                  f"| {r['cpu_s_per_window']:.2f} | {r['calls_sustained_idle_estimate']:.1f} "
                  f"| {r['mean_batch']:.1f} |")  # fmt: skip
        print(f"batched / per-window: {b['windows_per_s'] / a['windows_per_s']:.2f}x (wall), "
              f"{a['cpu_s_per_window'] / b['cpu_s_per_window']:.2f}x (CPU per window)")  # fmt: skip


if __name__ == "__main__":
    main()
