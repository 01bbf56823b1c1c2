"""Benchmark of the bundled default detector against the candidates it was chosen from.

For each model file, in a fresh child process (so load time and peak RSS are its own): load time of
``Detector(path, num_threads=T)``, per-window latency (one window of the model's own length, batch 1,
median of ``--repeats`` after a warm-up) and real-time factor of ``Detector.score`` on a ``--seconds`` long
clip with the model's own window/hop (RTF = processing time / audio duration), at 1 and 2 threads, plus
peak RSS of the child. Children run interleaved, ``--rounds`` times, and the medians are reported with the
ratio to the default detector measured in the same run (the machine is shared: read the ratios).

Candidates: ``--candidate NAME=PATH`` for exported files (e.g. a trained candidate), and
``--random PRESET`` to export a randomly initialised preset (aasist-l, rawnet2-small, ...) with spoof-export
just for its cost (latency does not depend on the weights).

    .venv/bin/python benchmarks/default_detector.py --random aasist-l --random rawnet2-small \
        --candidate tiny-wavlm=runs/default-detector/candidates/tiny-wavlm.onnx --json out/bench.json
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
import time
from pathlib import Path
from typing import Any

import numpy as np


def _speech_like(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 110 + 40 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 10)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t) ** 2)
    return (0.05 * x + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def _peak_rss_mb() -> float:
    """Peak RSS of this process since exec (VmHWM). ``ru_maxrss`` would also count the parent's
    high-water mark, which a forked child inherits."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(path: str, threads: int, seconds: float, repeats: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    from spoofsdk import Detector

    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    det = Detector(
        path, backend="cpu", num_threads=threads, speech_gate=False
    )  # model cost (gate: gating.py)
    load_s = time.perf_counter() - t0
    win = np.ascontiguousarray(_speech_like(det.window_samples / det.sample_rate, det.sample_rate))
    det.infer_logits([win])
    lat = []
    for _ in range(repeats):
        t = time.perf_counter()
        det.infer_logits([win])
        lat.append(time.perf_counter() - t)
    clip = _speech_like(seconds, det.sample_rate, seed=1)
    det.score(clip[: det.window_samples * 2], sample_rate=det.sample_rate)
    rtf = []
    for _ in range(max(1, repeats // 3)):
        t = time.perf_counter()
        det.score(clip, sample_rate=det.sample_rate)
        rtf.append((time.perf_counter() - t) / seconds)
    return {
        "path": path,
        "threads": threads,
        "import_s": t_import,
        "load_s": load_s,
        "window_s": det.window_samples / det.sample_rate,
        "hop_s": det.hop_samples / det.sample_rate,
        "window_ms": 1000 * statistics.median(lat),
        "rtf": statistics.median(rtf),
        "peak_rss_mb": _peak_rss_mb(),
        "size_mb": os.path.getsize(path) / 1e6,
        "precision": det.manifest.precision,
    }


def export_random(preset: str, out_dir: Path) -> Path:
    from spoof_export import export
    from spoof_train.presets import init_checkpoint

    ckpt = init_checkpoint(preset, None, out_dir / f"{preset}-ckpt", seed=0)
    res = export(ckpt, output=out_dir / preset, latency_repeats=1)
    return Path(res.paths["onnx"])


def run_child(path: Path, threads: int, seconds: float, repeats: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(path), "--threads-child", str(threads),
           "--seconds", str(seconds), "--repeats", str(repeats)]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="default detector (default: the bundled one)")
    p.add_argument("--candidate", action="append", default=[], help="NAME=PATH of an exported candidate")
    p.add_argument("--random", action="append", default=[], help="preset exported with random weights")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seconds", type=float, default=30.0, help="clip length for the RTF (default 30 s)")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all models")
    p.add_argument("--json", default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--threads-child", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.threads_child, args.seconds, args.repeats)))
        return 0

    if args.model is None:
        from importlib import resources

        args.model = str(resources.files("spoofsdk").joinpath("models/default.onnx"))
    models: dict[str, Path] = {"default": Path(args.model)}
    for spec in args.candidate:
        name, _, path = spec.partition("=")
        if not path:
            p.error(f"--candidate: expected NAME=PATH, got {spec!r}")
        models[name] = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.random:
            models[f"{preset} (random weights)"] = export_random(preset, Path(tmp))
        results: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for _ in range(args.rounds):
            for threads in args.threads:
                for name, path in models.items():
                    r = run_child(path, threads, args.seconds, args.repeats)
                    results.setdefault((name, threads), []).append(r)
    rows = []
    for (name, threads), rs in results.items():
        med = {k: statistics.median(x[k] for x in rs) for k in ("load_s", "window_ms", "rtf", "peak_rss_mb")}
        keep = {k: rs[0][k] for k in ("window_s", "hop_s", "size_mb", "precision")}
        rows.append({"model": name, "threads": threads, **med, **keep})
    base = {r["threads"]: r for r in rows if r["model"] == "default"}
    print(f"{'model':34s} {'thr':>3s} {'win/hop s':>9s} {'MB':>6s} {'load s':>7s} {'ms/window':>9s} "
          f"{'RTF':>8s} {'x default':>9s} {'RSS MB':>7s}")  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["threads"], r["model"] != "default", r["model"])):
        ratio = r["rtf"] / base[r["threads"]]["rtf"]
        r["rtf_vs_default"] = ratio
        print(
            f"{r['model']:34s} {r['threads']:3d} {r['window_s']:4.2f}/{r['hop_s']:<4.2f} "
            f"{r['size_mb']:6.2f} {r['load_s']:7.3f} {r['window_ms']:9.2f} {r['rtf']:8.4f} {ratio:9.2f} "
            f"{r['peak_rss_mb']:7.0f}"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"rows": rows, "seconds": args.seconds, "rounds": args.rounds},
                                              indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
