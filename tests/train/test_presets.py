"""Presets for ``spoof-train init``: names, sizes of the real architectures, init_checkpoint, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from spoof_train.checkpoint import load_checkpoint
from spoof_train.errors import ConfigError
from spoof_train.flops import count_parameters, measure_cost
from spoof_train.models import DetectorConfig, build_detector
from spoof_train.presets import get_preset, init_checkpoint, preset_names

REQUIRED = [
    "wavlm-base",
    "wavlm-large",
    "hubert-base",
    "wav2vec2-base",
    "xlsr-300m",
    "aasist",
    "aasist-l",
    "rawnet2",
]


def test_required_presets_exist_and_serialise() -> None:
    names = preset_names()
    assert set(REQUIRED) <= set(names)
    assert {"wavlm-tiny", "hubert-tiny", "wav2vec2-tiny", "xlsr-tiny", "rawnet2-small"} <= set(names)
    for name in names:
        cfg = get_preset(name)
        assert DetectorConfig.from_json(cfg.to_json()).to_dict() == cfg.to_dict()


# Parameter counts of the released backbones (transformers model cards / fairseq): feature encoder +
# transformer, no heads; we compare the backbone part of the built model within 1 %.
BACKBONE_PARAMS = {
    "wavlm-base": 94.38e6,
    "hubert-base": 94.37e6,
    "wav2vec2-base": 94.37e6,
    "wavlm-large": 315.45e6,
    "xlsr-300m": 315.44e6,
}


@pytest.mark.parametrize("name", list(BACKBONE_PARAMS))
def test_real_sized_backbones_build_on_meta_with_published_sizes(name: str) -> None:
    import torch

    with torch.device("meta"):  # no memory, nothing downloaded
        model = build_detector(get_preset(name, final_norm=True))
    n = sum(p.numel() for p in model.backbone.parameters())
    assert abs(n - BACKBONE_PARAMS[name]) / BACKBONE_PARAMS[name] < 0.01, n


def test_pruned_real_sized_presets_cost_matches_the_baseline() -> None:
    """docs/cpu-baseline.md: WavLM-base 6 layers 39.7 GFLOP, XLS-R 6 / 12 layers 54.7 / 86.1 per window."""
    wavlm = measure_cost(get_preset("wavlm-base", layers=6))
    assert wavlm.gflops == pytest.approx(39.7, rel=0.02)
    assert wavlm.gflops_by_part["feature_encoder"] == pytest.approx(19.8, rel=0.02)
    xlsr6 = measure_cost(get_preset("xlsr-300m", layers=6))
    assert xlsr6.gflops == pytest.approx(54.7, rel=0.02)
    xlsr12 = measure_cost(get_preset("xlsr-300m", layers=12))
    assert xlsr12.gflops == pytest.approx(86.1, rel=0.02)
    # pruning removes transformer cost only; the conv encoder cost is the same
    assert xlsr12.gflops_by_part["feature_encoder"] == pytest.approx(xlsr6.gflops_by_part["feature_encoder"])
    assert xlsr12.params > xlsr6.params


def test_aasist_cost_matches_the_baseline() -> None:
    cost = measure_cost(get_preset("aasist"))
    assert cost.params == 297_866
    assert cost.gflops == pytest.approx(19.1, rel=0.02)


def test_cost_of_a_built_model_and_parameter_parts(tiny_detector: object) -> None:
    cost = measure_cost(tiny_detector, samples=16000)  # type: ignore[arg-type]
    parts = count_parameters(tiny_detector)  # type: ignore[arg-type]
    assert cost.device == "cpu"
    assert cost.params == parts["total"] == sum(v for k, v in parts.items() if k != "total")
    assert {"feature_encoder", "transformer", "backend"} <= set(cost.gflops_by_part)
    assert sum(cost.gflops_by_part.values()) == pytest.approx(cost.gflops)
    longer = measure_cost(tiny_detector, samples=32000)  # type: ignore[arg-type]
    assert longer.gflops > 1.9 * cost.gflops


def test_preset_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'wavlm-bass' \(did you mean 'wavlm-base'\?\)"):
        get_preset("wavlm-bass")
    with pytest.raises(ConfigError, match=r"unknown back-end 'aasis' \(did you mean 'aasist'\?\)"):
        get_preset("wavlm-base", backend="aasis")
    with pytest.raises(ConfigError, match="fixed back-end: expected backend None or 'aasist', got 'ffn'"):
        get_preset("aasist", backend="ffn")
    with pytest.raises(ConfigError, match="has no SSL backbone: expected layers=None, got 3"):
        get_preset("rawnet2", layers=3)
    with pytest.raises(ConfigError, match=r"layers=25 is larger than the backbone: expected 1\.\.24"):
        get_preset("xlsr-300m", layers=25)


def test_init_checkpoint_writes_a_loadable_random_checkpoint(tmp_path: Path) -> None:
    out = init_checkpoint("xlsr-tiny", "mhfa", tmp_path / "init", layers=1)
    model, config, info = load_checkpoint(out)
    assert config.kept_layers == 1
    assert config.total_layers == 2
    assert len(model.backbone.model.encoder.layers) == 1
    assert info["trained"] is False
    assert info["preset"] == "xlsr-tiny"
    with pytest.raises(ConfigError, match="already exists: expected a new directory"):
        init_checkpoint("xlsr-tiny", "mhfa", out)
    again = init_checkpoint("aasist-l", None, out, overwrite=True)
    assert load_checkpoint(again)[1].kind == "aasist-l"


@pytest.mark.slow
def test_init_real_sized_pruned_xlsr_is_memory_sane(tmp_path: Path) -> None:
    """A 6-layer XLS-R checkpoint is built from its pruned config: ~89M parameters, never 24 layers."""
    import resource

    out = init_checkpoint("xlsr-300m", "ffn", tmp_path / "xlsr6", layers=6)
    model, config, _ = load_checkpoint(out)
    assert len(model.backbone.model.encoder.layers) == 6
    assert config.total_layers == 24
    n = sum(p.numel() for p in model.parameters())
    assert 85e6 < n < 95e6
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    assert peak_gb < 2.5, peak_gb  # the full 24-layer model alone would be 1.26 GB of FP32 weights
