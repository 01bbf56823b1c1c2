"""Detectors (``forward(wave, lengths) -> logits [B, 2]``) and ``build_detector(config)``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from spoof_train.errors import CheckpointError, ConfigError, DataError
from spoof_train.models.backends import build_backend
from spoof_train.models.config import DetectorConfig
from spoof_train.models.raw import AASIST, RawNet2
from spoof_train.models.spectral import SpectralCNN
from spoof_train.models.ssl import SSLBackbone, clean_hf_config_dict
from spoof_train.models.whisper import WhisperBackbone

__all__ = [
    "EnsembleDetector",
    "RawDetector",
    "SSLDetector",
    "build_detector",
    "detector_config_from_pretrained",
    "read_pretrained_backbone",
]

log = logging.getLogger("spoof_train")


class _DetectorAPI(nn.Module):
    config: DetectorConfig

    def backbone_parameters(self) -> list[nn.Parameter]:
        return []

    def head_parameters(self) -> list[nn.Parameter]:
        own = {id(p) for p in self.backbone_parameters()}
        return [p for p in self.parameters() if id(p) not in own]

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Toggle ``requires_grad`` of the backbone (frozen warm-up). No-op for raw-waveform models."""
        for p in self.backbone_parameters():
            p.requires_grad_(not frozen)

    def layer_weights(self) -> Tensor:
        """Learned softmax weights over the kept hidden states (layer-weighted and MHFA back-ends)."""
        backend = getattr(self, "backend", None)
        fn = getattr(backend, "layer_weights", None)
        if fn is None:
            raise ConfigError(
                f"back-end {self.config.backend_name!r} has no layer weights; "
                "expected 'layer-weighted' or 'mhfa'"
            )
        return fn()  # type: ignore[no-any-return]


class SSLDetector(_DetectorAPI):
    """SSL backbone (pruned to ``config.layers``) + back-end over its hidden-state stack."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        assert config.backbone is not None
        self.config = config
        bb = config.backbone
        self.backbone: SSLBackbone | WhisperBackbone
        if bb["family"] == "whisper":
            self.backbone = WhisperBackbone(
                bb["config"], config.layers, final_norm=bool(bb["final_norm"]), sample_rate=config.sample_rate
            )
        else:
            self.backbone = SSLBackbone(
                bb["family"], bb["config"], config.layers, final_norm=bool(bb["final_norm"])
            )
        self.backend = build_backend(
            config.backend_name,
            self.backbone.hidden_size,
            self.backbone.num_hidden_states,
            config.backend["config"],
        )

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    @property
    def min_samples(self) -> int:
        """Shortest input: the conv encoder's receptive field (400 samples for the standard encoder), plus
        two frame hops for back-ends that max-pool 3 frames (``sls``, ``aasist``). Whisper: enough samples
        for one encoder frame (three for ``sls`` / ``aasist``), see ``WhisperBackbone.min_samples``."""
        extra_frames = 2 if self.config.backend_name in ("sls", "aasist") else 0
        if isinstance(self.backbone, WhisperBackbone):
            return self.backbone.min_samples(1 + extra_frames)
        hf = self.backbone.hf_config
        field, hop = 1, 1
        for kernel, stride in zip(hf.conv_kernel, hf.conv_stride, strict=True):
            field += (kernel - 1) * hop
            hop *= stride
        return int(field + extra_frames * hop)

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        if wave.dim() != 2 or wave.shape[1] < self.min_samples:
            raise DataError(
                f"{self.config.backbone['family'] if self.config.backbone else 'ssl'} + "
                f"{self.config.backend_name} needs wave [batch, samples] with at least {self.min_samples} "
                f"samples, got shape {tuple(wave.shape)}"
            )
        hidden, mask = self.backbone(wave, lengths)
        return self.backend(hidden, mask)  # type: ignore[no-any-return]


class RawDetector(_DetectorAPI):
    """Raw-waveform AASIST / AASIST-L / RawNet2, or the spectral edge CNN, with the detector API."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        options = dict(config.backend["config"])
        cls = {"rawnet2": RawNet2, "spectral": SpectralCNN}.get(config.kind, AASIST)
        try:
            self.net: nn.Module = cls(sample_rate=config.sample_rate, **options)
        except TypeError as exc:
            raise ConfigError(f"invalid {config.kind} options {sorted(options)}: {exc}") from exc

    @property
    def min_samples(self) -> int:
        return int(self.net.min_samples)  # type: ignore[arg-type]

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.net(wave, lengths)  # type: ignore[no-any-return]


class EnsembleDetector(_DetectorAPI):
    """Two or more detectors on the same input; logits = weighted mean of the members' logits.

    Averaging the ``[bonafide, spoof]`` logits averages the members' spoof log-odds (logit difference), which
    is score-level fusion with fixed weights. Members keep their own front ends and minimum lengths; the
    ensemble's minimum is the largest. Members are built in config order, each from its own config.
    """

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(
            [SSLDetector(m) if m.kind == "ssl" else RawDetector(m) for m in config.members]
        )
        self.weights = config.member_weights

    def backbone_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.members for p in m.backbone_parameters()]  # type: ignore[operator]

    @property
    def min_samples(self) -> int:
        return max(int(m.min_samples) for m in self.members)  # type: ignore[arg-type]

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        if wave.dim() != 2 or wave.shape[1] < self.min_samples:
            raise DataError(
                f"ensemble needs wave [batch, samples] with at least {self.min_samples} samples, got shape "
                f"{tuple(wave.shape)}"
            )
        out: Tensor | None = None
        for w, member in zip(self.weights, self.members, strict=True):
            logits = member(wave, lengths) * w
            out = logits if out is None else out + logits
        assert out is not None
        return out


def build_detector(
    config: DetectorConfig,
    *,
    seed: int | None = None,
    pretrained: str | Path | None = None,
    trust_checkpoint: bool = False,
) -> SSLDetector | RawDetector | EnsembleDetector:
    """Build the detector described by ``config`` (random init; nothing is downloaded).

    ``seed`` makes the initialisation reproducible without touching the global RNG. ``pretrained`` loads
    backbone weights (ssl only) from a local Hugging Face directory or a fairseq ``.pt`` (see
    :func:`read_pretrained_backbone`); only the kept layers are loaded.
    """
    if not isinstance(config, DetectorConfig):
        raise ConfigError(f"build_detector expects a DetectorConfig, got {type(config).__name__}")
    config.validate()
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model: SSLDetector | RawDetector | EnsembleDetector
        if config.kind == "ssl":
            model = SSLDetector(config)
        elif config.kind == "ensemble":
            model = EnsembleDetector(config)
        else:
            model = RawDetector(config)
    if pretrained is not None:
        if not isinstance(model, SSLDetector):
            raise ConfigError(f"pretrained backbone weights need an ssl detector, got kind {config.kind!r}")
        family, _, state = read_pretrained_backbone(pretrained, trust_checkpoint=trust_checkpoint)
        assert config.backbone is not None
        if family != config.backbone["family"]:
            raise CheckpointError(
                f"{pretrained}: expected a {config.backbone['family']} backbone, got {family}"
            )
        model.backbone.load_backbone_state(state, source=str(pretrained))
    return model


class _LazySafetensors(Mapping[str, Tensor]):
    """Read-on-access view of one or more safetensors files (only the tensors asked for are read)."""

    def __init__(self, files: list[Path]) -> None:
        from safetensors import safe_open

        self._handles = [safe_open(str(f), framework="pt", device="cpu") for f in files]
        # safetensors' safe_open methods carry no annotations
        self._where = {k: h for h in self._handles for k in h.keys()}  # type: ignore[no-untyped-call]  # noqa: SIM118

    def __getitem__(self, key: str) -> Tensor:
        tensor: Tensor = self._where[key].get_tensor(key)  # type: ignore[no-untyped-call]
        return tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def _read_hf_dir(path: Path) -> tuple[str, dict[str, Any], Mapping[str, Tensor]]:
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{path}: expected a Hugging Face model directory with config.json")
    try:
        raw = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cfg_path} is not readable JSON: {exc}") from exc
    family = raw.get("model_type")
    if family not in ("wavlm", "wav2vec2", "hubert"):
        raise CheckpointError(f"{cfg_path}: expected model_type wavlm, wav2vec2 or hubert, got {family!r}")
    index = path / "model.safetensors.index.json"
    state: Mapping[str, Tensor]
    try:
        if (path / "model.safetensors").is_file():
            state = _LazySafetensors([path / "model.safetensors"])
        elif index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state = _LazySafetensors([path / f for f in files])
        elif (path / "pytorch_model.bin").is_file():
            state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True, mmap=True)
        else:
            raise CheckpointError(
                f"{path}: no weights found; expected model.safetensors, model.safetensors.index.json or "
                f"pytorch_model.bin"
            )
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors / torch raise many types for corrupt files
        raise CheckpointError(f"{path}: cannot read the weights safely: {exc}") from exc
    return family, clean_hf_config_dict(family, raw), state


def _is_whisper_source(source: str | Path) -> bool:
    """``pinned:NAME``, a CTranslate2 directory / model.bin, an HF whisper directory or an openai .pt."""
    from spoof_train.models.whisper_weights import PINNED_PREFIX, is_openai_checkpoint

    if str(source).startswith(PINNED_PREFIX):
        return True
    path = Path(source)
    if path.is_dir():
        if (path / "model.bin").is_file():
            return True
        try:
            model_type: object = json.loads((path / "config.json").read_text()).get("model_type")
            return model_type == "whisper"
        except (OSError, json.JSONDecodeError, AttributeError):
            return False
    return path.is_file() and (path.name == "model.bin" or is_openai_checkpoint(path))


def read_pretrained_backbone(
    source: str | Path, *, trust_checkpoint: bool = False
) -> tuple[str, dict[str, Any], Mapping[str, Tensor]]:
    """``(family, hf_config_dict, state)`` from a local HF directory, a fairseq wav2vec2/XLS-R ``.pt`` or a
    Whisper source (HF directory, openai-whisper ``.pt``, CTranslate2 directory, ``pinned:NAME``; see
    :mod:`spoof_train.models.whisper_weights`).

    ``state`` is HF-layout and lazy where the format allows (safetensors, memory-mapped torch files), so
    layers removed by pruning are never read into memory.
    """
    path = Path(source)
    if _is_whisper_source(source):
        from spoof_train.models.whisper_weights import read_whisper_source

        whisper_config, whisper_state = read_whisper_source(source)
        return "whisper", whisper_config, whisper_state
    if path.is_dir():
        return _read_hf_dir(path)
    if path.is_file():
        from spoof_train.models.fairseq import load_fairseq_checkpoint

        hf_config, state = load_fairseq_checkpoint(path, trust_checkpoint=trust_checkpoint)
        return "wav2vec2", clean_hf_config_dict("wav2vec2", hf_config), state
    raise CheckpointError(f"pretrained backbone not found: expected a directory or .pt file at {path}")


def detector_config_from_pretrained(
    source: str | Path,
    *,
    backend: str = "ffn",
    backend_config: dict[str, Any] | None = None,
    layers: int | None = None,
    final_norm: bool = False,
    trust_checkpoint: bool = False,
    **fields: Any,
) -> DetectorConfig:
    """A DetectorConfig whose backbone is described by a local HF directory or fairseq checkpoint."""
    family, hf_config, _ = read_pretrained_backbone(source, trust_checkpoint=trust_checkpoint)
    return DetectorConfig(
        kind="ssl",
        backbone={"family": family, "config": hf_config, "final_norm": final_norm},
        layers=layers,
        backend={"name": backend, "config": dict(backend_config or {})},
        **fields,
    )
