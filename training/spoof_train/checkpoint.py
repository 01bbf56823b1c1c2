"""Checkpoints (contract A): a directory with ``config.json``, ``model.safetensors``, ``training.json`` and,
for resuming, ``trainer_state.pt``.

- ``config.json``: :class:`~spoof_train.models.DetectorConfig` (``to_dict()``), enough to rebuild the model.
- ``model.safetensors``: the model's state dict, weights only (never pickle).
- ``training.json``: free-form JSON about the run (data, seed, dev EER and threshold, ...).
- ``trainer_state.pt`` (optional): optimizer / scheduler / RNG state; it must load with
  ``torch.load(weights_only=True)`` (checked before the checkpoint is committed).

Writes are atomic: everything goes to a temporary sibling directory that is fsynced and renamed into place;
an existing checkpoint at the destination is moved aside first and deleted only after the rename, so a crash
leaves either the old or the new complete checkpoint (plus, at worst, a ``.NAME.old-*`` sibling).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spoof_train.errors import CheckpointError, ConfigError
from spoof_train.models.config import DetectorConfig
from spoofsdk._hashing import sha256_file

__all__ = [
    "CONFIG_FILE",
    "TRAINER_STATE_FILE",
    "TRAINING_FILE",
    "WEIGHTS_FILE",
    "checkpoint_sha256",
    "load_checkpoint",
    "load_trainer_state",
    "read_checkpoint_config",
    "save_checkpoint",
]

log = logging.getLogger("spoof_train")

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TRAINING_FILE = "training.json"
TRAINER_STATE_FILE = "trainer_state.pt"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _state_for_safetensors(model: nn.Module) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for key, value in model.state_dict().items():
        t = value.detach().to("cpu")
        ident = (t.untyped_storage().data_ptr(), t.storage_offset())
        # safetensors refuses tensors that share memory: clone those (and non-contiguous views).
        if ident in seen or not t.is_contiguous():
            t = t.contiguous().clone()
        seen.add(ident)
        state[key] = t
    return state


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    config: DetectorConfig,
    training_info: dict[str, Any],
    optimizer_state: dict[str, Any] | None = None,
) -> Path:
    """Atomically write a checkpoint of ``model`` (built from ``config``) to ``directory``; return it."""
    from safetensors.torch import save_file

    if not isinstance(config, DetectorConfig):
        raise ConfigError(f"save_checkpoint expects a DetectorConfig, got {type(config).__name__}")
    model_config = getattr(model, "config", None)
    if isinstance(model_config, DetectorConfig) and model_config.to_dict() != config.to_dict():
        raise CheckpointError(
            "the config passed to save_checkpoint differs from model.config: expected the config the model "
            "was built from"
        )
    try:
        training_text = json.dumps(training_info, indent=2, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"training_info must be JSON-serialisable: {exc}") from exc

    final = Path(directory)
    if final.exists() and not (
        final.is_dir() and (not any(final.iterdir()) or (final / CONFIG_FILE).is_file())
    ):
        raise CheckpointError(
            f"{final} exists and is not a checkpoint directory: expected a new path, an empty directory or a "
            f"previous checkpoint to replace"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = final.parent / f".{final.name}.tmp-{tag}"
    backup = final.parent / f".{final.name}.old-{tag}"
    tmp.mkdir()
    try:
        _write_text(tmp / CONFIG_FILE, config.to_json() + "\n")
        save_file(_state_for_safetensors(model), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        _fsync_path(tmp / WEIGHTS_FILE)
        _write_text(tmp / TRAINING_FILE, training_text + "\n")
        if optimizer_state is not None:
            torch.save(optimizer_state, tmp / TRAINER_STATE_FILE)
            _fsync_path(tmp / TRAINER_STATE_FILE)
            try:
                torch.load(tmp / TRAINER_STATE_FILE, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise CheckpointError(
                    f"optimizer_state does not load with weights_only=True (keep it to tensors, numbers, "
                    f"strings and containers; store NumPy RNG state as lists): {exc}"
                ) from exc
        _fsync_path(tmp)
        if final.exists():
            os.rename(final, backup)
        os.rename(tmp, final)
        _fsync_path(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if backup.exists() and not final.exists():
            os.rename(backup, final)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    log.info("saved checkpoint %s", final)
    return final


def _require_dir(directory: str | Path) -> Path:
    path = Path(directory)
    if not path.is_dir():
        olds = sorted(path.parent.glob(f".{path.name}.old-*")) if path.parent.is_dir() else []
        hint = f" (an interrupted save left {olds[0]}: rename it to {path.name} to recover)" if olds else ""
        raise CheckpointError(f"checkpoint directory not found: expected a directory at {path}{hint}")
    return path


def read_checkpoint_config(directory: str | Path) -> DetectorConfig:
    """The DetectorConfig of a checkpoint, without building the model."""
    path = _require_dir(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path.parent} is not a checkpoint: expected {CONFIG_FILE}")
    try:
        return DetectorConfig.from_json(path.read_text(encoding="utf-8"))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: invalid detector config: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable: {exc}") from exc


def load_checkpoint(
    directory: str | Path, *, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, DetectorConfig, dict[str, Any]]:
    """Rebuild the model from ``config.json`` and load ``model.safetensors`` strictly.

    Returns ``(model, config, training_info)``; the model is in eval mode on ``map_location``. Missing,
    corrupt or mismatched files raise :class:`CheckpointError` naming what was expected and what was found.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from spoof_train.models import build_detector

    root = _require_dir(directory)
    config = read_checkpoint_config(root)
    weights = root / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{root} is incomplete: expected {WEIGHTS_FILE}")
    training_path = root / TRAINING_FILE
    if not training_path.is_file():
        raise CheckpointError(f"{root} is incomplete: expected {TRAINING_FILE}")
    try:
        training_info = json.loads(training_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{training_path}: expected a JSON object: {exc}") from exc
    if not isinstance(training_info, dict):
        raise CheckpointError(f"{training_path}: expected a JSON object, got {type(training_info).__name__}")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights} is not a readable safetensors file: {exc}") from exc
    # SSL models have no non-persistent buffers: build them on the meta device (no random init, no second
    # copy of the weights) and adopt the loaded tensors with assign=True.
    on_meta = config.kind == "ssl"
    if on_meta:
        with torch.device("meta"):
            model = build_detector(config)
    else:
        model = build_detector(config)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: config gives {tuple(own[k].shape)}, weights have {tuple(state[k].shape)}"
        for k in sorted(set(own) & set(state))
        if own[k].shape != state[k].shape
    ]
    if missing or unexpected or mismatched:
        desc = f"{config.kind}" + (
            f" {config.backbone['family']} with {config.kept_layers} layers + {config.backend_name}"
            if config.backbone is not None
            else ""
        )
        raise CheckpointError(
            f"{root}: {CONFIG_FILE} does not match {WEIGHTS_FILE} (config describes {desc}): "
            f"{len(missing)} missing e.g. {missing[:3]}, {len(unexpected)} unexpected e.g. {unexpected[:3]}, "
            f"{len(mismatched)} shape mismatches e.g. {mismatched[:3]}"
        )
    model.load_state_dict(state, strict=True, assign=on_meta)
    if on_meta and any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        model = build_detector(config)  # a tensor outside the state dict stayed on meta: build for real
        model.load_state_dict(state, strict=True)
    model.to(map_location)
    model.eval()
    return model, config, training_info


def load_trainer_state(
    directory: str | Path, *, map_location: str | torch.device = "cpu"
) -> dict[str, Any] | None:
    """``trainer_state.pt`` loaded with ``weights_only=True``, or None when the checkpoint has none."""
    path = _require_dir(directory) / TRAINER_STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} does not load safely (weights_only=True): {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(state).__name__}")
    return state


def checkpoint_sha256(directory: str | Path) -> str:
    """SHA-256 of ``model.safetensors`` (the "source checkpoint hash" of the export manifest)."""
    path = _require_dir(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path.parent} is incomplete: expected {WEIGHTS_FILE}")
    return sha256_file(path)
