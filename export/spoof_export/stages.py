"""The stages of export, each a function with its own typed options and a :class:`StageReport`.

=============  =====================  ========================================================================
stage          options                does
=============  =====================  ========================================================================
onnx           :class:`OnnxOptions`   torch -> ONNX FP32 with the contract-B manifest
calibrate      ``CalibrateOptions``   score calibration + threshold from dev (:mod:`spoof_export.calibrate`)
quantize       :class:`Int8Options`   FP32 ONNX -> int8 Q/DQ ONNX (CPU u8/s8 or TensorRT s8)
fp16           :class:`Fp16Options`   FP32 ONNX -> FP16 ONNX (FP32 I/O)
validate       :class:`ValidateOptions`  every ONNX artifact in one spawned ONNX Runtime process: stage diffs,
                                      decision agreement, dev EER, latency
engine         :class:`EngineOptions`  ONNX -> TensorRT engine + ``.trt.json``, compared with its source
triton         :class:`TritonOptions`  a Triton model repository of the ONNX model (and engine)
=============  =====================  ========================================================================

:func:`spoof_export.export` composes them; each can also be called alone on files it did not write.
Each logs ``stage NAME: started`` and ``stage NAME: done in S s`` (``failed after S s (Error)``) through
the ``spoof_export`` logger at INFO (:func:`spoof_export.progress.announce`); validate also logs each
artifact's ONNX Runtime run.
Options check themselves on construction and raise :class:`~spoof_export.errors.ExportArgumentError`
naming the ``export()`` keyword (the ``spoof-export`` flag) and the value given.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from spoof_export.errors import ExportArgumentError, ValidationError
from spoof_export.progress import announce

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from spoof_export.audio import AudioSet, ClipWindows
    from spoof_export.validate import OrtResult
    from spoofsdk.manifest import Manifest

__all__ = [
    "FP16_ATOL",
    "INT8_ATOL",
    "INT8_OPS",
    "EngineOptions",
    "Fp16Options",
    "Int8Options",
    "OnnxOptions",
    "StageReport",
    "TritonOptions",
    "ValidateOptions",
    "Validation",
    "stage_engine",
    "stage_fp16",
    "stage_onnx",
    "stage_quantize",
    "stage_triton",
    "stage_validate",
]

log = logging.getLogger("spoof_export")

# --int8-ops: which ONNX op types are quantised. "conv" is for models whose MatMuls are fixed transforms
# with a wide dynamic range (the spectral front end's filterbank / inverse DFT), where only the CNN's
# convolutions should run in int8.
INT8_OPS: dict[str, tuple[str, ...]] = {
    "matmul-conv": ("MatMul", "Gemm", "Conv"),
    "matmul": ("MatMul", "Gemm"),
    "conv": ("Conv",),
}


#: Default FP32 -> int8 tolerance (max |logit diff|). Measured: 0.066 (Whisper tiny.en fine-tuned), 0.07
#: (WavLM-base-6 fine-tuned), 0.036 (WavLM-base-6, random weights), 0.011-0.036 (the 2-layer test model):
#: 0.25 is 3.5x the largest. Spectral models quantised with --int8-ops conv move more (the default
#: detector's recipe passes --int8-atol 10 and decides on the dev EER instead).
INT8_ATOL = 0.25
#: Default FP32 -> FP16 tolerance. Measured: 0.021 (Whisper), 4e-4 (WavLM-6), 2e-4 (the test model).
FP16_ATOL = 0.1


@dataclass
class StageReport:
    """What one stage did: ``outputs`` (role -> file), stage-specific ``details``, ``warnings`` a user must
    read, wall-clock ``seconds``, and ``ok`` (False only for a stage that ran and failed its check)."""

    name: str
    ok: bool = True
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Everything but ``details`` (which :func:`spoof_export.export` files under its own report keys)."""
        return {
            "name": self.name,
            "ok": self.ok,
            "seconds": self.seconds,
            "outputs": dict(self.outputs),
            "warnings": list(self.warnings),
        }


def _positive(name: str, v: object, *, integer: bool = True) -> None:
    ok = (isinstance(v, int) and not isinstance(v, bool)) if integer else isinstance(v, (int, float))
    if not ok or v <= 0 or (isinstance(v, float) and not math.isfinite(v)):  # type: ignore[operator]
        kind = "an integer" if integer else "a number"
        raise ExportArgumentError(f"{name}: expected {kind} > 0, given {v!r}")


# ---- onnx ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnnxOptions:
    """``opset``: ONNX opset; ``atol``: max |logit diff| of ONNX FP32 against torch."""

    opset: int = 17
    atol: float = 1e-3

    def __post_init__(self) -> None:
        _positive("atol", self.atol, integer=False)


def stage_onnx(
    model: Any, out: Path, manifest: Manifest, options: OnnxOptions, *, example_samples: int
) -> StageReport:
    """Export the torch ``model`` to ``out`` (FP32 ONNX, contract-B names) and write ``manifest`` into it."""
    import onnx

    from spoof_export.onnx_export import export_onnx
    from spoofsdk.manifest import write_onnx_manifest

    with announce("onnx"):
        t0 = time.perf_counter()
        export_onnx(model, out, opset=options.opset, example_samples=example_samples)
        proto = onnx.load(str(out))
        write_onnx_manifest(proto, manifest)
        onnx.save(proto, str(out))
        seconds = round(time.perf_counter() - t0, 2)
    return StageReport(name="onnx", seconds=seconds, outputs={"onnx": str(out)}, details={"seconds": seconds})


# ---- quantize --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Int8Options:
    """Static int8 quantisation: the calibration audio (``calib`` and how rows are picked from it), the
    activation-range method, which ops run in int8, which targets to write, and the FP32 -> int8 tolerance
    ``int8_atol`` (max |logit diff|)."""

    calib: Path | None = None
    calib_split: str | None = "train"
    calib_max_files: int = 64
    calib_min_files: int = 16
    calib_method: Literal["minmax", "percentile", "entropy"] = "percentile"
    calib_percentile: float = 99.9
    keep_first_conv_fp32: bool = True
    int8_ops: Literal["matmul-conv", "matmul", "conv"] = "matmul-conv"
    int8_target: Literal["cpu", "tensorrt", "both"] = "cpu"
    int8_atol: float = INT8_ATOL

    def __post_init__(self) -> None:
        if self.calib is not None:
            object.__setattr__(self, "calib", Path(self.calib))
        _positive("calib_max_files", self.calib_max_files)
        _positive("calib_min_files", self.calib_min_files)
        _positive("int8_atol", self.int8_atol, integer=False)
        if self.int8_ops not in INT8_OPS:
            raise ExportArgumentError(
                f"int8_ops: expected 'matmul-conv', 'matmul' or 'conv', given {self.int8_ops!r}"
            )
        if self.int8_target not in ("cpu", "tensorrt", "both"):
            raise ExportArgumentError(
                f"int8_target: expected 'cpu', 'tensorrt' or 'both', given {self.int8_target!r}"
            )
        pct = self.calib_percentile
        if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 50.0 < pct < 100.0:
            raise ExportArgumentError(f"calib_percentile: expected a value in (50, 100), given {pct!r}")
        if self.calib_min_files > self.calib_max_files:
            raise ExportArgumentError(
                f"calib_min_files: expected <= calib_max_files ({self.calib_max_files}), "
                f"given {self.calib_min_files}"
            )

    def targets(self, *, engine: bool) -> list[Literal["cpu", "tensorrt"]]:
        """The int8 files to write; an engine build needs the symmetric s8 (TensorRT) graph."""
        out: list[Literal["cpu", "tensorrt"]] = {
            "cpu": ["cpu"],
            "tensorrt": ["tensorrt"],
            "both": ["cpu", "tensorrt"],
        }[self.int8_target]  # type: ignore[assignment]
        if engine and "tensorrt" not in out:
            out.append("tensorrt")
        return out


def stage_quantize(
    src: Path,
    dst: Path,
    windows: NDArray[np.float32],
    manifest: Manifest,
    options: Int8Options,
    *,
    target: Literal["cpu", "tensorrt"],
) -> StageReport:
    """Quantise the FP32 ONNX ``src`` into ``dst`` for ``target`` on calibration ``windows``."""
    from spoof_export.quantize import quantize_int8
    from spoofsdk.manifest import write_onnx_manifest

    with announce(f"quantize_{target}"):
        t0 = time.perf_counter()
        info = quantize_int8(
            src,
            dst,
            windows,
            target=target,
            method=options.calib_method,
            percentile=options.calib_percentile,
            keep_first_conv_fp32=options.keep_first_conv_fp32,
            op_types=INT8_OPS[options.int8_ops],
        )
        info["seconds"] = round(time.perf_counter() - t0, 2)
        write_onnx_manifest(dst, manifest)
    return StageReport(
        name=f"quantize_{target}", seconds=info["seconds"], outputs={target: str(dst)}, details=info
    )


# ---- fp16 ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fp16Options:
    """``fp16_atol``: max |logit diff| of the FP16 graph against FP32."""

    fp16_atol: float = FP16_ATOL

    def __post_init__(self) -> None:
        _positive("fp16_atol", self.fp16_atol, integer=False)


def stage_fp16(src: Path, dst: Path, manifest: Manifest, options: Fp16Options) -> StageReport:
    """Convert the FP32 ONNX ``src`` to FP16 (FP32 inputs and outputs) at ``dst``."""
    from spoof_export.quantize import convert_fp16
    from spoofsdk.manifest import write_onnx_manifest

    with announce("fp16"):
        t0 = time.perf_counter()
        info = convert_fp16(src, dst)
        write_onnx_manifest(dst, manifest)
        seconds = round(time.perf_counter() - t0, 2)
    return StageReport(name="fp16", seconds=seconds, outputs={"fp16": str(dst)}, details=info)


# ---- validate --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidateOptions:
    """How artifacts are run and measured: labelled ``dev`` audio for the per-artifact EER (at most
    ``dev_max_files`` clips, each scored as the SDK scores it: the model's window and hop, mean of the
    window logits, no speech gate), latency repeats, ONNX Runtime threads, per-operator profile, and the
    seed of the row picking and synthetic inputs."""

    dev: Path | None = None
    dev_split: str | None = "dev"
    dev_max_files: int | None = 200
    latency_repeats: int = 5
    num_threads: int = 2
    profile: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dev is not None:
            object.__setattr__(self, "dev", Path(self.dev))
        _positive("latency_repeats", self.latency_repeats)
        _positive("num_threads", self.num_threads)
        if self.dev_max_files is not None:
            _positive("dev_max_files", self.dev_max_files)


@dataclass
class Validation:
    """The outcome of :func:`stage_validate`: ONNX Runtime results by artifact key, the per-stage
    comparisons (report key -> dict), failed comparisons, the dev-EER block (None without dev audio)."""

    results: dict[str, OrtResult]
    stages: dict[str, dict[str, Any]]
    failures: list[ValidationError]
    dev_eer: dict[str, Any] | None


#: Fewer clips of either class than this and the report's per-artifact EER deltas are not worth printing:
#: one clip then moves the EER by more than 1 point.
MIN_CLIPS_FOR_DELTAS = 100


def _eer(
    logits: NDArray[np.float32], labels: list[str | None], spoof_index: int, clips: ClipWindows
) -> float | None:
    """EER of clip scores: the mean over each clip's windows of ``logit_bf - logit_spoof``."""
    from spoof_train.metrics import compute_eer

    other = 1 - spoof_index
    window_score = logits[:, other].astype(np.float64) - logits[:, spoof_index]  # higher = bona fide
    score = clips.clip_means(window_score)
    lab = np.array([lb or "" for lb in labels])
    bona, spoof = score[lab == "bonafide"], score[lab == "spoof"]
    if bona.size == 0 or spoof.size == 0:
        return None
    eer, _ = compute_eer(bona, spoof)
    return float(eer)


def _dev_eer(
    results: dict[str, OrtResult],
    torch_dev: NDArray[np.float32],
    dev_set: AudioSet,
    n_val: int,
    *,
    spoof_index: int,
    sample_rate: int,
) -> dict[str, Any]:
    clips = dev_set.clips
    assert clips is not None
    labels = list(dev_set.labels)
    n_bona, n_spoof = labels.count("bonafide"), labels.count("spoof")
    out: dict[str, Any] = {
        "source": dev_set.source,
        "clips": len(dev_set.paths),
        "n_bonafide": n_bona,
        "n_spoof": n_spoof,
        "windows": clips.n_windows,
        "scoring": {
            "window_samples": clips.window_samples,
            "hop_samples": clips.hop_samples,
            "window_s": clips.window_samples / sample_rate,
            "hop_s": clips.hop_samples / sample_rate,
            "aggregate": "mean",
            "short_clips": "own length",
            "speech_gate": False,
            "source": "checkpoint",
        },
        "rule": "every window of each clip as the SDK cuts it (the model's window every hop, the last "
        "window ending at the clip's end, a clip shorter than a window scored whole), the clip score the "
        "mean of its window logit differences; no speech gate",
        "left_out_too_short": len(dev_set.too_short),
        "torch": _eer(torch_dev, labels, spoof_index, clips),
    }
    for k, r in results.items():
        assert r.logits is not None
        out[k] = _eer(r.logits[n_val:], labels, spoof_index, clips)
    base = out.get("onnx")
    smallest = min(n_bona, n_spoof)
    out["one_clip_points"] = None if smallest == 0 else round(100 / smallest, 3)
    if smallest >= MIN_CLIPS_FOR_DELTAS:
        out["delta_points_vs_fp32"] = {
            k: None if out[k] is None or base is None else round(100 * (out[k] - base), 3)
            for k in list(results)[1:]
        }
    else:
        out["delta_points_vs_fp32"] = None
        out["delta_note"] = (
            f"no deltas: {smallest} clips of the smaller class, so one clip moves the EER by "
            f"{100 / max(smallest, 1):.2f} points; deltas need >= {MIN_CLIPS_FOR_DELTAS} of each class"
        )
    return out


def _ran(keys: list[str], artifacts: dict[str, Path]) -> Callable[[int], None]:
    """Progress of the ONNX Runtime runs: one line per artifact, with its seconds."""
    last = time.perf_counter()

    def done(n: int) -> None:
        nonlocal last
        now = time.perf_counter()
        name = Path(artifacts[keys[n - 1]]).name.removesuffix(".partial")
        log.info("validate: ran %s in ONNX Runtime (%d/%d) in %.1f s", name, n, len(keys), now - last)
        last = now

    return done


def _compare_artifacts(
    results: dict[str, OrtResult],
    reference: NDArray[np.float32],
    n_val: int,
    *,
    tolerances: dict[str, float],
    spoof_index: int,
    threshold_logit: float,
) -> tuple[dict[str, dict[str, Any]], list[ValidationError]]:
    """FP32 ONNX against torch (a failure raises at once), then every other artifact against FP32 on the
    validation rows (failures collected) with the decision agreement over all rows."""
    from spoof_export.validate import compare_outputs, score_agreement

    keys = list(results)
    fp32 = results["onnx"].logits
    assert fp32 is not None
    stages = {
        "torch->onnx": compare_outputs(reference, fp32[:n_val], stage="torch->onnx", atol=tolerances["onnx"])
    }
    failures: list[ValidationError] = []
    for k in keys[1:]:
        got = results[k].logits
        assert got is not None
        stage = f"onnx->{k}"
        try:
            stages[stage] = compare_outputs(fp32[:n_val], got[:n_val], stage=stage, atol=tolerances[k])
        except ValidationError as exc:
            stages[stage] = {
                "stage": stage,
                "ok": False,
                "error": str(exc),
                "max_abs_diff": exc.diffs,
                "atol": exc.atol,
            }
            failures.append(exc)
        stages[stage]["score_agreement"] = score_agreement(
            fp32, got, spoof_index=spoof_index, threshold_logit=threshold_logit
        )
    return stages, failures


def stage_validate(
    artifacts: dict[str, Path],
    *,
    reference: NDArray[np.float32],
    batches: list[NDArray[np.float32]],
    dev_set: AudioSet | None,
    torch_dev: NDArray[np.float32] | None,
    tolerances: dict[str, float],
    spoof_index: int,
    threshold_logit: float,
    window_samples: int,
    options: ValidateOptions,
    sample_rate: int = 16000,
) -> tuple[Validation, StageReport]:
    """Run every ONNX artifact (``"onnx"`` first, the FP32 graph) in one spawned ONNX Runtime process on
    ``batches`` (+ the dev windows), compare FP32 with the torch ``reference`` (a failure raises
    :class:`ValidationError` at once) and each derived artifact with FP32 (failures are collected, so the
    report still describes every artifact), and measure decision agreement, dev EER and latency.
    """
    from spoof_export.validate import OrtJob, run_ort_jobs

    with announce("validate"):
        t0 = time.perf_counter()
        keys = list(artifacts)
        if dev_set is not None and dev_set.clips is None:
            raise ExportArgumentError(
                "dev_set: expected every window of each clip (load_audio_set hop_samples=)"
            )
        extra = [] if dev_set is None or dev_set.clips is None else dev_set.clips.batches
        jobs = [
            OrtJob(
                path=str(artifacts[k]),
                batches=[*batches, *extra],
                threads=options.num_threads,
                latency_samples=window_samples,
                latency_repeats=options.latency_repeats,
                profile=options.profile and k in ("onnx", "int8"),
            )
            for k in keys
        ]
        n_val = sum(len(b) for b in batches)
        log.info(
            "validate: %d artifact(s) in ONNX Runtime, each on %d validation + %d dev windows",
            len(jobs),
            n_val,
            sum(len(b) for b in extra),
        )
        results = dict(zip(keys, run_ort_jobs(jobs, on_done=_ran(keys, artifacts)), strict=True))
        stages, failures = _compare_artifacts(
            results,
            reference,
            n_val,
            tolerances=tolerances,
            spoof_index=spoof_index,
            threshold_logit=threshold_logit,
        )
        dev_eer = None
        if dev_set is not None:
            assert torch_dev is not None
            dev_eer = _dev_eer(
                results, torch_dev, dev_set, n_val, spoof_index=spoof_index, sample_rate=sample_rate
            )
        report = StageReport(
            name="validate",
            ok=not failures,
            seconds=round(time.perf_counter() - t0, 2),
            details={"stages": stages, "dev_eer": dev_eer},
            warnings=[str(f) for f in failures],
        )
    return Validation(results=results, stages=stages, failures=failures, dev_eer=dev_eer), report


# ---- engine ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineOptions:
    """The TensorRT build: optimisation profile (seconds of audio, batch sizes), workspace, timing cache,
    portability flags and the GPU. ``opt_seconds`` None means the model's window."""

    min_seconds: float = 1.0
    opt_seconds: float | None = None
    max_seconds: float = 10.0
    opt_batch: int = 1
    max_batch: int = 16
    workspace_mb: int = 2048
    timing_cache: Path | None = None
    hardware_compatible: bool = False
    version_compatible: bool = False
    device_id: int = 0

    def __post_init__(self) -> None:
        if self.timing_cache is not None:
            object.__setattr__(self, "timing_cache", Path(self.timing_cache))
        for name in ("max_batch", "opt_batch", "workspace_mb"):
            _positive(name, getattr(self, name))
        for name in ("min_seconds", "opt_seconds", "max_seconds"):
            v = getattr(self, name)
            if v is not None:
                _positive(name, v, integer=False)
        opt = self.opt_seconds or self.min_seconds
        if not self.min_seconds <= opt <= self.max_seconds:
            raise ExportArgumentError(
                "engine profile: expected min_seconds <= opt_seconds <= max_seconds, given "
                f"{self.min_seconds} / {opt} / {self.max_seconds}"
            )
        if self.opt_batch > self.max_batch:
            raise ExportArgumentError(
                f"opt_batch: expected <= max_batch ({self.max_batch}), given {self.opt_batch}"
            )

    def opt_seconds_for(self, window_seconds: float) -> float:
        """The tuned length: ``opt_seconds``, else the window; it must lie in [min_seconds, max_seconds]."""
        opt = self.opt_seconds if self.opt_seconds is not None else window_seconds
        if not self.min_seconds <= opt <= self.max_seconds:
            raise ExportArgumentError(
                f"opt_seconds: expected within [{self.min_seconds}, {self.max_seconds}], given {opt} "
                "(it defaults to the window length)"
            )
        return opt


def stage_engine(
    src: Path,
    dst: Path,
    manifest: Manifest,
    options: EngineOptions,
    *,
    batches: list[NDArray[np.float32]],
    src_logits: NDArray[np.float32],
    atol: float,
    source_key: str,
) -> StageReport:
    """Build a TensorRT engine ``dst`` (+ ``dst.json``) from the ONNX ``src`` and compare its logits on
    ``batches`` with ``src_logits`` (raises :class:`ValidationError` beyond ``atol``); ``source_key`` names
    the source artifact in the comparison (``"int8_tensorrt->engine"``)."""
    from spoof_export.tensorrt import build_engine, check_tensorrt_compatibility, run_engine
    from spoof_export.validate import compare_outputs
    from spoofsdk.manifest import write_engine_manifest

    with announce("engine"):
        check_tensorrt_compatibility(src, strict=True)
        t0 = time.perf_counter()
        sr = manifest.sample_rate
        opt_s = options.opt_seconds_for(manifest.window_s)
        built = build_engine(
            src,
            dst,
            profile_min=(1, int(options.min_seconds * sr)),
            profile_opt=(options.opt_batch, int(opt_s * sr)),
            profile_max=(options.max_batch, max(int(options.max_seconds * sr), manifest.window_samples)),
            workspace_bytes=options.workspace_mb << 20,
            timing_cache=options.timing_cache,
            hardware_compatible=options.hardware_compatible,
            version_compatible=options.version_compatible,
            device_id=options.device_id,
        )
        sidecar = write_engine_manifest(dst, manifest, built.engine_info())
        engine_logits = np.concatenate([run_engine(dst, b, device_id=options.device_id) for b in batches])
        seconds = round(time.perf_counter() - t0, 2)
        compared = compare_outputs(src_logits, engine_logits, stage=f"{source_key}->engine", atol=atol)
    return StageReport(
        name="engine",
        seconds=seconds,
        outputs={"engine": str(dst), "engine_manifest": str(sidecar)},
        details={"engine_build_seconds": seconds, "compare": compared},
    )


# ---- triton ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TritonOptions:
    """A Triton model repository in ``directory``: model name prefix (None = the output prefix's name),
    ``max_batch_size``, instances and the dynamic batcher's queue delay."""

    directory: Path | None = None
    name: str | None = None
    triton_max_batch: int = 32
    triton_instances: int = 1
    triton_max_queue_delay_us: int = 2000
    triton_backend: str = "onnxruntime"

    def __post_init__(self) -> None:
        from spoof_export.triton import TRITON_BACKENDS

        if self.directory is not None:
            object.__setattr__(self, "directory", Path(self.directory))
        _positive("triton_max_batch", self.triton_max_batch)
        _positive("triton_instances", self.triton_instances)
        if self.triton_backend not in TRITON_BACKENDS:
            raise ExportArgumentError(
                f"triton_backend: expected one of {TRITON_BACKENDS}, given {self.triton_backend!r}"
            )


def stage_triton(
    onnx_path: Path,
    engine_path: Path | None,
    manifest: Manifest,
    options: TritonOptions,
    *,
    default_name: str,
    engine_max_batch: int,
) -> StageReport:
    """Write the Triton repository serving ``onnx_path`` (and ``engine_path`` when given)."""
    from spoof_export.triton import write_triton_repository

    if options.directory is None:
        raise ExportArgumentError("triton: expected a directory for the model repository, given None")
    with announce("triton"):
        t0 = time.perf_counter()
        models = write_triton_repository(
            options.directory,
            name=options.name or default_name,
            onnx_path=onnx_path,
            engine_path=engine_path,
            manifest_metadata=manifest.to_metadata(),
            max_batch_size=options.triton_max_batch,
            instance_count=options.triton_instances,
            max_queue_delay_us=options.triton_max_queue_delay_us,
            engine_max_batch=engine_max_batch,
            backend=options.triton_backend,
        )
        seconds = round(time.perf_counter() - t0, 2)
    listed = [
        dataclasses.asdict(m) | {"config_path": str(m.config_path), "model_path": str(m.model_path)}
        for m in models
    ]
    return StageReport(
        name="triton",
        seconds=seconds,
        outputs={"triton": os.fspath(options.directory)},
        details={"models": listed},
    )
