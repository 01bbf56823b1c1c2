"""Export and compression benchmark (issue 5 item 4), all variants in one run on this machine.

A WavLM-base-shaped detector (``wavlm-base`` preset, ``ffn`` back-end, random weights: speed does not
depend on the weights) as

- PyTorch eager, 12 layers (how the research code runs),
- ONNX Runtime FP32, 12 layers and 6 layers (first 6 layers of the same model),
- ONNX Runtime int8 (CPU target), 6 layers, calibrated on real corpus-v1 training audio, plus the levers
  tried on the way (ONNX Runtime's default Q/DQ placement, quantising the first conv, per-tensor
  weights, MatMul-only, the TensorRT-style symmetric s8 file, graph optimisation level),

Latency is per 4.04 s window (64,600 samples), batch 1, ``--threads`` intra-op threads. The machine is
shared: variants are timed **interleaved** (round-robin, one window each per round) so load changes
hit every variant alike; read the ratios. Peak memory is the max RSS of a fresh spawned process that
loads one variant and scores two windows (so it includes the Python + runtime baseline, reported too).
ONNX Runtime profiles (``enable_profiling``) of FP32-6 and int8-6 say where the time goes.

    .venv/bin/python benchmarks/export.py --calib ../shared/data/corpus-v1 --repeats 7 --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

WINDOW = 64600
SR = 16000


def _vm(key: str) -> float:
    """``VmHWM`` / ``VmRSS`` of this process in MiB (``ru_maxrss`` survives ``exec`` on Linux, so a spawned
    child would report its parent's peak; the kernel's per-address-space high-water mark does not)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_child(kind: str, path: str, threads: int) -> dict[str, float]:
    """Spawned: load one variant, score two windows, return RSS (MiB) at start, after load, and peak."""
    base = _vm("VmRSS")
    x = np.random.default_rng(0).normal(0, 0.1, (1, WINDOW)).astype(np.float32)
    if kind == "torch":
        import torch

        from spoof_train.checkpoint import load_checkpoint

        torch.set_num_threads(threads)
        model, _, _ = load_checkpoint(path)
        loaded = _vm("VmRSS")
        with torch.no_grad():
            for _ in range(2):
                model(torch.from_numpy(x))
    else:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        loaded = _vm("VmRSS")
        for _ in range(2):
            sess.run(None, {"audio": x})
    return {"base_mib": base, "after_load_mib": loaded, "peak_mib": _vm("VmHWM")}


def peak_rss(kind: str, path: str, threads: int) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(_rss_child, kind, path, threads).result()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calib", required=True, help="calibration set (corpus-v1 directory or a manifest)")
    ap.add_argument("--calib-files", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work-dir", default=None, help="keep the ONNX files here (default: a temp dir)")
    ap.add_argument("--extra", action="append", default=[], help="NAME=PATH of another 6-layer ONNX to time")
    ap.add_argument("--no-levers", action="store_true", help="only the four headline variants")
    ap.add_argument("--json", default=None, help="write all figures here")
    args = ap.parse_args()

    import logging

    import onnxruntime as ort
    import torch

    from spoof_export.audio import load_audio_set
    from spoof_export.checkpoint import prune_layers
    from spoof_export.onnx_export import export_onnx
    from spoof_export.quantize import quantize_int8
    from spoof_export.validate import parse_ort_profile
    from spoof_train.checkpoint import save_checkpoint
    from spoof_train.models import build_detector
    from spoof_train.presets import get_preset

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="spoof-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    cfg12 = get_preset("wavlm-base", backend="ffn")
    m12 = build_detector(cfg12, seed=0).eval()
    ck12 = work / "wavlm12-ckpt"
    if not ck12.exists():
        save_checkpoint(ck12, m12, cfg12, {"origin": "benchmark", "trained": False})
    m6, _cfg6 = prune_layers(m12, cfg12, 6)
    files: dict[str, Path] = {"onnx-fp32-12": work / "fp32-12.onnx", "onnx-fp32-6": work / "fp32-6.onnx"}
    for name, model in (("onnx-fp32-12", m12), ("onnx-fp32-6", m6)):
        if not files[name].exists():
            export_onnx(model, files[name], opset=17, example_samples=WINDOW)
    print(f"exported FP32 12/6 layers to {work}", flush=True)

    calib = load_audio_set(
        args.calib,
        sample_rate=SR,
        window_samples=WINDOW,
        max_files=args.calib_files,
        min_files=8,
        split="train",
    )
    variants: dict[str, dict[str, Any]] = {
        "int8-6 (ours: u8/s8 per-channel, reduce_range, FP32 reads, first conv FP32)": {},
    }
    if not args.no_levers:
        variants.update(
            {
                "int8-6 ORT default Q/DQ placement (residual stream quantised)": {"keep_fp32_reads": False},
                "int8-6 first conv quantised too": {"keep_first_conv_fp32": False},
                "int8-6 per-tensor weights": {"per_channel": False},
                "int8-6 MatMul/Gemm only (conv encoder FP32)": {"op_types": ("MatMul", "Gemm")},
                "int8-6 TensorRT-style symmetric s8 (CPU run)": {"target": "tensorrt"},
            }
        )
    quant_info: dict[str, Any] = {}
    for i, (name, kw) in enumerate(variants.items()):
        path = work / f"int8-6-v{i}.onnx"
        info_path = path.with_suffix(".json")
        if path.exists() and info_path.exists():  # --work-dir reuse: quantising costs minutes per variant
            quant_info[name] = json.loads(info_path.read_text())
        else:
            t0 = time.perf_counter()
            quant_info[name] = quantize_int8(files["onnx-fp32-6"], path, calib.windows, **kw)
            quant_info[name]["seconds"] = round(time.perf_counter() - t0, 1)
            info_path.write_text(json.dumps(quant_info[name], default=str))
        files[name] = path
        print(f"quantised {name} in {quant_info[name]['seconds']} s", flush=True)
    for spec in args.extra:
        name, _, path = spec.partition("=")
        files[name] = Path(path)

    # ---- interleaved latency ----------------------------------------------------------------------
    x = np.ascontiguousarray(calib.windows[:1])
    sessions: dict[str, Any] = {}
    for name, path in files.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        sessions[name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    headline_int8 = next(iter(variants))
    if not args.no_levers:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        sessions["int8-6 (ours) graph optimisation EXTENDED instead of ALL"] = ort.InferenceSession(
            str(files[headline_int8]), opts, providers=["CPUExecutionProvider"]
        )
        opts1 = ort.SessionOptions()
        opts1.intra_op_num_threads = 1
        sessions["int8-6 (ours) 1 thread"] = ort.InferenceSession(
            str(files[headline_int8]), opts1, providers=["CPUExecutionProvider"]
        )
        opts1b = ort.SessionOptions()
        opts1b.intra_op_num_threads = 1
        sessions["onnx-fp32-6 1 thread"] = ort.InferenceSession(
            str(files["onnx-fp32-6"]), opts1b, providers=["CPUExecutionProvider"]
        )

    def run_torch() -> np.ndarray:
        with torch.no_grad():
            return m12(torch.from_numpy(x)).numpy()

    runners: dict[str, Any] = {"torch-eager-12": run_torch}
    for name, sess in sessions.items():
        runners[name] = lambda s=sess: s.run(None, {"audio": x})[0]
    for fn in runners.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, fn in runners.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}

    # ---- accuracy proxy on random weights: logit agreement on calibration windows ----------------
    xs = calib.windows[1:9]
    fp32_6 = sessions["onnx-fp32-6"].run(None, {"audio": xs})[0]
    diffs = {}
    extra_names = {spec.partition("=")[0] for spec in args.extra}
    for name in files:
        if name.startswith("int8") or name in extra_names:
            got = sessions[name].run(None, {"audio": xs})[0]
            diffs[name] = float(np.abs(got - fp32_6).max())

    # ---- profiles -----------------------------------------------------------------------------------
    profiles = {}
    for name in ("onnx-fp32-6", headline_int8):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.enable_profiling = True
        opts.profile_file_prefix = str(work / "prof")
        sess = ort.InferenceSession(str(files[name]), opts, providers=["CPUExecutionProvider"])
        for _ in range(3):
            sess.run(None, {"audio": x})
        trace = sess.end_profiling()
        profiles[name] = parse_ort_profile(trace)
        Path(trace).unlink()
    del sessions

    if args.json:  # latency first: the memory runs below take minutes on a loaded machine
        Path(args.json).write_text(json.dumps({"latency_ms": med, "latency_runs_ms": times}, indent=2) + "\n")
    # ---- peak memory, one fresh process per headline variant ----------------------------------------
    rss = {"torch-eager-12": peak_rss("torch", str(ck12), args.threads)}
    for name in ("onnx-fp32-12", "onnx-fp32-6", headline_int8):
        rss[name] = peak_rss("onnx", str(files[name]), args.threads)

    sizes = {name: files[name].stat().st_size for name in files}
    window_s = WINDOW / SR
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_avg": os.getloadavg(),
        },
        "versions": {
            "onnxruntime": ort.__version__,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
        },
        "threads": args.threads,
        "repeats": args.repeats,
        "window_samples": WINDOW,
        "calibration_windows": len(calib.paths),
        "latency_ms": {k: round(v, 1) for k, v in med.items()},
        "latency_runs_ms": {k: [round(t, 1) for t in v] for k, v in times.items()},
        "rtf": {k: round(v / 1000 / window_s, 4) for k, v in med.items()},
        "speedup_vs_ort_fp32_6": {k: round(med["onnx-fp32-6"] / v, 2) for k, v in med.items()},
        "speedup_vs_torch_12": {k: round(med["torch-eager-12"] / v, 2) for k, v in med.items()},
        "size_bytes": sizes,
        "size_vs_fp32_6": {k: round(v / sizes["onnx-fp32-6"], 3) for k, v in sizes.items()},
        "max_abs_logit_diff_vs_fp32_6": diffs,
        "peak_rss_mib": rss,
        "quantisation": quant_info,
        "ort_profile": profiles,
        "seconds": round(time.perf_counter() - t_all, 1),
    }
    print(f"\n{'variant':78s} {'ms/window':>10s} {'RTF':>7s} {'x FP32-6':>9s} {'x torch-12':>10s} {'MB':>7s}")
    for k, ms in med.items():
        size = sizes.get(k.split(" 1 thread")[0].split(" graph")[0])
        mb = f"{size / 1e6:7.1f}" if size else "      -"
        print(
            f"{k:78s} {ms:10.1f} {result['rtf'][k]:7.3f} {result['speedup_vs_ort_fp32_6'][k]:9.2f} "
            f"{result['speedup_vs_torch_12'][k]:10.2f} {mb}"
        )
    print("\npeak RSS (MiB):", json.dumps({k: round(v["peak_mib"]) for k, v in rss.items()}))
    for name, prof in profiles.items():
        top = ", ".join(f"{op} {100 * v['share']:.0f}%" for op, v in list(prof["ops"].items())[:8])
        print(f"profile {name}: {top}; int8 kernels {100 * prof['int8_share']:.0f}%")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
