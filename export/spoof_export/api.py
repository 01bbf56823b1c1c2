"""``export()``: checkpoint -> ONNX FP32 -> (int8 Q/DQ | fp16) -> TensorRT engine -> Triton repository.

Every stage is validated against the one it was made from (in a spawned ONNX Runtime process), and
everything lands in ``PREFIX.*`` only when the whole run succeeded: artifacts are written under
``*.partial`` names and renamed at the end, the report last. A failed or interrupted export leaves no
file that looks complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from spoof_export.errors import ExportArgumentError, ValidationError

__all__ = ["ExportResult", "export"]

log = logging.getLogger("spoof_export")

REPORT_VERSION = 1


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote: artifact paths by role (``onnx``, ``int8``, ``int8_tensorrt``, ``fp16``,
    ``engine``, ``engine_manifest``, ``report``, ``triton``) and the report as a dict."""

    paths: dict[str, Path]
    report: dict[str, Any] = field(repr=False)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("spoofsdk", "torch", "transformers", "onnx", "onnxruntime", "numpy", "tensorrt"):
        with contextlib.suppress(PackageNotFoundError):
            out[dist] = version(dist)
    return out


def _synthetic_audio(n: int, samples: int, sample_rate: int, seed: int) -> np.ndarray:
    """Speech-like test signals (harmonic chirps in noise) for validation when no audio is given."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / sample_rate
    out = np.empty((n, samples), dtype=np.float32)
    for i in range(n):
        f0 = 90 + 150 * rng.random()
        sweep = f0 * (1 + 0.2 * np.sin(2 * np.pi * 0.5 * t + rng.random() * 6))
        phase = 2 * np.pi * np.cumsum(sweep) / sample_rate
        sig = sum(np.sin(k * phase) / k for k in range(1, 8))
        env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + rng.random() * 6) ** 2
        out[i] = (0.1 * sig * env + 0.01 * rng.standard_normal(samples)).astype(np.float32)
    return out


# --int8-ops: which ONNX op types are quantised. "conv" is for models whose MatMuls are fixed transforms
# with a wide dynamic range (the spectral front end's filterbank / inverse DFT), where only the CNN's
# convolutions should run in int8.
INT8_OPS: dict[str, tuple[str, ...]] = {
    "matmul-conv": ("MatMul", "Gemm", "Conv"),
    "matmul": ("MatMul", "Gemm"),
    "conv": ("Conv",),
}


def _check_args(**kw: Any) -> None:
    def positive(name: str, v: float | None, *, integer: bool = True) -> None:
        if v is None:
            return
        ok = (isinstance(v, int) and not isinstance(v, bool)) if integer else isinstance(v, (int, float))
        if not ok or v <= 0 or (isinstance(v, float) and not math.isfinite(v)):
            kind = "an integer" if integer else "a number"
            raise ExportArgumentError(f"{name}: expected {kind} > 0, given {v!r}")

    for name in (
        "calib_max_files",
        "calib_min_files",
        "max_batch",
        "opt_batch",
        "workspace_mb",
        "triton_max_batch",
        "triton_instances",
        "latency_repeats",
        "num_threads",
    ):
        positive(name, kw[name])
    if kw["dev_max_files"] is not None:
        positive("dev_max_files", kw["dev_max_files"])
    for name in ("min_seconds", "opt_seconds", "max_seconds", "atol", "fp16_atol", "int8_atol"):
        positive(name, kw[name], integer=False)
    if kw["layers"] is not None:
        positive("layers", kw["layers"])
    if not kw["min_seconds"] <= kw["opt_seconds"] <= kw["max_seconds"]:
        raise ExportArgumentError(
            "engine profile: expected min_seconds <= opt_seconds <= max_seconds, given "
            f"{kw['min_seconds']} / {kw['opt_seconds']} / {kw['max_seconds']}"
        )
    if kw["opt_batch"] > kw["max_batch"]:
        raise ExportArgumentError(
            f"opt_batch: expected <= max_batch ({kw['max_batch']}), given {kw['opt_batch']}"
        )
    if kw["int8"] and kw["calib"] is None:
        raise ExportArgumentError(
            "int8: static quantisation needs calibration audio: pass calib=PATH (--calib)"
        )
    if kw["calib"] is not None and not kw["int8"]:
        raise ExportArgumentError(
            "calib: given without int8 (--int8); calibration audio is only used for int8"
        )
    if kw["int8_ops"] not in INT8_OPS:
        raise ExportArgumentError(
            f"int8_ops: expected 'matmul-conv', 'matmul' or 'conv', given {kw['int8_ops']!r}"
        )
    if kw["int8_target"] not in ("cpu", "tensorrt", "both"):
        raise ExportArgumentError(
            f"int8_target: expected 'cpu', 'tensorrt' or 'both', given {kw['int8_target']!r}"
        )
    pct = kw["calib_percentile"]
    if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 50.0 < pct < 100.0:
        raise ExportArgumentError(f"calib_percentile: expected a value in (50, 100), given {pct!r}")
    if kw["calib_min_files"] > kw["calib_max_files"]:
        raise ExportArgumentError(
            f"calib_min_files: expected <= calib_max_files ({kw['calib_max_files']}), "
            f"given {kw['calib_min_files']}"
        )


def _backbone_name(config: Any) -> str:
    kind = str(getattr(config, "kind", "ssl"))
    if kind != "ssl":
        return kind
    bb = getattr(config, "backbone", None)
    family = getattr(bb, "family", None) or (bb.get("family") if isinstance(bb, dict) else None) or "ssl"
    hf = getattr(bb, "config", None) or (bb.get("config") if isinstance(bb, dict) else None) or {}
    hidden = hf.get("hidden_size") if isinstance(hf, dict) else None
    return f"{family}" + (f"-h{hidden}" if hidden else "")


def _min_samples(config: Any, window: int, model: Any) -> int:
    """Shortest input the graph accepts: an SSL conv encoder's receptive field, or the model's own figure."""
    own = getattr(model, "min_samples", None)
    if isinstance(own, int) and own > 0:
        return min(own, window)
    bb = getattr(config, "backbone", None)
    hf = getattr(bb, "config", None) or (bb.get("config") if isinstance(bb, dict) else None) or {}
    kernels, strides = hf.get("conv_kernel"), hf.get("conv_stride")
    if str(getattr(config, "kind", "ssl")) == "ssl" and kernels and strides:
        field_, jump = 1, 1
        for k, s in zip(kernels, strides, strict=True):
            field_ += (int(k) - 1) * jump
            jump *= int(s)
        return min(max(field_, 1), window)
    return window


def _calibration_from_info(info: dict[str, Any]) -> tuple[float, float, float]:
    cal = info.get("calibration") or {}
    scale = float(cal.get("scale", 1.0)) if isinstance(cal, dict) else 1.0
    bias = float(cal.get("bias", 0.0)) if isinstance(cal, dict) else 0.0
    thr = float(cal.get("threshold", 0.5)) if isinstance(cal, dict) else 0.5
    if not (math.isfinite(scale) and scale > 0 and math.isfinite(bias) and 0 < thr < 1):
        log.warning("checkpoint calibration %r is unusable; writing scale 1, bias 0, threshold 0.5", cal)
        scale, bias, thr = 1.0, 0.0, 0.5
    return scale, bias, thr


def _eer(scores_logits: np.ndarray, labels: list[str | None], spoof_index: int) -> float | None:
    from spoof_train.metrics import compute_eer

    other = 1 - spoof_index
    score = scores_logits[:, other].astype(np.float64) - scores_logits[:, spoof_index]  # higher = bona fide
    lab = np.array([lb or "" for lb in labels])
    bona, spoof = score[lab == "bonafide"], score[lab == "spoof"]
    if bona.size == 0 or spoof.size == 0:
        return None
    eer, _ = compute_eer(bona, spoof)
    return float(eer)


ARTIFACT_SUFFIXES = (".onnx", ".int8.onnx", ".int8-tensorrt.onnx", ".fp16.onnx", ".trt", ".trt.json")


def _artifact_paths(prefix: Path) -> list[Path]:
    """Every model file ``export`` can write for ``prefix`` (the report aside)."""
    return [prefix.with_name(prefix.name + suffix) for suffix in ARTIFACT_SUFFIXES]


def export(
    checkpoint: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str],
    layers: int | None = None,
    int8: bool = False,
    int8_target: Literal["cpu", "tensorrt", "both"] = "cpu",
    calib: str | os.PathLike[str] | None = None,
    calib_split: str | None = "train",
    calib_max_files: int = 64,
    calib_min_files: int = 16,
    calib_method: Literal["minmax", "percentile", "entropy"] = "percentile",
    calib_percentile: float = 99.9,
    keep_first_conv_fp32: bool = True,
    int8_ops: Literal["matmul-conv", "matmul", "conv"] = "matmul-conv",
    fp16: bool = False,
    engine: bool = False,
    min_seconds: float = 1.0,
    opt_seconds: float | None = None,
    max_seconds: float = 10.0,
    opt_batch: int = 1,
    max_batch: int = 16,
    workspace_mb: int = 2048,
    timing_cache: str | os.PathLike[str] | None = None,
    hardware_compatible: bool = False,
    version_compatible: bool = False,
    device_id: int = 0,
    triton: str | os.PathLike[str] | None = None,
    triton_name: str | None = None,
    triton_max_batch: int = 32,
    triton_instances: int = 1,
    triton_max_queue_delay_us: int = 2000,
    triton_backend: str = "onnxruntime",
    opset: int = 17,
    atol: float = 1e-3,
    fp16_atol: float = 0.1,
    int8_atol: float = 1.0,
    dev: str | os.PathLike[str] | None = None,
    dev_split: str | None = "dev",
    dev_max_files: int | None = 200,
    latency_repeats: int = 5,
    num_threads: int = 2,
    profile: bool = False,
    seed: int = 0,
) -> ExportResult:
    """Export a contract-A checkpoint to contract-B model files, validating each stage.

    Writes ``PREFIX.onnx`` (FP32) and, on request, ``PREFIX.int8.onnx`` (CPU Q/DQ: u8 activations,
    reduce-range s8 weights), ``PREFIX.int8-tensorrt.onnx`` (symmetric s8 Q/DQ for TensorRT),
    ``PREFIX.fp16.onnx``, ``PREFIX.trt`` + ``PREFIX.trt.json`` and a Triton model repository, then
    ``PREFIX.export_report.json``. ``output`` is the prefix (``out/wavlm6`` -> ``out/wavlm6.onnx``).

    Raises (see :mod:`spoof_export.errors` for the CLI exit codes): ``ExportArgumentError`` /
    ``LayersError`` for bad arguments, ``CheckpointLoadError``, ``CalibrationError`` for an empty, tiny
    or unreadable calibration / dev set, ``ValidationError`` when a stage disagrees with the one before,
    ``ToolchainUnavailableError`` when ``engine`` is asked without TensorRT, cuda-python or a GPU,
    ``EngineBuildError`` / ``TensorRTCompatibilityError`` when TensorRT cannot build the graph.
    """
    t_start = time.perf_counter()
    _check_args(
        **{k: v for k, v in locals().items() if k != "t_start"} | {"opt_seconds": opt_seconds or min_seconds}
    )
    prefix = Path(output)
    if prefix.name in ("", ".", "..") or prefix.is_dir():
        raise ExportArgumentError(
            f"output: expected a file prefix such as out/wavlm6, given a directory {prefix}"
        )
    prefix.parent.mkdir(parents=True, exist_ok=True)

    from spoof_export.tensorrt import check_tensorrt_compatibility, gpu_info, import_tensorrt

    if engine:  # fail before a long export, not after it
        import_tensorrt()
        gpu_info(device_id)

    import onnx
    import torch

    from spoof_export import __version__ as exporter_version
    from spoof_export.audio import load_audio_set
    from spoof_export.checkpoint import file_sha256, load_for_export
    from spoof_export.onnx_export import export_onnx
    from spoof_export.quantize import convert_fp16, quantize_int8
    from spoof_export.validate import OrtJob, compare_outputs, run_ort_jobs, score_agreement
    from spoofsdk.manifest import (
        Calibration,
        Manifest,
        write_engine_manifest,
        write_onnx_manifest,
    )

    torch.manual_seed(seed)
    loaded = load_for_export(checkpoint, layers=layers)
    cfg = loaded.config
    sample_rate = int(getattr(cfg, "sample_rate", 16000))
    window = int(getattr(cfg, "window_samples", 4 * sample_rate))
    hop = int(getattr(cfg, "hop_samples", window // 2) or window // 2)
    label_order = tuple(getattr(cfg, "label_order", ("bonafide", "spoof")))
    spoof_index = label_order.index("spoof") if "spoof" in label_order else 1
    scale, bias, threshold = _calibration_from_info(loaded.training_info)
    threshold_logit = (math.log(threshold / (1 - threshold)) - bias) / scale
    opt_s = opt_seconds if opt_seconds is not None else window / sample_rate
    if not min_seconds <= opt_s <= max_seconds:
        raise ExportArgumentError(
            f"opt_seconds: expected within [{min_seconds}, {max_seconds}], given {opt_s} "
            "(it defaults to the window length)"
        )
    min_samples = _min_samples(cfg, window, loaded.model)

    def manifest(precision: str) -> Manifest:
        return Manifest(
            sample_rate=sample_rate,
            window_samples=window,
            hop_samples=min(hop, window),
            min_samples=min_samples,
            label_order=label_order,
            spoof_index=spoof_index,
            calibration=Calibration(scale=scale, bias=bias),
            threshold=threshold,
            precision=precision,
            layers=loaded.layers_after if str(getattr(cfg, "kind", "ssl")) == "ssl" else 0,
            backbone=_backbone_name(cfg),
            source_sha256=loaded.source_sha256,
            exporter="spoof_export",
            exporter_version=exporter_version,
        )

    final: dict[str, Path] = {"onnx": prefix.with_name(prefix.name + ".onnx")}
    if int8:
        targets = {"cpu": ["cpu"], "tensorrt": ["tensorrt"], "both": ["cpu", "tensorrt"]}[int8_target]
        if engine and "tensorrt" not in targets:
            log.info("engine + int8: also writing the symmetric s8 Q/DQ graph TensorRT needs")
            targets.append("tensorrt")
        if "cpu" in targets:
            final["int8"] = prefix.with_name(prefix.name + ".int8.onnx")
        if "tensorrt" in targets:
            final["int8_tensorrt"] = prefix.with_name(prefix.name + ".int8-tensorrt.onnx")
    if fp16:
        final["fp16"] = prefix.with_name(prefix.name + ".fp16.onnx")
    if engine:
        final["engine"] = prefix.with_name(prefix.name + ".trt")
        final["engine_manifest"] = prefix.with_name(prefix.name + ".trt.json")
    final["report"] = prefix.with_name(prefix.name + ".export_report.json")
    partial = {k: p.with_name(p.name + ".partial") for k, p in final.items()}
    partial["engine_manifest"] = (
        partial["engine"].with_name(partial["engine"].name + ".json") if engine else None
    )  # type: ignore[assignment]

    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "exporter": "spoof_export",
        "exporter_version": exporter_version,
        "versions": _versions(),
        "checkpoint": {
            "path": str(Path(checkpoint)),
            "model_sha256": loaded.source_sha256,
            "layers_in_checkpoint": loaded.layers_before,
            "layers_exported": loaded.layers_after,
            "pruned_without_retraining": loaded.pruned,
            "config": cfg.to_dict() if hasattr(cfg, "to_dict") else str(cfg),
        },
        "arguments": {
            "layers": layers,
            "int8": int8,
            "int8_target": int8_target,
            "calib": str(calib) if calib else None,
            "calib_split": calib_split,
            "calib_max_files": calib_max_files,
            "calib_method": calib_method,
            "calib_percentile": calib_percentile,
            "keep_first_conv_fp32": keep_first_conv_fp32,
            "int8_ops": int8_ops,
            "fp16": fp16,
            "engine": engine,
            "opset": opset,
            "atol": atol,
            "fp16_atol": fp16_atol,
            "int8_atol": int8_atol,
            "dev": str(dev) if dev else None,
            "num_threads": num_threads,
            "seed": seed,
        },
        "manifest": manifest("fp32").to_json_dict(),
        "stages": {},
        "artifacts": {},
    }
    threads_before = torch.get_num_threads()
    try:
        torch.set_num_threads(num_threads)
        # ---- audio: calibration, dev, validation inputs -------------------------------------
        calib_set = dev_set = None
        if int8:
            calib_set = load_audio_set(
                calib,
                sample_rate=sample_rate,
                window_samples=window,
                max_files=calib_max_files,  # type: ignore[arg-type]
                min_files=calib_min_files,
                split=calib_split,
                seed=seed,
                what="calibration",
            )
            report["calibration"] = {
                "source": calib_set.source,
                "windows": len(calib_set.paths),
                "labels": {str(k): calib_set.labels.count(k) for k in set(calib_set.labels)},
            }
        if dev is not None:
            dev_set = load_audio_set(
                dev,
                sample_rate=sample_rate,
                window_samples=window,
                max_files=dev_max_files,
                min_files=2,
                split=dev_split,
                seed=seed + 1,
                what="dev",
            )
        real = (
            calib_set.windows if calib_set is not None else dev_set.windows if dev_set is not None else None
        )
        if real is not None and len(real) >= 3:
            base = real[:3]
        else:
            base = _synthetic_audio(3, window, sample_rate, seed)
        short = max(min_samples * 4, window // 3)
        long_ = int(window * 1.5)
        tiled = np.tile(base, (1, 2))[:, :long_]
        batches = [base[:2], base[2:3, :short], tiled[:1]]
        report["validation_inputs"] = {
            "source": "calibration audio"
            if calib_set is not None
            else "dev audio"
            if dev_set
            else "synthetic",
            "shapes": [list(b.shape) for b in batches],
        }

        # ---- torch reference and FP32 ONNX -------------------------------------------------
        with torch.no_grad():
            ref = np.concatenate(
                [loaded.model(torch.from_numpy(np.ascontiguousarray(b))).numpy() for b in batches]
            )
            ref_dev = None
        t0 = time.perf_counter()
        export_onnx(loaded.model, partial["onnx"], opset=opset, example_samples=window)
        proto = onnx.load(str(partial["onnx"]))
        write_onnx_manifest(proto, manifest("fp32"))
        onnx.save(proto, str(partial["onnx"]))
        report["stages"]["onnx_export_seconds"] = round(time.perf_counter() - t0, 2)
        del proto

        # ---- derived artifacts ---------------------------------------------------------------
        if "int8" in final or "int8_tensorrt" in final:
            assert calib_set is not None
            for key, target in (("int8", "cpu"), ("int8_tensorrt", "tensorrt")):
                if key not in final:
                    continue
                t0 = time.perf_counter()
                info = quantize_int8(
                    partial["onnx"],
                    partial[key],
                    calib_set.windows,
                    target=target,  # type: ignore[arg-type]
                    method=calib_method,
                    percentile=calib_percentile,
                    keep_first_conv_fp32=keep_first_conv_fp32,
                    op_types=INT8_OPS[int8_ops],
                )
                info["seconds"] = round(time.perf_counter() - t0, 2)
                write_onnx_manifest(partial[key], manifest("int8"))
                report["stages"][f"quantize_{target}"] = info
        if fp16:
            report["stages"]["fp16"] = convert_fp16(partial["onnx"], partial["fp16"])
            write_onnx_manifest(partial["fp16"], manifest("fp16"))

        # ---- run everything in one spawned ONNX Runtime process ------------------------------
        onnx_keys = [k for k in ("onnx", "int8", "int8_tensorrt", "fp16") if k in final]
        jobs = []
        for k in onnx_keys:
            job_batches = list(batches)
            if dev_set is not None:
                job_batches += [dev_set.windows[i : i + 8] for i in range(0, len(dev_set.windows), 8)]
            jobs.append(
                OrtJob(
                    path=str(partial[k]),
                    batches=job_batches,
                    threads=num_threads,
                    latency_samples=window,
                    latency_repeats=latency_repeats,
                    profile=profile and k in ("onnx", "int8"),
                )
            )
        results = dict(zip(onnx_keys, run_ort_jobs(jobs), strict=True))
        n_val = sum(len(b) for b in batches)
        fp32_logits = results["onnx"].logits
        assert fp32_logits is not None
        report["stages"]["torch->onnx"] = compare_outputs(
            ref, fp32_logits[:n_val], stage="torch->onnx", atol=atol
        )
        tolerances = {"int8": int8_atol, "int8_tensorrt": int8_atol, "fp16": fp16_atol}
        failures: list[ValidationError] = []
        for k in onnx_keys[1:]:
            got = results[k].logits
            assert got is not None
            stage = f"onnx->{k}"
            try:
                report["stages"][stage] = compare_outputs(
                    fp32_logits[:n_val], got[:n_val], stage=stage, atol=tolerances[k]
                )
            except ValidationError as exc:
                report["stages"][stage] = {
                    "stage": stage,
                    "ok": False,
                    "error": str(exc),
                    "max_abs_diff": exc.diffs,
                    "atol": exc.atol,
                }
                failures.append(exc)
            report["stages"][stage]["score_agreement"] = score_agreement(
                fp32_logits, got, spoof_index=spoof_index, threshold_logit=threshold_logit
            )
        # ---- dev-set EER per artifact ------------------------------------------------------------
        if dev_set is not None:
            dev_eer: dict[str, Any] = {
                "source": dev_set.source,
                "windows": len(dev_set.paths),
                "rule": "one centre window per clip (short clips tiled)",
            }
            with torch.no_grad():
                ref_dev = np.concatenate(
                    [
                        loaded.model(torch.from_numpy(dev_set.windows[i : i + 8])).numpy()
                        for i in range(0, len(dev_set.windows), 8)
                    ]
                )
            dev_eer["torch"] = _eer(ref_dev, list(dev_set.labels), spoof_index)
            for k in onnx_keys:
                logits = results[k].logits
                assert logits is not None
                dev_eer[k] = _eer(logits[n_val:], list(dev_set.labels), spoof_index)
            base_eer = dev_eer.get("onnx")
            dev_eer["delta_points_vs_fp32"] = {
                k: (
                    None
                    if dev_eer[k] is None or base_eer is None
                    else round(100 * (dev_eer[k] - base_eer), 3)
                )
                for k in onnx_keys[1:]
            }
            report["dev_eer"] = dev_eer
        # ---- TensorRT: offline checks always, engine on request ---------------------------------
        trt_source_key = "int8_tensorrt" if "int8_tensorrt" in final else "fp16" if fp16 else "onnx"
        report["tensorrt_check"] = {
            k: check_tensorrt_compatibility(partial[k], strict=False) for k in onnx_keys
        }
        if not profile:
            for checked in report["tensorrt_check"].values():
                checked.pop("op_counts", None)
        if engine:
            from spoof_export.tensorrt import build_engine, run_engine

            check_tensorrt_compatibility(partial[trt_source_key], strict=True)
            t0 = time.perf_counter()
            built = build_engine(
                partial[trt_source_key],
                partial["engine"],
                profile_min=(1, int(min_seconds * sample_rate)),
                profile_opt=(opt_batch, int(opt_s * sample_rate)),
                profile_max=(max_batch, max(int(max_seconds * sample_rate), window)),
                workspace_bytes=workspace_mb << 20,
                timing_cache=timing_cache,
                hardware_compatible=hardware_compatible,
                version_compatible=version_compatible,
                device_id=device_id,
            )
            precision = "int8" if trt_source_key == "int8_tensorrt" else "fp16" if fp16 else "fp32"
            write_engine_manifest(
                partial["engine"],
                manifest(precision),
                built.engine_info(),
            )
            engine_logits = np.concatenate(
                [run_engine(partial["engine"], b, device_id=device_id) for b in batches]
            )
            src_logits = results[trt_source_key].logits
            assert src_logits is not None
            report["stages"]["engine_build_seconds"] = round(time.perf_counter() - t0, 2)
            report["stages"][f"{trt_source_key}->engine"] = compare_outputs(
                src_logits[:n_val],
                engine_logits,
                stage=f"{trt_source_key}->engine",
                atol=tolerances.get(trt_source_key, atol) if trt_source_key != "onnx" else max(atol, 1e-2),
            )
        # ---- latency, sizes, hashes -------------------------------------------------------------
        fp32_size = partial["onnx"].stat().st_size
        for k in onnx_keys:
            r = results[k]
            size = partial[k].stat().st_size
            report["artifacts"][k] = {
                "file": final[k].name,
                "bytes": size,
                "size_vs_fp32": round(size / fp32_size, 4),
                "sha256": file_sha256(partial[k]),
                "latency_ms_per_window": None if r.latency_ms is None else round(r.latency_ms, 2),
                "rtf": None
                if r.latency_ms is None
                # 4 significant digits: a fast model's RTF is far below 1e-4 of a decimal place.
                else float(f"{r.latency_ms / 1000 / (window / sample_rate):.4g}"),
                "latency_runs_ms": [round(x, 2) for x in r.latency_all_ms],
                "threads": num_threads,
                "providers": r.providers,
            }
            if r.profile is not None:
                report["artifacts"][k]["ort_profile"] = r.profile
        if engine:
            report["artifacts"]["engine"] = {
                "file": final["engine"].name,
                "bytes": partial["engine"].stat().st_size,
                "sha256": file_sha256(partial["engine"]),
                "source": trt_source_key,
            }
        report["latency_note"] = (
            f"ONNX Runtime CPU, batch 1, one {window / sample_rate:.2f} s window, {num_threads} threads, "
            f"median of {latency_repeats} after 1 warm-up, on {platform.processor() or platform.machine()}"
        )
        if failures:
            report["ok"] = False
            raise failures[0]
        # ---- Triton -----------------------------------------------------------------------------
        if triton is not None:
            from spoof_export.triton import write_triton_repository

            models = write_triton_repository(
                triton,
                name=triton_name or prefix.name.replace(".", "_"),
                onnx_path=partial["int8"] if "int8" in final else partial["onnx"],
                engine_path=partial["engine"] if engine else None,
                manifest_metadata=manifest("int8" if "int8" in final else "fp32").to_metadata(),
                max_batch_size=triton_max_batch,
                instance_count=triton_instances,
                max_queue_delay_us=triton_max_queue_delay_us,
                engine_max_batch=max_batch,
                backend=triton_backend,
            )
            report["triton"] = [
                dataclasses.asdict(m) | {"config_path": str(m.config_path), "model_path": str(m.model_path)}
                for m in models
            ]
        report["ok"] = True
        report["seconds"] = round(time.perf_counter() - t_start, 1)
        for k, p in final.items():
            if k in ("report", "engine_manifest"):
                continue
            os.replace(partial[k], p)
        if engine:
            os.replace(partial["engine_manifest"], final["engine_manifest"])  # type: ignore[arg-type]
        # Artifacts of an earlier export to the same prefix that this one did not write would sit next to
        # the new files and describe another model: remove them, so PREFIX.* is exactly what the report lists.
        stale = [p for p in _artifact_paths(prefix) if p not in final.values() and p.exists()]
        for p in stale:
            p.unlink()
            log.info("removed %s (left by an earlier export to this prefix; not written by this one)", p.name)
        report["removed_stale"] = [str(p) for p in stale]
        tmp_report = partial["report"]
        tmp_report.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp_report, final["report"])
    finally:
        torch.set_num_threads(threads_before)
        for p in partial.values():
            if p is not None and p.exists():
                with contextlib.suppress(OSError):
                    p.unlink()
    paths = dict(final)
    if triton is not None:
        paths["triton"] = Path(triton)
    log.info("export finished in %.1f s: %s", report["seconds"], ", ".join(p.name for p in final.values()))
    return ExportResult(paths=paths, report=report)
