"""DetectorConfig: the JSON-serialisable description of a detector (contract A ``config.json``).

Importing this module does not import torch or transformers.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from spoof_train.errors import ConfigError

__all__ = [
    "BACKEND_NAMES",
    "CONFIG_FORMAT",
    "CONFIG_FORMAT_VERSION",
    "KINDS",
    "LABEL_ORDER",
    "SSL_FAMILIES",
    "DetectorConfig",
]

CONFIG_FORMAT = "spoof_train.detector"
CONFIG_FORMAT_VERSION = 1
LABEL_ORDER = ("bonafide", "spoof")
KINDS = ("ssl", "aasist", "aasist-l", "rawnet2", "spectral", "ensemble")
SSL_FAMILIES = ("wavlm", "wav2vec2", "hubert", "whisper")
# Back-ends that run over the hidden-state stack of an SSL backbone.
BACKEND_NAMES = ("ffn", "layer-weighted", "sls", "aasist", "mhfa")


def _closest(name: str, choices: tuple[str, ...]) -> str:
    import difflib

    match = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


@dataclass
class DetectorConfig:
    """Architecture of a detector; everything needed to rebuild it without weights.

    - ``kind``: ``"ssl"`` (SSL backbone + back-end) or a raw-waveform model ``"aasist"``, ``"aasist-l"``,
      ``"rawnet2"``.
    - ``backbone`` (ssl only): ``{"family": "wavlm"|"wav2vec2"|"hubert"|"whisper", "config": <HF config dict
      of the unpruned model (for whisper: the encoder fields of a WhisperConfig)>, "final_norm": bool}``.
      ``final_norm`` applies the stable-layer-norm models' (and Whisper's) final ``encoder.layer_norm`` to
      the last kept hidden state (see docs/training-models.md).
    - ``layers``: transformer layers kept (ssl only; ``None`` = all); the built model has exactly these.
    - ``backend``: ``{"name": ..., "config": {...}}``; for raw-waveform kinds the name equals the kind and the
      config holds the architecture (filters, GAT dims, ...).
    - ``kind="ensemble"``: ``backend={"name": "ensemble", "config": {"members": [<member config dicts>],
      "weights": [...]}}``: two or more detectors (any non-ensemble kind, same ``sample_rate``) scored on the
      same input; the logits are their weighted mean (weights default to equal, normalised to sum 1).
      Built by ``spoof-train ensemble`` from trained checkpoints.
    """

    kind: str = "ssl"
    backbone: dict[str, Any] | None = None
    layers: int | None = None
    backend: dict[str, Any] = field(default_factory=lambda: {"name": "ffn", "config": {}})
    sample_rate: int = 16000
    window_samples: int = 64600
    hop_samples: int = 32300
    label_order: list[str] = field(default_factory=lambda: list(LABEL_ORDER))

    def __post_init__(self) -> None:
        self.validate()

    # -- validation -------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ConfigError` (expected vs given) when the config is inconsistent."""
        if self.kind not in KINDS:
            raise ConfigError(
                f"unknown detector kind {self.kind!r}{_closest(self.kind, KINDS)}; expected one of {KINDS}"
            )
        if not isinstance(self.backend, dict) or not isinstance(self.backend.get("name"), str):
            raise ConfigError(f"backend must be a dict with a 'name' string, got {self.backend!r}")
        self.backend.setdefault("config", {})
        if not isinstance(self.backend["config"], dict):
            given = type(self.backend["config"]).__name__
            raise ConfigError(f"backend['config'] must be a dict, got {given}")
        name = self.backend["name"]
        if self.kind == "ssl":
            if name not in BACKEND_NAMES:
                raise ConfigError(
                    f"unknown back-end {name!r}{_closest(name, BACKEND_NAMES)}; "
                    f"expected one of {BACKEND_NAMES}"
                )
            bb = self.backbone
            if not isinstance(bb, dict) or "family" not in bb or "config" not in bb:
                raise ConfigError(
                    f"an ssl detector needs backbone={{'family': ..., 'config': {{...}}}}, got {bb!r}"
                )
            if bb["family"] not in SSL_FAMILIES:
                raise ConfigError(
                    f"unknown backbone family {bb['family']!r}{_closest(str(bb['family']), SSL_FAMILIES)}; "
                    f"expected one of {SSL_FAMILIES}"
                )
            if not isinstance(bb["config"], dict):
                raise ConfigError(f"backbone['config'] must be a dict, got {type(bb['config']).__name__}")
            bb.setdefault("final_norm", False)
            total = bb["config"].get("num_hidden_layers")
            if not isinstance(total, int) or total < 1:
                raise ConfigError(f"backbone config needs num_hidden_layers >= 1, got {total!r}")
            if self.layers is not None:
                if isinstance(self.layers, bool) or not isinstance(self.layers, int) or self.layers < 1:
                    raise ConfigError(f"layers must be a positive int or None, got {self.layers!r}")
                if self.layers > total:
                    raise ConfigError(
                        f"layers={self.layers} is larger than the backbone: expected 1..{total} "
                        f"({bb['family']} with {total} transformer layers)"
                    )
        elif self.kind == "ensemble":
            if self.backbone is not None or self.layers is not None:
                raise ConfigError(
                    "kind 'ensemble': expected backbone=None and layers=None (the members carry their own), "
                    f"got backbone={'set' if self.backbone is not None else None}, layers={self.layers!r}"
                )
            if name != "ensemble":
                raise ConfigError(f"kind 'ensemble': expected backend name 'ensemble', got {name!r}")
            self._validate_members()
        else:
            if self.backbone is not None or self.layers is not None:
                raise ConfigError(
                    f"kind {self.kind!r} is a raw-waveform model: expected backbone=None and layers=None, "
                    f"got backbone={'set' if self.backbone is not None else None}, layers={self.layers!r}"
                )
            if name != self.kind:
                raise ConfigError(
                    f"kind {self.kind!r} has a fixed architecture: expected backend name {self.kind!r}, "
                    f"got {name!r}"
                )
        if list(self.label_order) != list(LABEL_ORDER):
            raise ConfigError(f"label_order must be {list(LABEL_ORDER)}, got {list(self.label_order)}")
        for key in ("sample_rate", "window_samples", "hop_samples"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{key} must be a positive int, got {value!r}")

    def _validate_members(self) -> None:
        options = self.backend["config"]
        unknown = sorted(set(options) - {"members", "weights"})
        if unknown:
            raise ConfigError(f"ensemble config: unknown keys {unknown}; expected 'members' and 'weights'")
        members = options.get("members")
        if not isinstance(members, list) or len(members) < 2:
            got = len(members) if isinstance(members, list) else type(members).__name__
            raise ConfigError(
                f"ensemble config: expected 'members', a list of >= 2 detector configs, got {got}"
            )
        for i, member in enumerate(members):
            try:
                parsed = DetectorConfig.from_dict(member)
            except ConfigError as exc:
                raise ConfigError(f"ensemble member {i}: {exc}") from exc
            if parsed.kind == "ensemble":
                raise ConfigError(f"ensemble member {i}: nested ensembles are not supported")
            if parsed.sample_rate != self.sample_rate:
                raise ConfigError(
                    f"ensemble member {i}: sample_rate {parsed.sample_rate} differs from the ensemble's "
                    f"{self.sample_rate}"
                )
        weights = options.get("weights")
        if weights is not None:
            ok = isinstance(weights, list) and len(weights) == len(members)
            ok = ok and all(
                isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w) and w > 0
                for w in weights
            )
            if not ok:
                raise ConfigError(
                    f"ensemble config: 'weights' must be {len(members)} positive finite numbers (one per "
                    f"member) or absent, got {weights!r}"
                )

    @property
    def members(self) -> list[DetectorConfig]:
        """Member configs of an ensemble (empty for every other kind)."""
        if self.kind != "ensemble":
            return []
        return [DetectorConfig.from_dict(m) for m in self.backend["config"]["members"]]

    @property
    def member_weights(self) -> list[float]:
        """Normalised member weights of an ensemble (sum 1; equal when not given; empty for other kinds)."""
        if self.kind != "ensemble":
            return []
        raw = self.backend["config"].get("weights") or [1.0] * len(self.backend["config"]["members"])
        total = float(sum(raw))
        return [float(w) / total for w in raw]

    # -- derived ----------------------------------------------------------------------------------------
    @property
    def backend_name(self) -> str:
        return str(self.backend["name"])

    @property
    def total_layers(self) -> int | None:
        """Transformer layers of the unpruned backbone (ssl only)."""
        if self.backbone is None:
            return None
        return int(self.backbone["config"]["num_hidden_layers"])

    @property
    def kept_layers(self) -> int | None:
        """Transformer layers the built model really has (ssl only)."""
        if self.backbone is None:
            return None
        return self.layers if self.layers is not None else self.total_layers

    # -- serialisation ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["label_order"] = list(self.label_order)
        return {"format": CONFIG_FORMAT, "format_version": CONFIG_FORMAT_VERSION, **copy.deepcopy(d)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a detector config must be a JSON object, got {type(data).__name__}")
        d = dict(data)
        fmt = d.pop("format", CONFIG_FORMAT)
        version = d.pop("format_version", CONFIG_FORMAT_VERSION)
        if fmt != CONFIG_FORMAT:
            raise ConfigError(f"config format: expected {CONFIG_FORMAT!r}, got {fmt!r}")
        if version != CONFIG_FORMAT_VERSION:
            raise ConfigError(f"config format_version: expected {CONFIG_FORMAT_VERSION}, got {version!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown detector config keys {unknown}; expected a subset of {sorted(names)}")
        return cls(**copy.deepcopy(d))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DetectorConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"detector config is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> DetectorConfig:
        """A validated copy with ``changes`` applied."""
        d = self.to_dict()
        d.update(copy.deepcopy(changes))
        return DetectorConfig.from_dict(d)
