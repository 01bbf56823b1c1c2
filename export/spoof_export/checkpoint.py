"""Load a contract-A checkpoint for export and keep its first N transformer layers.

Loading goes through :func:`spoof_train.checkpoint.load_checkpoint` (safetensors, no pickle). Pruning
rebuilds the detector from its config with ``layers=N`` and copies the weights: the transformer layers
``0..N-1`` and everything outside the removed layers. A back-end parameter sized by the layer count
(e.g. per-layer mixing weights over ``layers + 1`` hidden states) is cut to its first entries. Pruning a
trained detector without retraining changes what its back-end sees: distil a student
(``spoof-train distil``) or fine-tune after choosing N; the report records that it was pruned.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spoof_export.errors import CheckpointLoadError, LayersError

if TYPE_CHECKING:
    import torch

__all__ = ["LoadedDetector", "load_for_export", "prune_layers"]

log = logging.getLogger("spoof_export")


@dataclass
class LoadedDetector:
    model: torch.nn.Module
    config: Any
    training_info: dict[str, Any]
    source_sha256: str
    layers_before: int
    layers_after: int
    pruned: bool


def _kind(config: Any) -> str:
    return str(getattr(config, "kind", "ssl"))


def _layers(config: Any) -> int:
    """Transformer layers the detector really has (0 for raw-waveform detectors)."""
    return int(getattr(config, "kept_layers", None) or 0)


def prune_layers(model: torch.nn.Module, config: Any, layers: int) -> tuple[torch.nn.Module, Any]:
    """A new detector with the first ``layers`` transformer layers of ``model`` (weights copied)."""
    import dataclasses

    from spoof_train.models import build_detector

    new_config = dataclasses.replace(config, layers=layers)
    new_model = build_detector(new_config)
    old = model.state_dict()
    new = new_model.state_dict()
    cut = _layers(config) - layers
    loaded = {}
    for key, tensor in new.items():
        if key not in old:
            raise CheckpointLoadError(
                f"pruning to {layers} layers: the pruned model has a parameter '{key}' the checkpoint lacks"
            )
        src = old[key]
        if src.shape == tensor.shape:
            loaded[key] = src
        elif (
            src.ndim == tensor.ndim
            and src.shape[1:] == tensor.shape[1:]
            and src.shape[0] - tensor.shape[0] == cut
        ):
            loaded[key] = src[: tensor.shape[0]].clone()
            log.warning(
                "pruning: '%s' sized by the layer count, cut from %d to %d",
                key,
                src.shape[0],
                tensor.shape[0],
            )
        else:
            raise CheckpointLoadError(
                f"pruning to {layers} layers: parameter '{key}' has shape {tuple(src.shape)} "
                f"in the checkpoint and {tuple(tensor.shape)} in the pruned model; this back-end "
                "cannot be pruned by copying"
            )
    new_model.load_state_dict(loaded, strict=True)
    return new_model.eval(), new_config


def load_for_export(checkpoint: str | os.PathLike[str], *, layers: int | None) -> LoadedDetector:
    """Load ``checkpoint`` (a contract-A directory) and prune it to ``layers`` when given."""
    path = Path(checkpoint)
    if not path.is_dir():
        raise CheckpointLoadError(
            f"checkpoint: expected a directory with config.json and model.safetensors, given {path}"
            + (" (a file)" if path.exists() else " (missing)")
        )
    try:
        from spoof_train.checkpoint import load_checkpoint
    except ImportError as exc:  # pragma: no cover - same wheel
        raise CheckpointLoadError(f"loading {path} needs spoof_train.checkpoint ({exc})") from exc
    try:
        model, config, info = load_checkpoint(path, map_location="cpu")
    except Exception as exc:  # CheckpointError, safetensors errors, bad configs: all mean "unusable"
        raise CheckpointLoadError(
            f"{path}: cannot load the checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    model.eval()
    from spoof_train.checkpoint import checkpoint_sha256

    sha = checkpoint_sha256(path)
    total = _layers(config)
    if layers is None:
        return LoadedDetector(model, config, dict(info or {}), sha, total, total, False)
    if _kind(config) != "ssl":
        raise LayersError(
            f"layers: applies to SSL backbones (kind 'ssl'), given a '{_kind(config)}' detector; "
            "omit --layers"
        )
    if not 1 <= layers <= total:
        raise LayersError(
            f"layers: expected 1..{total} (the checkpoint's transformer layers), given {layers}"
        )
    if layers == total:
        return LoadedDetector(model, config, dict(info or {}), sha, total, total, False)
    pruned, new_config = prune_layers(model, config, layers)
    log.warning(
        "pruned %s from %d to %d layers without retraining: accuracy is that of a new model, measure it "
        "(or distil a student with spoof-train distil)",
        path,
        total,
        layers,
    )
    return LoadedDetector(pruned, new_config, dict(info or {}), sha, total, layers, True)
