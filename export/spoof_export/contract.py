"""Contract A, typed at the export boundary: what a checkpoint must say before it can become a model file.

:func:`read_contract` turns a loaded checkpoint (``config.json`` + ``training.json``) into an
:class:`ExportContract`: sample rate, window, hop, label order, spoof index, layers, backbone name, the
shortest input the graph accepts, and the score calibration ``training.json`` carries, if any. Nothing is
guessed: a key missing from ``config.json`` or a calibration without its threshold is a
:class:`~spoof_export.errors.CheckpointLoadError` naming the key, never a default that happens to differ
from the one training used.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spoof_export.errors import CheckpointLoadError

if TYPE_CHECKING:
    from spoof_export.checkpoint import LoadedDetector
    from spoofsdk.manifest import Manifest

__all__ = [
    "REQUIRED_CONFIG_KEYS",
    "UNCALIBRATED",
    "ExportContract",
    "ScoreCalibration",
    "read_contract",
]

#: Keys of ``config.json`` the exporter reads; each must be present (no defaults at this boundary).
REQUIRED_CONFIG_KEYS = ("kind", "sample_rate", "window_samples", "hop_samples", "label_order")


@dataclass(frozen=True)
class ScoreCalibration:
    """The score calibration a manifest carries: spoof log-odds ``scale * d + bias`` of the logit difference
    ``d = logit[spoof] - logit[other]``, and the decision threshold on the spoof probability.

    ``calibrated`` is False for the identity map with threshold 0.5 written when nothing was fitted;
    ``source`` says where the numbers came from (``"dev"``, ``"checkpoint"`` or ``"none"``).
    """

    scale: float
    bias: float
    threshold: float
    calibrated: bool
    source: str

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"calibration scale: expected a finite number > 0, given {self.scale!r}")
        if not math.isfinite(self.bias):
            raise ValueError(f"calibration bias: expected a finite number, given {self.bias!r}")
        if not (math.isfinite(self.threshold) and 0.0 < self.threshold < 1.0):
            raise ValueError(
                f"calibration threshold: expected a probability in (0, 1), given {self.threshold!r}"
            )

    @property
    def threshold_logit(self) -> float:
        """The decision threshold as a raw logit difference ``d`` (before ``scale`` and ``bias``)."""
        return (math.log(self.threshold / (1 - self.threshold)) - self.bias) / self.scale


#: What a model file carries when it was not calibrated: identity map, threshold 0.5 (not meaningful).
UNCALIBRATED = ScoreCalibration(scale=1.0, bias=0.0, threshold=0.5, calibrated=False, source="none")


@dataclass(frozen=True)
class ExportContract:
    """Contract A as the exporter needs it (see the module docstring)."""

    sample_rate: int
    window_samples: int
    hop_samples: int
    min_samples: int
    label_order: tuple[str, str]
    spoof_index: int
    kind: str
    layers: int
    backbone: str
    source_sha256: str
    calibration: ScoreCalibration | None

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.sample_rate

    def manifest(self, *, precision: str, calibration: ScoreCalibration, exporter_version: str) -> Manifest:
        """The contract-B manifest of one artifact of this checkpoint."""
        from spoofsdk.manifest import Calibration, Manifest

        return Manifest(
            sample_rate=self.sample_rate,
            window_samples=self.window_samples,
            hop_samples=self.hop_samples,
            min_samples=self.min_samples,
            label_order=self.label_order,
            spoof_index=self.spoof_index,
            calibration=Calibration(
                scale=calibration.scale, bias=calibration.bias, calibrated=calibration.calibrated
            ),
            threshold=calibration.threshold,
            precision=precision,
            layers=self.layers,
            backbone=self.backbone,
            source_sha256=self.source_sha256,
            exporter="spoof_export",
            exporter_version=exporter_version,
        )


def _positive_int(source: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CheckpointLoadError(f"{source}: key '{key}': expected an integer > 0, given {value!r}")
    return value


def _raw_config(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointLoadError(f"{path}: expected a JSON object ({exc})") from exc
    if not isinstance(raw, dict):
        raise CheckpointLoadError(f"{path}: expected a JSON object, given {type(raw).__name__}")
    missing = [k for k in REQUIRED_CONFIG_KEYS if k not in raw]
    if missing:
        raise CheckpointLoadError(
            f"{path}: contract A needs the keys {', '.join(REQUIRED_CONFIG_KEYS)}; "
            f"missing: {', '.join(missing)}"
        )
    return raw


def checkpoint_calibration(info: dict[str, Any], *, source: str) -> ScoreCalibration | None:
    """The calibration ``training.json`` carries (key ``calibration``: scale, bias, threshold), or None.

    A calibration that is present but incomplete or out of range is an error: writing threshold 0.5 in
    place of a missing one would ship a model that looks calibrated and is not.
    """
    cal = info.get("calibration")
    if cal is None:
        return None
    if not isinstance(cal, dict):
        raise CheckpointLoadError(
            f"{source}: key 'calibration': expected an object with scale, bias and threshold, "
            f"given {type(cal).__name__}"
        )
    missing = [k for k in ("scale", "bias", "threshold") if k not in cal]
    if missing:
        raise CheckpointLoadError(
            f"{source}: key 'calibration' lacks {', '.join(missing)} (expected scale, bias, threshold)"
        )
    values = {}
    for k in ("scale", "bias", "threshold"):
        v = cal[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise CheckpointLoadError(f"{source}: key 'calibration.{k}': expected a number, given {v!r}")
        values[k] = float(v)
    try:
        return ScoreCalibration(**values, calibrated=True, source="checkpoint")
    except ValueError as exc:
        raise CheckpointLoadError(f"{source}: key 'calibration': {exc}") from None


def _backbone_name(kind: str, backbone: dict[str, Any] | None) -> str:
    if kind != "ssl":
        return kind
    if not isinstance(backbone, dict) or "family" not in backbone:
        raise CheckpointLoadError(f"config: an ssl detector needs backbone.family, given {backbone!r}")
    hf = backbone.get("config") or {}
    hidden = hf.get("hidden_size") if isinstance(hf, dict) else None
    return f"{backbone['family']}" + (f"-h{hidden}" if hidden else "")


def _min_samples(kind: str, backbone: dict[str, Any] | None, window: int, model: Any) -> int:
    """Shortest input the graph accepts: the model's own figure, or an SSL conv encoder's receptive field."""
    own = getattr(model, "min_samples", None)
    if isinstance(own, int) and own > 0:
        return min(own, window)
    hf = (backbone or {}).get("config") or {}
    kernels, strides = hf.get("conv_kernel"), hf.get("conv_stride")
    if kind == "ssl" and kernels and strides:
        field_, jump = 1, 1
        for k, s in zip(kernels, strides, strict=True):
            field_ += (int(k) - 1) * jump
            jump *= int(s)
        return min(max(field_, 1), window)
    return window


def read_contract(checkpoint: str | os.PathLike[str], loaded: LoadedDetector) -> ExportContract:
    """Type the checkpoint at ``checkpoint`` (already loaded as ``loaded``) as an :class:`ExportContract`.

    Raises :class:`CheckpointLoadError` for a key missing from ``config.json``, a label order without
    ``"spoof"``, a hop longer than the window, or an incomplete calibration in ``training.json``.
    """
    root = Path(checkpoint)
    source = str(root / "config.json")
    raw = _raw_config(root)
    cfg = loaded.config  # the (possibly pruned) DetectorConfig; its values, checked present above
    kind = str(cfg.kind)
    sample_rate = _positive_int(source, "sample_rate", cfg.sample_rate)
    window = _positive_int(source, "window_samples", cfg.window_samples)
    hop = _positive_int(source, "hop_samples", cfg.hop_samples)
    if hop > window:
        raise CheckpointLoadError(
            f"{source}: key 'hop_samples': expected <= window_samples ({window}), given {hop}"
        )
    labels = tuple(str(x) for x in cfg.label_order)
    if len(labels) != 2 or "spoof" not in labels:
        raise CheckpointLoadError(
            f"{source}: key 'label_order': expected two labels including 'spoof', "
            f"given {raw['label_order']!r}"
        )
    return ExportContract(
        sample_rate=sample_rate,
        window_samples=window,
        hop_samples=hop,
        min_samples=_min_samples(kind, cfg.backbone, window, loaded.model),
        label_order=(labels[0], labels[1]),
        spoof_index=labels.index("spoof"),
        kind=kind,
        layers=loaded.layers_after if kind == "ssl" else 0,
        backbone=_backbone_name(kind, cfg.backbone),
        source_sha256=loaded.source_sha256,
        calibration=checkpoint_calibration(loaded.training_info, source=str(root / "training.json")),
    )
