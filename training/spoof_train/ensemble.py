"""Score-level fusion of trained detectors into one checkpoint (``spoof-train ensemble``).

``build_ensemble([ckpt_a, ckpt_b], out)`` writes an ordinary contract-A checkpoint of kind ``"ensemble"``
whose logits are the weighted mean of the members' logits (``EnsembleDetector``), so ``spoof-export`` turns
it into one ONNX graph and the SDK scores it like any detector. Members must share the sample rate and the
scoring window / hop (the SDK frames the audio once for all of them). The fused model is uncalibrated: the
members' calibrations do not carry over (fusion changes the score scale); calibrate it again on dev.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spoof_train.errors import ConfigError

__all__ = ["build_ensemble"]

log = logging.getLogger("spoof_train")


def build_ensemble(
    checkpoints: Sequence[str | Path],
    output: str | Path,
    *,
    weights: Sequence[float] | None = None,
) -> Path:
    """Fuse ``checkpoints`` (>= 2 contract-A directories) into an ensemble checkpoint at ``output``.

    ``weights`` (one positive number per member, normalised to sum 1) default to equal. ``training.json`` of
    the result records every member (path, sha256, weight, run name, best dev EER) and keeps the data facts
    (``train_attacks``, ``data``) only when all members agree on them. Raises :class:`CheckpointError` for
    an unreadable member and :class:`ConfigError` for members that cannot be fused.
    """
    from spoof_train.checkpoint import checkpoint_sha256, load_checkpoint, save_checkpoint
    from spoof_train.models import DetectorConfig, EnsembleDetector, build_detector

    paths = [Path(c) for c in checkpoints]
    if len(paths) < 2:
        raise ConfigError(f"ensemble: expected at least 2 checkpoints, got {len(paths)}")
    out = Path(output)
    if any(out.resolve() == p.resolve() for p in paths):
        raise ConfigError(f"ensemble: the output {out} is one of the members; expected a new directory")
    loaded = [load_checkpoint(p) for p in paths]
    first = loaded[0][1]
    for p, (_, cfg, _) in zip(paths, loaded, strict=True):
        if cfg.kind == "ensemble":
            raise ConfigError(f"ensemble: {p} is already an ensemble; expected single detectors")
        for key in ("sample_rate", "window_samples", "hop_samples"):
            if getattr(cfg, key) != getattr(first, key):
                raise ConfigError(
                    f"ensemble: {p} has {key}={getattr(cfg, key)} but {paths[0]} has {getattr(first, key)}; "
                    "members are scored on the same windows, expected equal values"
                )
    # the weights are checked by DetectorConfig's ensemble validation (one place for both paths)
    options: dict[str, Any] = {"members": [cfg.to_dict() for _, cfg, _ in loaded]}
    if weights is not None:
        options["weights"] = list(weights)
    config = DetectorConfig(
        kind="ensemble",
        backbone=None,
        layers=None,
        backend={"name": "ensemble", "config": options},
        sample_rate=first.sample_rate,
        window_samples=first.window_samples,
        hop_samples=first.hop_samples,
    )
    model = build_detector(config)
    assert isinstance(model, EnsembleDetector)  # config.kind == "ensemble"
    for dst, (src, _, _) in zip(model.members, loaded, strict=True):
        dst.load_state_dict(src.state_dict())  # built from the member's own config: keys and shapes match
    model.eval()

    infos = [info for _, _, info in loaded]
    training: dict[str, Any] = {
        "ensemble": {
            "members": [
                {
                    "path": str(p),
                    "sha256": checkpoint_sha256(p),
                    "weight": w,
                    "run_name": info.get("run_name"),
                    "dev_eer": info.get("dev_eer"),
                    "best_epoch": info.get("best_epoch"),
                }
                for p, info, w in zip(paths, infos, config.member_weights, strict=True)
            ],
            "fusion": "weighted mean of the members' [bonafide, spoof] logits",
        }
    }
    for key in ("train_attacks", "data", "seed"):
        values = [info.get(key) for info in infos]
        if all(v == values[0] for v in values) and values[0] is not None:
            training[key] = values[0]
    if any("calibration" in info for info in infos):
        log.warning("ensemble: the members' calibrations are dropped; calibrate the fused model on dev")
    return save_checkpoint(out, model, config, training)
