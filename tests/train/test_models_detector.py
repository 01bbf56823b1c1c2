"""DetectorConfig and the detector API used by the trainer: build, parameter groups, freezing, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from spoof_train.errors import ConfigError
from spoof_train.models import DetectorConfig, build_detector

TINY = ["wavlm-tiny", "hubert-tiny", "wav2vec2-tiny", "xlsr-tiny"]


def test_config_json_round_trip_and_derived_fields(tiny_config: Any) -> None:
    cfg = tiny_config("xlsr-tiny", "sls", layers=1)
    again = DetectorConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.kept_layers == 1
    assert again.total_layers == 2
    assert again.backend_name == "sls"
    assert json.loads(cfg.to_json())["format_version"] == 1
    assert cfg.replace(layers=2).kept_layers == 2


def test_config_errors_say_expected_and_given(tiny_config: Any) -> None:
    base = tiny_config("wavlm-tiny", "ffn").to_dict()
    with pytest.raises(ConfigError, match=r"unknown detector kind 'sll' \(did you mean 'ssl'\?\)"):
        DetectorConfig.from_dict({**base, "kind": "sll"})
    with pytest.raises(ConfigError, match=r"unknown back-end 'mhf' \(did you mean 'mhfa'\?\)"):
        DetectorConfig.from_dict({**base, "backend": {"name": "mhf"}})
    with pytest.raises(ConfigError, match=r"unknown backbone family 'wavlmm' \(did you mean 'wavlm'\?\)"):
        DetectorConfig.from_dict(
            {**base, "backbone": {"family": "wavlmm", "config": {"num_hidden_layers": 2}}}
        )
    with pytest.raises(
        ConfigError, match=r"label_order must be \['bonafide', 'spoof'\], got \['spoof', 'bonafide'\]"
    ):
        DetectorConfig.from_dict({**base, "label_order": ["spoof", "bonafide"]})
    with pytest.raises(ConfigError, match="unknown detector config keys \\['window'\\]"):
        DetectorConfig.from_dict({**base, "window": 3})
    with pytest.raises(ConfigError, match="format_version: expected 1, got 7"):
        DetectorConfig.from_dict({**base, "format_version": 7})
    with pytest.raises(ConfigError, match="window_samples must be a positive int, got 0"):
        DetectorConfig.from_dict({**base, "window_samples": 0})
    with pytest.raises(ConfigError, match="not valid JSON"):
        DetectorConfig.from_json("{")
    with pytest.raises(ConfigError, match="an ssl detector needs backbone="):
        DetectorConfig(kind="ssl", backbone=None)
    with pytest.raises(ConfigError, match="expects a DetectorConfig, got dict"):
        build_detector(base)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pretrained backbone weights need an ssl detector"):
        build_detector(tiny_config("aasist-l"), pretrained="x")


@pytest.mark.parametrize("preset", TINY)
def test_every_parameter_trains_and_groups_partition(tiny_config: Any, preset: str) -> None:
    """No dead parameters (DDP without find_unused_parameters) for every family, post-LN and stable-LN."""
    model = build_detector(tiny_config(preset, "layer-weighted"), seed=0).train()
    wave = 0.1 * torch.randn(2, 8000)
    loss = torch.nn.functional.cross_entropy(model(wave, torch.tensor([8000, 6000])), torch.tensor([0, 1]))
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert dead == []
    bb, head = model.backbone_parameters(), model.head_parameters()
    assert {id(p) for p in bb}.isdisjoint({id(p) for p in head})
    assert len(bb) + len(head) == len(list(model.parameters()))
    assert all(
        not n.startswith("backbone.") for n, p in model.named_parameters() if any(p is h for h in head)
    )


def test_freeze_backbone_toggles_requires_grad(tiny_detector: Any) -> None:
    tiny_detector.freeze_backbone(True)
    assert not any(p.requires_grad for p in tiny_detector.backbone_parameters())
    assert all(p.requires_grad for p in tiny_detector.head_parameters())
    tiny_detector.freeze_backbone(False)
    assert all(p.requires_grad for p in tiny_detector.parameters())


def test_raw_detector_has_no_backbone_group(tiny_config: Any) -> None:
    model = build_detector(tiny_config("aasist-l"), seed=0)
    assert model.backbone_parameters() == []
    assert len(model.head_parameters()) == len(list(model.parameters()))
    model.freeze_backbone(True)  # no-op
    assert all(p.requires_grad for p in model.parameters())


def test_seeded_build_is_reproducible_and_leaves_the_global_rng_alone(tiny_config: Any) -> None:
    cfg = tiny_config("wavlm-tiny", "mhfa")
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_detector(cfg, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = build_detector(cfg, seed=7)
    c = build_detector(cfg, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_model_carries_its_config_and_logit_order(tiny_detector: Any, tiny_wave: Any) -> None:
    assert tiny_detector.config.label_order == ["bonafide", "spoof"]
    with torch.no_grad():
        logits = tiny_detector(*tiny_wave)
        none_lengths = tiny_detector(tiny_wave[0][:1])
    assert logits.shape == (2, 2)
    assert logits.dtype == torch.float32
    assert torch.allclose(none_lengths[0], logits[0], atol=1e-5)  # lengths=None means "all valid"


@pytest.mark.slow
@pytest.mark.filterwarnings(
    "ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"
)
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # transformers' sdpa is_causal check on shapes
@pytest.mark.parametrize(("preset", "backend"), [("xlsr-tiny", "aasist"), ("aasist-l", None)])
def test_legacy_onnx_export_with_dynamic_batch_and_samples(
    tmp_path: Path, tiny_config: Any, preset: str, backend: str | None
) -> None:
    """Masks are tensors and node counts come from shapes, so one export serves every batch and length."""
    import numpy as np
    import onnxruntime as ort

    model = build_detector(tiny_config(preset, backend), seed=0).eval()

    class Audio(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, audio: torch.Tensor) -> torch.Tensor:
            return self.m(audio)

    path = tmp_path / "m.onnx"
    torch.onnx.export(
        Audio().eval(),
        (0.1 * torch.randn(1, 16000),),
        str(path),
        input_names=["audio"],
        output_names=["logits"],
        dynamic_axes={"audio": {0: "batch", 1: "samples"}, "logits": {0: "batch"}},
        dynamo=False,
        opset_version=17,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, samples in ((2, 16000), (3, 23000)):
        x = 0.1 * torch.randn(batch, samples)
        with torch.no_grad():
            ref = model(x).numpy()
        got = session.run(None, {"audio": x.numpy()})[0]
        assert np.abs(got - ref).max() < 1e-4


@pytest.mark.parametrize(
    ("backend", "expected"), [("ffn", 400), ("mhfa", 400), ("sls", 1040), ("aasist", 1040)]
)
def test_min_samples_of_ssl_detectors(tiny_config: Any, backend: str, expected: int) -> None:
    from spoof_train.errors import DataError

    model = build_detector(tiny_config("xlsr-tiny", backend), seed=0).eval()
    assert model.min_samples == expected  # receptive field 400, hop 320
    with torch.no_grad():
        assert model(torch.zeros(2, expected)).shape == (2, 2)
    with pytest.raises(DataError, match=rf"at least {expected} samples, got shape \(1, {expected - 1}\)"):
        model(torch.zeros(1, expected - 1))
    with pytest.raises(DataError, match=r"got shape \(16000,\)"):
        model(torch.zeros(16000))
