"""Score calibration, a stage of export: fit it on labelled dev clips scored through the SDK, write it into
the model file's manifest. The checkpoint is never touched.

``spoof-export calibrate MODEL --dev MANIFEST`` (and ``export(..., dev=...)``) runs :func:`calibrate`:

1. the dev rows (a manifest file, or a directory with ``MANIFEST.tsv``; rows of ``split`` only) are scored
   by :class:`spoofsdk.Detector` on the model file itself: full clips, the manifest's window and hop, mean
   aggregation, the SDK's speech gate unless ``speech_gate=False``. The figures are those of the file
   that ships, not of the torch checkpoint or of one centre window.
2. :func:`spoof_train.metrics.calibrate` fits a prior-weighted (0.5) logistic regression of the label on
   each clip's mean logit difference ``d`` (any calibration the file already carries is undone first),
   giving spoof log-odds ``scale * d + bias``, and puts the decision threshold at the dev EER point
   (``threshold="eer"``) or at a target false-acceptance rate (``threshold="far"``).
3. ``scale``, ``bias`` and ``threshold`` replace the manifest's (ONNX ``metadata_props``, or the
   ``NAME.trt.json`` sidecar of an engine); every other key stays as it was.

Clips that cannot be read or are shorter than the model's shortest input are skipped with a warning,
clips without speech (``undetermined``) are left out; both are counted in the report. Fewer than
``min_per_class`` scored clips of either class is a :class:`~spoof_export.errors.CalibrationError`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from spoof_export.contract import ScoreCalibration
from spoof_export.errors import (
    CalibrationError,
    ExportArgumentError,
    ModelFileError,
    ToolchainUnavailableError,
)
from spoof_export.progress import announce, progress
from spoof_export.stages import StageReport

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from spoofsdk.manifest import Manifest

__all__ = [
    "CalibrateOptions",
    "ClipScores",
    "FittedCalibration",
    "calibrate",
    "fit_calibration",
    "plot_calibration",
    "score_clips",
    "write_calibration",
]

log = logging.getLogger("spoof_export")

LABELS = ("bonafide", "spoof")


@dataclass(frozen=True)
class CalibrateOptions:
    """Options of the calibrate stage (``spoof-export calibrate`` flags of the same names).

    ``dev``: labelled manifest file or directory; ``split``: manifest split to use (``None`` = all rows);
    ``max_files``: score at most this many rows (picked deterministically with ``seed``, balanced by
    label; ``None`` = all); ``threshold``: ``"eer"`` or ``"far"`` (then ``target_far``);
    ``prior_spoof``: the prior the logistic fit weights the classes to; ``speech_gate``: score speech
    windows only, as the SDK does by default; ``num_threads``: ONNX Runtime threads;
    ``min_per_class``: fewer scored clips of a class is an error.
    """

    dev: Path
    split: str | None = "dev"
    max_files: int | None = None
    threshold: Literal["eer", "far"] = "eer"
    target_far: float = 0.01
    prior_spoof: float = 0.5
    speech_gate: bool = True
    num_threads: int = 2
    seed: int = 0
    min_per_class: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "dev", Path(self.dev))
        for name in ("max_files", "num_threads", "min_per_class"):
            v = getattr(self, name)
            if v is None and name == "max_files":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ExportArgumentError(f"{name}: expected an integer > 0, given {v!r}")
        if self.threshold not in ("eer", "far"):
            raise ExportArgumentError(f"threshold: expected 'eer' or 'far', given {self.threshold!r}")
        for name in ("target_far", "prior_spoof"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < 1.0:
                raise ExportArgumentError(f"{name}: expected a value in (0, 1), given {v!r}")


@dataclass(frozen=True)
class ClipScores:
    """SDK scores of clips, aligned with ``paths``: ``logit`` is the manifest-calibrated spoof log-odds the
    SDK reports (``Score.logit``; NaN when the clip was not scored), ``raw`` the logit difference with that
    calibration undone, ``reasons`` why each unscored clip was not scored (by index)."""

    paths: tuple[str, ...]
    logit: NDArray[np.float64]
    raw: NDArray[np.float64]
    seconds: NDArray[np.float64]
    reasons: dict[int, str] = field(default_factory=dict)


def score_clips(
    model: str | os.PathLike[str] | None,
    paths: Sequence[str | os.PathLike[str]],
    *,
    num_threads: int = 2,
    speech_gate: bool = True,
    skip_unreadable: bool = True,
) -> ClipScores:
    """Score each file in ``paths`` with :class:`spoofsdk.Detector` on ``model`` (ONNX on the CPU backend,
    a TensorRT engine on the TensorRT backend; None = the default detector shipped in spoofsdk).

    With ``skip_unreadable`` an unreadable file or one shorter than the model's shortest input gets NaN
    and a reason; without it the error propagates (``AudioFileError`` naming the file, or
    ``InvalidAudioError``). A clip without speech gets NaN and the reason ``"no speech"``.
    """
    from spoofsdk import Detector
    from spoofsdk.audio import read_file
    from spoofsdk.detector import _no_uncalibrated_warning
    from spoofsdk.errors import InvalidAudioError
    from spoofsdk.manifest import ENGINE_SUFFIXES

    engine = model is not None and Path(model).suffix.lower() in ENGINE_SUFFIXES
    if model is not None:  # scored to be calibrated: the SDK's "uncalibrated" warning is no news here
        _no_uncalibrated_warning(Path(model))
    det = Detector(
        model, backend="tensorrt" if engine else "cpu", num_threads=num_threads, speech_gate=speech_gate
    )
    cal = det.manifest.calibration
    n = len(paths)
    logit = np.full(n, np.nan)
    seconds = np.full(n, np.nan)
    reasons: dict[int, str] = {}
    tick = progress(f"scoring {'the default detector' if model is None else Path(model).name}", n)
    for i, p in enumerate(paths):
        try:
            pcm, sr = read_file(p)  # the SDK's reader: a bad file is an AudioFileError naming it
            seconds[i] = pcm.shape[0] / sr
            score = det.score(pcm, sample_rate=sr)
        except (OSError, RuntimeError, InvalidAudioError) as exc:
            if not skip_unreadable:
                raise
            reasons[i] = f"{type(exc).__name__}: {exc}"
        else:
            if score.verdict == "undetermined":
                reasons[i] = "no speech"
            logit[i] = score.logit
        tick(i + 1)
    return ClipScores(
        paths=tuple(str(p) for p in paths),
        logit=logit,
        raw=(logit - cal.bias) / cal.scale,
        seconds=seconds,
        reasons=reasons,
    )


@dataclass(frozen=True)
class FittedCalibration:
    """A fitted calibration and what it gave on the clips it was fitted on (rates as fractions)."""

    calibration: ScoreCalibration
    threshold_mode: str
    score_threshold: float
    far: float
    frr: float
    eer: float
    prior_spoof: float
    n_bonafide: int
    n_spoof: int

    def to_dict(self) -> dict[str, Any]:
        c = self.calibration
        return {
            "scale": c.scale,
            "bias": c.bias,
            "threshold": c.threshold,
            "threshold_mode": self.threshold_mode,
            "score_threshold": self.score_threshold,
            "far": self.far,
            "frr": self.frr,
            "eer": self.eer,
            "prior_spoof": self.prior_spoof,
            "n_bonafide": self.n_bonafide,
            "n_spoof": self.n_spoof,
        }


def fit_calibration(
    raw: NDArray[np.float64],
    labels: Sequence[str],
    *,
    threshold: Literal["eer", "far"] = "eer",
    target_far: float = 0.01,
    prior_spoof: float = 0.5,
    min_per_class: int = 2,
) -> FittedCalibration:
    """Fit :func:`spoof_train.metrics.calibrate` on clip logit differences ``raw`` (higher = more spoof)
    with labels ``"bonafide"`` / ``"spoof"``; NaN entries are left out.

    Raises :class:`CalibrationError` for another label, too few clips of a class, or scores that rank
    spoofs below bona fide (a fitted scale <= 0 cannot be a manifest calibration).
    """
    from spoof_train.metrics import calibrate as fit
    from spoof_train.metrics import compute_eer

    lab = np.asarray(list(labels), dtype=object)
    z = np.asarray(raw, dtype=np.float64)
    if lab.shape != z.shape:
        raise CalibrationError(f"calibration: {z.size} scores for {lab.size} labels")
    other = sorted({str(x) for x in lab} - set(LABELS))
    if other:
        raise CalibrationError(f"calibration: expected labels 'bonafide' and 'spoof', given also {other}")
    ok = np.isfinite(z)
    bona, spoof = z[ok & (lab == "bonafide")], z[ok & (lab == "spoof")]
    if bona.size < min_per_class or spoof.size < min_per_class:
        raise CalibrationError(
            f"calibration: expected at least {min_per_class} scored clips of each class, given "
            f"{bona.size} bona fide and {spoof.size} spoof"
        )
    c = fit(-bona, -spoof, threshold=threshold, target_far=target_far, prior_spoof=prior_spoof)
    if not (math.isfinite(c.scale) and c.scale > 0):
        raise CalibrationError(
            f"calibration: the fitted scale is {c.scale:.4g} (<= 0): on these clips the model scores "
            "spoofs as bona fide or cannot tell them apart; check the labels, the split and the model"
        )
    eer, _ = compute_eer(-bona, -spoof)
    return FittedCalibration(
        calibration=ScoreCalibration(
            scale=c.scale, bias=c.bias, threshold=c.threshold, calibrated=True, source="dev"
        ),
        threshold_mode=c.threshold_mode,
        score_threshold=c.score_threshold,
        far=c.far,
        frr=c.frr,
        eer=float(eer),
        prior_spoof=c.prior_spoof,
        n_bonafide=c.n_bonafide,
        n_spoof=c.n_spoof,
    )


def write_calibration(model: str | os.PathLike[str], calibration: ScoreCalibration) -> Manifest:
    """Replace the score calibration and threshold in ``model``'s manifest; every other key is kept.

    ``model`` is an ONNX file (its ``metadata_props`` are rewritten through a temporary file and an
    atomic rename) or a TensorRT engine / its ``.json`` sidecar (the sidecar is rewritten). Returns the
    new manifest.
    """
    from spoofsdk.manifest import (
        ENGINE_SUFFIXES,
        Calibration,
        engine_sidecar_path,
        read_manifest,
        write_engine_manifest,
        write_onnx_manifest,
    )

    path = Path(model)
    old = read_manifest(path)
    new = replace(
        old,
        calibration=Calibration(
            scale=calibration.scale, bias=calibration.bias, calibrated=calibration.calibrated
        ),
        threshold=calibration.threshold,
    )
    suffix = path.suffix.lower()
    if suffix in ENGINE_SUFFIXES or suffix == ".json":
        if old.engine is None:
            raise CalibrationError(f"{path}: an engine sidecar without its 'engine' block")
        engine = path if suffix in ENGINE_SUFFIXES else path.with_suffix("")
        sidecar = write_engine_manifest(engine, replace(new, engine=None), old.engine)
        assert sidecar == engine_sidecar_path(engine)
        return new
    tmp = path.with_name(path.name + ".calibrating")
    try:
        write_onnx_manifest(path, new, output=tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return new


#: What the report says when the calibration plot cannot be drawn (matplotlib comes with the train extra).
NO_MATPLOTLIB = (
    "calibration plot not written: matplotlib is not installed (it comes with the 'train' extra: "
    "pip install 'spoofsdk[train]')"
)


def _calibration_figure(
    logit_diff: Sequence[float] | NDArray[np.float64],
    labels: Sequence[str],
    calibration: ScoreCalibration,
    *,
    prior_spoof: float = 0.5,
    bins: int = 10,
    title: str = "score calibration on dev",
) -> Any:
    """The calibration figure (a matplotlib ``Figure``): left, the reliability curve (mean predicted spoof
    probability against the observed spoof fraction per bin of predicted probability, the classes weighted
    to ``prior_spoof`` as in the fit, marker area ~ clips per bin); right, histograms of the calibrated
    log-odds per class with the decision threshold."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    d = np.asarray(logit_diff, dtype=np.float64)
    lab = np.asarray(labels)
    ok = np.isfinite(d) & np.isin(lab, ("bonafide", "spoof"))
    d, lab = d[ok], lab[ok]
    is_spoof = lab == "spoof"
    z = calibration.scale * d + calibration.bias
    p = 1.0 / (1.0 + np.exp(-z))
    n_sp, n_bf = int(is_spoof.sum()), int((~is_spoof).sum())
    w = np.where(is_spoof, prior_spoof / max(n_sp, 1), (1 - prior_spoof) / max(n_bf, 1))

    fig = Figure(figsize=(11.0, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    rel, hist = fig.subplots(1, 2)
    rel.plot([0, 1], [0, 1], ls=":", color="0.5", label="perfect calibration")
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    xs, ys, ns = [], [], []
    for b in range(bins):
        m = idx == b
        if m.any():
            xs.append(float(np.average(p[m], weights=w[m])))
            ys.append(float(np.sum(w[m] * is_spoof[m]) / np.sum(w[m])))
            ns.append(int(m.sum()))
    rel.plot(xs, ys, "-", color="tab:blue", gid="reliability", label=f"dev, {bins} bins of predicted p")
    rel.scatter(xs, ys, s=[12 + 60 * n / max(ns) for n in ns], color="tab:blue", zorder=3)
    rel.axvline(
        calibration.threshold, color="tab:red", lw=1, ls="--", label=f"threshold {calibration.threshold:.3f}"
    )
    rel.set_xlim(0, 1)
    rel.set_ylim(0, 1)
    rel.set_aspect("equal")
    rel.set_xlabel("predicted spoof probability")
    rel.set_ylabel("observed spoof fraction")
    rel.set_title(f"reliability (classes weighted to P(spoof) {prior_spoof:.2g})", fontsize=10)
    rel.grid(True, alpha=0.3)
    rel.legend(loc="upper left", fontsize=8)

    hb = np.histogram_bin_edges(z, bins=min(40, max(10, z.size // 5))) if z.size else np.linspace(-1, 1, 11)
    hist.hist(
        z[~is_spoof],
        bins=hb,
        histtype="stepfilled",
        alpha=0.45,
        color="tab:green",
        label=f"bona fide (n={n_bf})",
    )
    hist.hist(
        z[is_spoof], bins=hb, histtype="stepfilled", alpha=0.45, color="tab:red", label=f"spoof (n={n_sp})"
    )
    t = math.log(calibration.threshold / (1 - calibration.threshold))
    hist.axvline(t, color="black", lw=1, ls="--", gid="threshold", label=f"threshold (log-odds {t:.2f})")
    hist.set_xlabel("calibrated spoof log-odds  scale * d + bias  (clip mean)")
    hist.set_ylabel("clips")
    hist.set_title("scores per class")
    hist.grid(True, alpha=0.3)
    hist.legend(fontsize=8)
    fig.suptitle(
        f"{title}: scale {calibration.scale:.4g}, bias {calibration.bias:.4g}, "
        f"threshold {calibration.threshold:.4f}"
    )
    fig.tight_layout()
    return fig


def plot_calibration(
    path: str | os.PathLike[str],
    logit_diff: Sequence[float] | NDArray[np.float64],
    labels: Sequence[str],
    calibration: ScoreCalibration,
    *,
    prior_spoof: float = 0.5,
    title: str = "score calibration on dev",
) -> Path | None:
    """Write the calibration plot (reliability curve + score histograms per class) to ``path`` as PNG.

    ``logit_diff`` are the clips' raw (uncalibrated) SDK logit differences, ``labels`` their
    ``"bonafide"``/``"spoof"`` labels. Returns the path, or None (with a logged warning) when matplotlib
    is not installed: it is optional for the export (it comes with the ``train`` extra).
    """
    try:
        fig = _calibration_figure(logit_diff, labels, calibration, prior_spoof=prior_spoof, title=title)
    except ImportError:
        log.warning("%s", NO_MATPLOTLIB)
        return None
    out = Path(path)
    fig.savefig(out)
    return out


def _dev_rows(options: CalibrateOptions) -> tuple[list[str], list[str], str]:
    from spoof_export.audio import _pick, resolve_clips

    clips = _pick(
        resolve_clips(options.dev, split=options.split, what="dev"), options.max_files, options.seed
    )
    unlabelled = [c for c in clips if c.label is None]
    if unlabelled:
        raise CalibrationError(
            f"dev set {options.dev}: calibration needs labelled rows (a manifest with a label column); "
            f"{len(unlabelled)} of {len(clips)} rows have no label, first: {unlabelled[0].path}"
        )
    return [str(c.path) for c in clips], [str(c.label) for c in clips], str(options.dev)


def calibrate(
    model: str | os.PathLike[str],
    options: CalibrateOptions,
    *,
    also: Sequence[str | os.PathLike[str]] = (),
    plot: str | os.PathLike[str] | bool = True,
) -> tuple[FittedCalibration, StageReport]:
    """Fit the score calibration of ``model`` on ``options.dev`` and write it into ``model``'s manifest
    and into each file of ``also`` (other precisions of the same model). Returns the fit and a
    :class:`StageReport` listing the rows used, the rows skipped and why.

    ``plot``: where to write the calibration plot (:func:`plot_calibration`); True = ``MODEL.calibration.png``
    next to the model, False = none. The report's ``details["plot"]`` is the path written, or None with
    ``details["plot_skipped"]`` saying why. Logs ``stage calibrate: started`` / ``done in S s`` and the
    scoring progress (INFO, ``spoof_export`` logger).
    """
    with announce("calibrate"):
        t0 = time.perf_counter()
        path = Path(model)
        written = _model_files(path, also)
        paths, labels, source = _dev_rows(options)
        log.info("calibrate: scoring %d dev clips from %s through the SDK", len(paths), source)
        scores = _score_dev(path, paths, options)
        skipped = {paths[i]: r for i, r in scores.reasons.items() if r != "no speech"}
        no_speech = [paths[i] for i, r in scores.reasons.items() if r == "no speech"]
        fitted = _fit_dev(scores, labels, options, rows=len(paths), skipped=skipped, no_speech=no_speech)
        for p in written:
            manifest = write_calibration(p, fitted.calibration)
        warnings = _left_out_warnings(skipped, no_speech)
        details: dict[str, Any] = {
            "calibrated": True,
            "source": "dev",
            "dev": source,
            "split": options.split,
            **fitted.to_dict(),
            "scored_on": path.name,
            "written_to": [str(p) for p in written],
            "method": _method(options, manifest),
            "speech_gate": options.speech_gate,
            "rows": len(paths),
            "skipped": skipped,
            "no_speech": no_speech,
            "scores": [
                {"path": p, "label": lb, "logit_diff": None if not math.isfinite(z) else round(float(z), 6)}
                for p, lb, z in zip(paths, labels, scores.raw, strict=True)
            ],
        }
        plot_path = _draw(
            plot,
            path,
            raw=scores.raw,
            labels=labels,
            fitted=fitted,
            options=options,
            source=source,
            details=details,
        )
        report = StageReport(
            name="calibrate",
            seconds=round(time.perf_counter() - t0, 2),
            outputs={
                "model": str(path),
                **{f"also_{i}": str(p) for i, p in enumerate(also)},
                **({"plot": str(plot_path)} if plot_path is not None else {}),
            },
            details=details,
            warnings=warnings,
        )
        log.info(
            "calibrate: scale %.4g, bias %.4g, threshold %.4f (dev EER %.2f %%, %d bona fide, %d spoof)",
            fitted.calibration.scale,
            fitted.calibration.bias,
            fitted.calibration.threshold,
            100 * fitted.eer,
            fitted.n_bonafide,
            fitted.n_spoof,
        )
    return fitted, report


def _model_files(path: Path, also: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """``path`` and ``also``, each checked to be a readable model file before anything is scored or
    written, the ``also`` files other precisions of the same model."""
    from spoofsdk.errors import ModelLoadError
    from spoofsdk.manifest import read_manifest

    if path.suffix.lower() == ".json":
        raise ModelFileError(f"calibrate: expected a model file (.onnx, .trt), given the sidecar {path}")
    written = [path, *(Path(p) for p in also)]
    try:
        manifests = [read_manifest(p) for p in written]
    except ModelLoadError as exc:
        raise ModelFileError(f"calibrate: {exc}") from exc
    keys = ("source_sha256", "sample_rate", "window_samples", "hop_samples", "label_order", "spoof_index")
    for p, m in zip(written[1:], manifests[1:], strict=True):
        differ = [k for k in keys if getattr(m, k) != getattr(manifests[0], k)]
        if differ:
            raise ExportArgumentError(
                f"also: {p} is not another precision of {path}: its manifest differs in {', '.join(differ)}"
            )
    return written


def _score_dev(path: Path, paths: list[str], options: CalibrateOptions) -> ClipScores:
    """:func:`score_clips` of the dev rows, the SDK's load errors as the exporter's."""
    from spoofsdk.errors import BackendUnavailableError, ModelLoadError

    try:
        return score_clips(path, paths, num_threads=options.num_threads, speech_gate=options.speech_gate)
    except ModelLoadError as exc:
        raise ModelFileError(f"calibrate: {exc}") from exc
    except BackendUnavailableError as exc:
        raise ToolchainUnavailableError(f"calibrate: scoring {path.name} needs {exc}") from exc


def _fit_dev(
    scores: ClipScores,
    labels: list[str],
    options: CalibrateOptions,
    *,
    rows: int,
    skipped: dict[str, str],
    no_speech: list[str],
) -> FittedCalibration:
    """:func:`fit_calibration` on the scored clips; a failed fit says which rows were left out and why."""
    try:
        return fit_calibration(
            scores.raw,
            labels,
            threshold=options.threshold,
            target_far=options.target_far,
            prior_spoof=options.prior_spoof,
            min_per_class=options.min_per_class,
        )
    except CalibrationError as exc:
        left_out = []
        if no_speech:
            left_out.append(
                f"{len(no_speech)} without speech (the speech gate is on; --no-speech-gate "
                "scores every window)"
            )
        if skipped:
            left_out.append(f"{len(skipped)} unreadable or too short")
        if not left_out:
            raise
        raise CalibrationError(f"{exc}; of {rows} dev rows, left out: {', '.join(left_out)}") from None


def _left_out_warnings(skipped: dict[str, str], no_speech: list[str]) -> list[str]:
    warnings = []
    if skipped:
        first = next(iter(skipped.items()))
        warnings.append(
            f"skipped {len(skipped)} dev clip(s) that could not be scored, first: {first[0]}: {first[1]}"
        )
    if no_speech:
        warnings.append(f"left out {len(no_speech)} dev clip(s) without speech (undetermined)")
    for w in warnings:
        log.warning("calibrate: %s", w)
    return warnings


def _method(options: CalibrateOptions, manifest: Manifest) -> str:
    return (
        f"prior-weighted ({options.prior_spoof:g}) logistic regression of the SDK clip log-odds "
        f"(mean of {manifest.window_s:g} s windows, {manifest.hop_s:g} s hop, speech gate "
        f"{'on' if options.speech_gate else 'off'}); threshold at the dev "
        + ("EER point" if options.threshold == "eer" else f"FAR <= {options.target_far:g}")
    )


def _draw(
    plot: str | os.PathLike[str] | bool,
    path: Path,
    *,
    raw: NDArray[np.float64],
    labels: list[str],
    fitted: FittedCalibration,
    options: CalibrateOptions,
    source: str,
    details: dict[str, Any],
) -> Path | None:
    """The calibration plot as ``plot`` asks (see :func:`calibrate`); records it in ``details``."""
    if plot is False:
        return None
    target = path.with_name(path.name + ".calibration.png") if plot is True else Path(plot)
    plot_path = plot_calibration(
        target,
        raw,
        labels,
        fitted.calibration,
        prior_spoof=options.prior_spoof,
        title=f"score calibration on {options.split or 'all'} rows of {Path(source).name}",
    )
    details["plot"] = None if plot_path is None else str(plot_path)
    if plot_path is None:
        details["plot_skipped"] = NO_MATPLOTLIB
    return plot_path
