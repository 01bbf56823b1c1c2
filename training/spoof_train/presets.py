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
) -> Path:
    """Write a randomly initialised checkpoint (contract A) of ``preset`` to ``out_dir``; return its path."""
    from spoof_train.checkpoint import save_checkpoint
    from spoof_train.models import build_detector

    config = get_preset(preset, backend=backend, layers=layers, backend_config=backend_config)
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ConfigError(
            f"{out} already exists: expected a new directory (pass overwrite=True to replace it)"
        )
    model = build_detector(config, seed=seed)
    info = {
        "origin": "init",
        "preset": preset,
        "backend": config.backend_name,
        "layers": config.kept_layers,
        "seed": seed,
        "trained": False,
        "note": "random initialisation from a named architecture; not a trained detector",
    }
    return save_checkpoint(out, model, config, info)
