"""``export()``: checkpoint -> ONNX FP32 -> calibrate -> (int8 Q/DQ | fp16) -> TensorRT engine -> Triton.

:func:`export` composes the stages of :mod:`spoof_export.stages` (and :mod:`spoof_export.calibrate`); each
has its own typed options and returns a :class:`~spoof_export.stages.StageReport`. Every artifact is
validated against the one it was made from (in a spawned ONNX Runtime process), and everything lands in
``PREFIX.*`` only when the whole run succeeded: artifacts are written under ``*.partial`` names and
renamed at the end, the report last. A failed or interrupted export leaves no file that looks complete.

Score calibration: with a dev set (``dev``) the model is calibrated on it (the ``calibrate`` stage, unless
the checkpoint already carries a calibration and ``calibrate`` is not True); without one the manifest
gets scale 1, bias 0 and threshold 0.5, a warning is logged and the report says ``calibrated: false``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from spoof_export.contract import UNCALIBRATED, ExportContract, ScoreCalibration
from spoof_export.errors import ExportArgumentError
from spoof_export.progress import announce, file_only, log_to_file, progress
from spoof_export.stages import (
    FP16_ATOL,
    INT8_ATOL,
    INT8_OPS,
    EngineOptions,
    Fp16Options,
    Int8Options,
    OnnxOptions,
    StageReport,
    TritonOptions,
    ValidateOptions,
    Validation,
    _positive,
    stage_engine,
    stage_fp16,
    stage_onnx,
    stage_quantize,
    stage_triton,
    stage_validate,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from spoof_export.audio import AudioSet
    from spoof_export.checkpoint import LoadedDetector
    from spoofsdk.manifest import Manifest

__all__ = ["INT8_OPS", "ExportOptions", "ExportResult", "export", "run_export"]

log = logging.getLogger("spoof_export")

REPORT_VERSION = 1

#: The text log of an export: ``PREFIX.export.log`` (see :func:`run_export`).
LOG_SUFFIX = ".export.log"


def uncalibrated_warning(reason: str) -> str:
    """The warning of an uncalibrated export; ``reason`` says why nothing was fitted."""
    return (
        f"the model is UNCALIBRATED ({reason}): the manifest carries scale 1, bias 0 and threshold 0.5, "
        "which is not a meaningful decision threshold for this model; calibrate it with "
        "'spoof-export calibrate MODEL --dev MANIFEST' or export with --dev MANIFEST"
    )


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote: artifact paths by role (``onnx``, ``int8``, ``int8_tensorrt``, ``fp16``,
    ``engine``, ``engine_manifest``, ``report``, ``triton``, and ``log``: the text log) and the report as a
    dict."""

    paths: dict[str, Path]
    report: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class ExportOptions:
    """Every option of :func:`export`, typed and grouped by stage. ``int8`` / ``fp16`` / ``triton`` are
    None when that artifact is not asked for; ``engine`` is checked always and used when ``build_engine``.
    ``calibrate``: None = fit on ``validate.dev`` unless the checkpoint carries a calibration, True = fit
    on dev (required), False = never fit (the checkpoint's calibration, else uncalibrated); ``speech_gate``:
    the calibrate stage scores speech windows only, as the SDK does by default."""

    output: Path
    layers: int | None
    onnx: OnnxOptions
    int8: Int8Options | None
    fp16: Fp16Options | None
    engine: EngineOptions
    build_engine: bool
    triton: TritonOptions | None
    validate: ValidateOptions
    calibrate: bool | None = None
    speech_gate: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.layers is not None:
            _positive("layers", self.layers)
        if self.calibrate is True and self.validate.dev is None:
            raise ExportArgumentError(
                "calibrate: fitting a score calibration needs labelled dev audio: pass dev=PATH (--dev)"
            )
        if self.calibrate not in (None, True, False):
            raise ExportArgumentError(f"calibrate: expected None, True or False, given {self.calibrate!r}")


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
    fp16_atol: float = FP16_ATOL,
    int8_atol: float = INT8_ATOL,
    dev: str | os.PathLike[str] | None = None,
    dev_split: str | None = "dev",
    dev_max_files: int | None = 200,
    latency_repeats: int = 5,
    num_threads: int = 2,
    profile: bool = False,
    seed: int = 0,
    calibrate: bool | None = None,
    speech_gate: bool = True,
) -> ExportResult:
    """Export a contract-A checkpoint to contract-B model files, validating each stage.

    Writes ``PREFIX.onnx`` (FP32) and, on request, ``PREFIX.int8.onnx`` (CPU Q/DQ: u8 activations,
    reduce-range s8 weights), ``PREFIX.int8-tensorrt.onnx`` (symmetric s8 Q/DQ for TensorRT),
    ``PREFIX.fp16.onnx``, ``PREFIX.trt`` + ``PREFIX.trt.json`` and a Triton model repository, then
    ``PREFIX.export_report.json``; ``PREFIX.export.log`` is the run's text log (:func:`run_export`).
    ``output`` is the prefix (``out/wavlm6`` -> ``out/wavlm6.onnx``).
    The keywords are those of :class:`ExportOptions`' parts; :func:`run_export` takes the typed form.
    ``calibrate`` / ``speech_gate`` steer the score calibration (see :class:`ExportOptions` and the
    module docstring).

    Raises (see :mod:`spoof_export.errors` for the CLI exit codes): ``ExportArgumentError`` /
    ``LayersError`` for bad arguments, ``CheckpointLoadError`` (also for a checkpoint whose config lacks a
    contract-A key), ``CalibrationError`` for an empty, tiny or unreadable calibration / dev set or a dev
    set the score calibration cannot be fitted on, ``ValidationError`` when a stage disagrees with the one
    before, ``ToolchainUnavailableError`` when ``engine`` is asked without TensorRT, cuda-python or a GPU,
    ``EngineBuildError`` / ``TensorRTCompatibilityError`` when TensorRT cannot build the graph.
    """
    return run_export(checkpoint, _options_from_keywords(locals()))


def _options_from_keywords(kw: dict[str, Any]) -> ExportOptions:
    """The typed :class:`ExportOptions` of :func:`export`'s keywords: each options class takes the keywords
    of its field names and checks them (also those of a stage not asked for, as the CLI always did)."""
    if kw["int8"] and kw["calib"] is None:
        raise ExportArgumentError(
            "int8: static quantisation needs calibration audio: pass calib=PATH (--calib)"
        )
    if kw["calib"] is not None and not kw["int8"]:
        raise ExportArgumentError(
            "calib: given without int8 (--int8); calibration audio is only used for int8"
        )

    def make(cls: Any, **renamed: Any) -> Any:
        names = {f.name for f in dataclasses.fields(cls)} - set(renamed)
        return cls(**{k: kw[k] for k in names}, **renamed)

    int8_options: Int8Options = make(Int8Options)
    engine_options: EngineOptions = make(EngineOptions)
    triton_options: TritonOptions = make(TritonOptions, directory=kw["triton"], name=kw["triton_name"])
    fp16_options: Fp16Options = make(Fp16Options)
    return ExportOptions(
        output=Path(kw["output"]),
        layers=kw["layers"],
        onnx=make(OnnxOptions),
        int8=int8_options if kw["int8"] else None,
        fp16=fp16_options if kw["fp16"] else None,
        engine=engine_options,
        build_engine=kw["engine"],
        triton=triton_options if kw["triton"] is not None else None,
        validate=make(ValidateOptions),
        calibrate=kw["calibrate"],
        speech_gate=kw["speech_gate"],
        seed=kw["seed"],
    )


# ---- the artifact plan -----------------------------------------------------------------------------------


@dataclass
class _Plan:
    """Final paths by role, and the ``*.partial`` path each is written under until the run succeeded."""

    prefix: Path
    final: dict[str, Path]
    partial: dict[str, Path]

    @classmethod
    def make(cls, prefix: Path, options: ExportOptions) -> _Plan:
        def at(suffix: str) -> Path:
            return prefix.with_name(prefix.name + suffix)

        final = {"onnx": at(".onnx")}
        if options.int8 is not None:
            targets = options.int8.targets(engine=options.build_engine)
            if options.build_engine and options.int8.int8_target == "cpu":
                log.info("engine + int8: also writing the symmetric s8 Q/DQ graph TensorRT needs")
            if "cpu" in targets:
                final["int8"] = at(".int8.onnx")
            if "tensorrt" in targets:
                final["int8_tensorrt"] = at(".int8-tensorrt.onnx")
        if options.fp16 is not None:
            final["fp16"] = at(".fp16.onnx")
        if options.build_engine:
            final["engine"] = at(".trt")
            final["engine_manifest"] = at(".trt.json")
        final["report"] = at(".export_report.json")
        partial = {k: p.with_name(p.name + ".partial") for k, p in final.items()}
        if options.build_engine:
            partial["engine_manifest"] = partial["engine"].with_name(partial["engine"].name + ".json")
        return cls(prefix=prefix, final=final, partial=partial)

    @property
    def onnx_keys(self) -> list[str]:
        return [k for k in ("onnx", "int8", "int8_tensorrt", "fp16") if k in self.final]

    @property
    def engine_source(self) -> str:
        return (
            "int8_tensorrt" if "int8_tensorrt" in self.final else "fp16" if "fp16" in self.final else "onnx"
        )

    def commit(self) -> list[Path]:
        """Rename every artifact to its final name; remove artifacts an earlier export left at the prefix
        that this one did not write (they would describe another model). Returns the removed paths."""
        for k, p in self.final.items():
            if k != "report":
                os.replace(self.partial[k], p)
        stale = [p for p in _artifact_paths(self.prefix) if p not in self.final.values() and p.exists()]
        for p in stale:
            p.unlink()
            log.info("removed %s (left by an earlier export to this prefix; not written by this one)", p.name)
        return stale

    def cleanup(self) -> None:
        for p in self.partial.values():
            if p.exists():
                with contextlib.suppress(OSError):
                    p.unlink()


# ---- audio -----------------------------------------------------------------------------------------------


@dataclass
class _Audio:
    calib_set: AudioSet | None
    dev_set: AudioSet | None
    batches: list[NDArray[np.float32]]
    inputs_report: dict[str, Any]


def _load_audio(options: ExportOptions, contract: ExportContract) -> _Audio:
    """Calibration windows (int8), dev clips (every window of each, for the EER as the SDK scores) and the
    validation batches: two full windows, one short input, one input of 1.5 windows, from real audio when
    there is some."""
    from spoof_export.audio import load_audio_set

    sr, window, seed = contract.sample_rate, contract.window_samples, options.seed
    calib_set = dev_set = None
    q, v = options.int8, options.validate
    if q is not None:
        assert q.calib is not None
        calib_set = load_audio_set(
            q.calib,
            sample_rate=sr,
            window_samples=window,
            max_files=q.calib_max_files,
            min_files=q.calib_min_files,
            split=q.calib_split,
            seed=seed,
            what="calibration",
        )
    if v.dev is not None:
        dev_set = load_audio_set(
            v.dev,
            sample_rate=sr,
            window_samples=window,
            max_files=v.dev_max_files,
            min_files=2,
            split=v.dev_split,
            seed=seed + 1,
            what="dev",
            hop_samples=contract.hop_samples,
            min_samples=contract.min_samples,
        )
    real = calib_set.windows if calib_set is not None else dev_set.windows if dev_set is not None else None
    base = real[:3] if real is not None and len(real) >= 3 else _synthetic_audio(3, window, sr, seed)
    short = max(contract.min_samples * 4, window // 3)
    tiled = np.tile(base, (1, 2))[:, : int(window * 1.5)]
    batches = [base[:2], base[2:3, :short], tiled[:1]]
    source = "calibration audio" if calib_set is not None else "dev audio" if dev_set else "synthetic"
    return _Audio(calib_set, dev_set, batches, {"source": source, "shapes": [list(b.shape) for b in batches]})


# ---- the run ---------------------------------------------------------------------------------------------


def _preflight(options: ExportOptions) -> Path:
    prefix = options.output
    if prefix.name in ("", ".", "..") or prefix.is_dir():
        raise ExportArgumentError(
            f"output: expected a file prefix such as out/wavlm6, given a directory {prefix}"
        )
    prefix.parent.mkdir(parents=True, exist_ok=True)
    if options.build_engine:  # fail before a long export, not after it
        from spoof_export.tensorrt import gpu_info, import_tensorrt

        import_tensorrt()
        gpu_info(options.engine.device_id)
    return prefix


def _arguments(checkpoint: str | os.PathLike[str], options: ExportOptions) -> dict[str, Any]:
    q = options.int8 or Int8Options()
    v = options.validate
    return {
        "layers": options.layers,
        "int8": options.int8 is not None,
        "int8_target": q.int8_target,
        "calib": str(q.calib) if q.calib else None,
        "calib_split": q.calib_split,
        "calib_max_files": q.calib_max_files,
        "calib_method": q.calib_method,
        "calib_percentile": q.calib_percentile,
        "keep_first_conv_fp32": q.keep_first_conv_fp32,
        "int8_ops": q.int8_ops,
        "fp16": options.fp16 is not None,
        "engine": options.build_engine,
        "opset": options.onnx.opset,
        "atol": options.onnx.atol,
        "fp16_atol": (options.fp16 or Fp16Options()).fp16_atol,
        "int8_atol": q.int8_atol,
        "dev": str(v.dev) if v.dev else None,
        "calibrate": options.calibrate,
        "speech_gate": options.speech_gate,
        "num_threads": v.num_threads,
        "seed": options.seed,
    }


def _calibration_source(options: ExportOptions, contract: ExportContract) -> str:
    """``"dev"`` (fit on dev), ``"checkpoint"`` (training.json's) or ``"none"`` (uncalibrated)."""
    if options.calibrate is True:
        return "dev"
    if contract.calibration is not None:
        return "checkpoint"
    if options.calibrate is None and options.validate.dev is not None:
        return "dev"
    return "none"


def run_export(checkpoint: str | os.PathLike[str], options: ExportOptions) -> ExportResult:
    """:func:`export` with typed options: load and type the checkpoint, then run the stages.

    From the moment the output folder is known good, the ``spoof_export`` logger also writes to
    ``PREFIX.export.log`` (timestamps; every stage's start and end with its seconds, progress, warnings;
    on failure the error). The log is written as the run goes, replaces an earlier export's log at the
    prefix, and is kept when the export fails: it is not a model artifact. The handler is removed at the
    end, also on errors."""
    t_start = time.perf_counter()
    prefix = _preflight(options)
    log_path = prefix.with_name(prefix.name + LOG_SUFFIX)
    with log_to_file(log_path) as handler:
        from spoof_export import __version__

        log.info(
            "spoof_export %s: exporting %s to %s.* (log: %s)", __version__, checkpoint, prefix, log_path.name
        )
        file_only(handler, logging.INFO, "arguments: %s", json.dumps(_arguments(checkpoint, options)))
        try:
            return _run_logged(checkpoint, options, prefix, log_path, t_start)
        except BaseException as exc:
            seconds = time.perf_counter() - t_start
            file_only(
                handler, logging.ERROR, "export failed after %.1f s: %s: %s", seconds, type(exc).__name__, exc
            )
            raise


def _run_logged(
    checkpoint: str | os.PathLike[str], options: ExportOptions, prefix: Path, log_path: Path, t_start: float
) -> ExportResult:
    import torch

    from spoof_export.checkpoint import load_for_export
    from spoof_export.contract import read_contract

    torch.manual_seed(options.seed)
    with announce("load checkpoint", kind="step"):
        loaded = load_for_export(checkpoint, layers=options.layers)
        contract = read_contract(checkpoint, loaded)
    if options.build_engine:
        options.engine.opt_seconds_for(contract.window_seconds)
    plan = _Plan.make(prefix, options)
    threads_before = torch.get_num_threads()
    try:
        torch.set_num_threads(options.validate.num_threads)
        report = _run_stages(checkpoint, options, loaded, contract, plan)
        report["seconds"] = round(time.perf_counter() - t_start, 1)
        report["removed_stale"] = [str(p) for p in plan.commit()]
        report["log"] = log_path.name
        tmp_report = plan.partial["report"]
        tmp_report.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp_report, plan.final["report"])
    finally:
        torch.set_num_threads(threads_before)
        plan.cleanup()
    paths = dict(plan.final)
    if options.triton is not None:
        assert options.triton.directory is not None
        paths["triton"] = options.triton.directory
    paths["log"] = log_path
    log.info(
        "export finished in %.1f s: %s", report["seconds"], ", ".join(p.name for p in plan.final.values())
    )
    return ExportResult(paths=paths, report=report)


class _Run:
    """State shared by the stages of one export: the contract, the plan, the calibration so far, the
    report being filled."""

    def __init__(self, contract: ExportContract, plan: _Plan, report: dict[str, Any]) -> None:
        from spoof_export import __version__

        self.contract = contract
        self.plan = plan
        self.report = report
        self.exporter_version = __version__
        self.calibration: ScoreCalibration = contract.calibration or UNCALIBRATED
        self.stage_reports: list[StageReport] = []

    def manifest(self, precision: str) -> Manifest:
        return self.contract.manifest(
            precision=precision, calibration=self.calibration, exporter_version=self.exporter_version
        )

    def add(self, stage: StageReport) -> StageReport:
        self.stage_reports.append(stage)
        for w in stage.warnings:
            self.report["warnings"].append(f"{stage.name}: {w}")
        return stage


def _new_report(
    checkpoint: str | os.PathLike[str], options: ExportOptions, loaded: LoadedDetector
) -> dict[str, Any]:
    from spoof_export import __version__

    cfg = loaded.config
    return {
        "report_version": REPORT_VERSION,
        "exporter": "spoof_export",
        "exporter_version": __version__,
        "versions": _versions(),
        "checkpoint": {
            "path": str(Path(checkpoint)),
            "model_sha256": loaded.source_sha256,
            "layers_in_checkpoint": loaded.layers_before,
            "layers_exported": loaded.layers_after,
            "pruned_without_retraining": loaded.pruned,
            "config": cfg.to_dict() if hasattr(cfg, "to_dict") else str(cfg),
        },
        "arguments": _arguments(checkpoint, options),
        "stages": {},
        "artifacts": {},
        "warnings": [],
    }


def _run_stages(
    checkpoint: str | os.PathLike[str],
    options: ExportOptions,
    loaded: LoadedDetector,
    contract: ExportContract,
    plan: _Plan,
) -> dict[str, Any]:
    """Every stage in order; returns the report (``ok`` True) or raises the first failure."""
    import torch

    run = _Run(contract, plan, _new_report(checkpoint, options, loaded))
    report, partial = run.report, plan.partial
    with announce("read audio", kind="step"):
        audio = _load_audio(options, contract)
    if audio.calib_set is not None:
        cs = audio.calib_set
        report["calibration"] = {
            "source": cs.source,
            "windows": len(cs.paths),
            "labels": {str(k): cs.labels.count(k) for k in set(cs.labels)},
        }
    report["validation_inputs"] = audio.inputs_report

    def torch_logits(batches: list[NDArray[np.float32]], what: str | None = None) -> NDArray[np.float32]:
        tick = progress(what, len(batches), unit="batches") if what else None
        out = []
        with torch.no_grad():
            for i, b in enumerate(batches, 1):
                out.append(loaded.model(torch.from_numpy(np.ascontiguousarray(b))).numpy())
                if tick is not None:
                    tick(i)
        return np.concatenate(out)

    with announce("torch reference", kind="step"):
        reference = torch_logits(audio.batches)
    onnx_stage = run.add(
        stage_onnx(
            loaded.model,
            partial["onnx"],
            run.manifest("fp32"),
            options.onnx,
            example_samples=contract.window_samples,
        )
    )
    report["stages"]["onnx_export_seconds"] = onnx_stage.details["seconds"]
    _calibrate_stage(run, options)
    report["manifest"] = run.manifest("fp32").to_json_dict()
    _derived_stages(run, options, audio)
    dev = audio.dev_set
    torch_dev = None
    if dev is not None:
        assert dev.clips is not None
        with announce("torch on dev", kind="step"):
            torch_dev = torch_logits(dev.clips.batches, f"torch on dev: {dev.clips.n_windows} windows")
    fp16_atol = options.fp16.fp16_atol if options.fp16 is not None else FP16_ATOL
    int8_atol = options.int8.int8_atol if options.int8 is not None else INT8_ATOL
    validation, validate_report = stage_validate(
        {k: partial[k] for k in plan.onnx_keys},
        reference=reference,
        batches=audio.batches,
        dev_set=dev,
        torch_dev=torch_dev,
        tolerances={
            "onnx": options.onnx.atol,
            "int8": int8_atol,
            "int8_tensorrt": int8_atol,
            "fp16": fp16_atol,
        },
        spoof_index=contract.spoof_index,
        threshold_logit=run.calibration.threshold_logit,
        window_samples=contract.window_samples,
        options=options.validate,
        sample_rate=contract.sample_rate,
    )
    run.add(validate_report)
    report["stages"].update(validation.stages)
    if validation.dev_eer is not None:
        report["dev_eer"] = validation.dev_eer
    _engine_stage(run, options, validation, audio, int8_atol=int8_atol, fp16_atol=fp16_atol)
    _artifact_table(run, options, validation)
    if validation.failures:
        report["ok"] = False
        raise validation.failures[0]
    if options.triton is not None:
        quantised = "int8" in plan.final
        triton_stage = run.add(
            stage_triton(
                partial["int8"] if quantised else partial["onnx"],
                partial["engine"] if options.build_engine else None,
                run.manifest("int8" if quantised else "fp32"),
                options.triton,
                default_name=plan.prefix.name.replace(".", "_"),
                engine_max_batch=options.engine.max_batch,
            )
        )
        report["triton"] = triton_stage.details["models"]
    report["stage_reports"] = [s.summary() for s in run.stage_reports]
    report["ok"] = True
    return report


def _calibrate_stage(run: _Run, options: ExportOptions) -> None:
    """Fit the score calibration on dev (rewriting the FP32 manifest), or record why it was not."""
    source = _calibration_source(options, run.contract)
    if source == "dev":
        from spoof_export.calibrate import CalibrateOptions, calibrate

        v = options.validate
        assert v.dev is not None
        fitted, stage = calibrate(
            run.plan.partial["onnx"],
            CalibrateOptions(
                dev=v.dev,
                split=v.dev_split,
                max_files=v.dev_max_files,
                num_threads=v.num_threads,
                speech_gate=options.speech_gate,
                seed=options.seed + 1,
            ),
            plot=run.plan.final["onnx"].with_name(run.plan.final["onnx"].name + ".calibration.png"),
        )
        run.calibration = fitted.calibration
        stage.details["scored_on"] = run.plan.final["onnx"].name
        stage.details["written_to"] = [
            p.name for k, p in run.plan.final.items() if k not in ("report", "engine_manifest")
        ]
        stage.outputs = {"onnx": str(run.plan.final["onnx"])}
        if stage.details.get("plot"):
            stage.outputs["plot"] = stage.details["plot"]
        run.add(stage)
        run.report["score_calibration"] = stage.details
        return
    c = run.calibration
    block: dict[str, Any] = {"calibrated": c.calibrated, "source": c.source}
    block.update({"scale": c.scale, "bias": c.bias, "threshold": c.threshold})
    if source == "none":
        reason = (
            "no dev set was given" if options.validate.dev is None else "--no-calibrate / calibrate=False"
        )
        warning = uncalibrated_warning(reason)
        log.warning("%s", warning)
        block["warning"] = warning
        run.report["warnings"].append(warning)
    else:
        block["note"] = (
            "the calibration in the checkpoint's training.json "
            "(pass calibrate=True / --calibrate to refit it on dev)"
        )
        log.info("score calibration: the checkpoint's (training.json); --calibrate refits it on --dev")
    run.report["score_calibration"] = block


def _derived_stages(run: _Run, options: ExportOptions, audio: _Audio) -> None:
    """int8 (per target) and fp16 graphs from the FP32 ONNX."""
    partial = run.plan.partial
    if options.int8 is not None:
        assert audio.calib_set is not None
        for key, target in (("int8", "cpu"), ("int8_tensorrt", "tensorrt")):
            if key in run.plan.final:
                stage = run.add(
                    stage_quantize(
                        partial["onnx"],
                        partial[key],
                        audio.calib_set.windows,
                        run.manifest("int8"),
                        options.int8,
                        target=target,  # type: ignore[arg-type]
                    )
                )
                run.report["stages"][f"quantize_{target}"] = stage.details
    if options.fp16 is not None:
        stage = run.add(stage_fp16(partial["onnx"], partial["fp16"], run.manifest("fp16"), options.fp16))
        run.report["stages"]["fp16"] = stage.details


def _engine_stage(
    run: _Run,
    options: ExportOptions,
    validation: Validation,
    audio: _Audio,
    *,
    int8_atol: float,
    fp16_atol: float,
) -> None:
    """TensorRT's offline checks on every ONNX artifact; the engine when asked."""
    from spoof_export.tensorrt import check_tensorrt_compatibility

    plan, report = run.plan, run.report
    with announce("tensorrt check", kind="step"):
        report["tensorrt_check"] = {
            k: check_tensorrt_compatibility(plan.partial[k], strict=False) for k in plan.onnx_keys
        }
    if not options.validate.profile:
        for checked in report["tensorrt_check"].values():
            checked.pop("op_counts", None)
    if not options.build_engine:
        return
    key = plan.engine_source
    src_logits = validation.results[key].logits
    assert src_logits is not None
    n_val = sum(len(b) for b in audio.batches)
    precision = {"int8_tensorrt": "int8", "fp16": "fp16", "onnx": "fp32"}[key]
    stage = run.add(
        stage_engine(
            plan.partial[key],
            plan.partial["engine"],
            run.manifest(precision),
            options.engine,
            batches=audio.batches,
            src_logits=src_logits[:n_val],
            atol={"int8_tensorrt": int8_atol, "fp16": fp16_atol}.get(key, max(options.onnx.atol, 1e-2)),
            source_key=key,
        )
    )
    report["stages"]["engine_build_seconds"] = stage.details["engine_build_seconds"]
    report["stages"][f"{key}->engine"] = stage.details["compare"]


def _artifact_table(run: _Run, options: ExportOptions, validation: Validation) -> None:
    """Size, hash, latency and real-time factor of every artifact."""
    from spoofsdk._hashing import sha256_file

    plan, report, v = run.plan, run.report, options.validate
    window_s = run.contract.window_seconds
    fp32_size = plan.partial["onnx"].stat().st_size
    for k in plan.onnx_keys:
        r = validation.results[k]
        size = plan.partial[k].stat().st_size
        report["artifacts"][k] = {
            "file": plan.final[k].name,
            "bytes": size,
            "size_vs_fp32": round(size / fp32_size, 4),
            "sha256": sha256_file(plan.partial[k]),
            "latency_ms_per_window": None if r.latency_ms is None else round(r.latency_ms, 2),
            # 4 significant digits: a fast model's RTF is far below 1e-4 of a decimal place.
            "rtf": None if r.latency_ms is None else float(f"{r.latency_ms / 1000 / window_s:.4g}"),
            "latency_runs_ms": [round(x, 2) for x in r.latency_all_ms],
            "threads": v.num_threads,
            "providers": r.providers,
        }
        if r.profile is not None:
            report["artifacts"][k]["ort_profile"] = r.profile
    if options.build_engine:
        report["artifacts"]["engine"] = {
            "file": plan.final["engine"].name,
            "bytes": plan.partial["engine"].stat().st_size,
            "sha256": sha256_file(plan.partial["engine"]),
            "source": plan.engine_source,
        }
    report["latency_note"] = (
        f"ONNX Runtime CPU, batch 1, one {window_s:.2f} s window, {v.num_threads} threads, "
        f"median of {v.latency_repeats} after 1 warm-up, on {platform.processor() or platform.machine()}"
    )
