"""Ensemble detectors (kind "ensemble", ``spoof-train ensemble``): fusion, checkpoints, export, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from spoof_train.checkpoint import load_checkpoint, save_checkpoint
from spoof_train.cli import main
from spoof_train.ensemble import build_ensemble
from spoof_train.errors import ConfigError, DataError
from spoof_train.models import DetectorConfig, EnsembleDetector, build_detector


def _spectral(**over: Any) -> DetectorConfig:
    options = {
        "stem_channels": 4,
        "channels": [4, 4, 8, 8],
        "embed_dim": 8,
        "n_filters": 16,
        "phase": True,
        "excitation": True,
        "repeat_seconds": 0.5,
    }
    window = over.pop("window_samples", 16000)
    options.update(over)
    return DetectorConfig(
        kind="spectral",
        backend={"name": "spectral", "config": options},
        backbone=None,
        layers=None,
        window_samples=window,
        hop_samples=window // 2,
    )


def _checkpoint(root: Path, name: str, config: DetectorConfig, seed: int, **info: Any) -> Path:
    model = build_detector(config, seed=seed).eval()
    facts = {"train_attacks": ["a1", "a2"], "run_name": name, "dev_eer": 0.1, **info}
    return save_checkpoint(root / name, model, config, facts)


@pytest.fixture
def two_members(tmp_path: Path) -> tuple[Path, Path]:
    a = _checkpoint(tmp_path, "a", _spectral(), 1, calibration={"scale": 1.0, "bias": 0.0, "threshold": 0.5})
    b = _checkpoint(tmp_path, "b", _spectral(channels=[4, 8, 8, 8], phase=False), 2)
    return a, b


def test_logits_are_the_weighted_mean_of_the_members(tmp_path: Path, two_members: tuple[Path, Path]) -> None:
    a, b = two_members
    out = build_ensemble([a, b], tmp_path / "ens", weights=[1.0, 3.0])
    model, config, info = load_checkpoint(out)
    assert isinstance(model, EnsembleDetector)
    assert config.kind == "ensemble"
    assert config.member_weights == [0.25, 0.75]
    assert (config.window_samples, config.hop_samples) == (16000, 8000)
    ma, _, _ = load_checkpoint(a)
    mb, _, _ = load_checkpoint(b)
    gen = torch.Generator().manual_seed(0)
    wave = 0.1 * torch.randn(2, 12000, generator=gen)
    lengths = torch.tensor([12000, 5000])
    wave[1, 5000:] = 0.0
    with torch.no_grad():
        want = 0.25 * ma(wave, lengths) + 0.75 * mb(wave, lengths)
        got = model(wave, lengths)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert not torch.allclose(ma(wave, lengths), mb(wave, lengths))  # the members really differ
    # the data facts the members agree on are kept, the calibration (score scale changes) is not
    assert info["train_attacks"] == ["a1", "a2"]
    assert "calibration" not in info
    assert [m["weight"] for m in info["ensemble"]["members"]] == [0.25, 0.75]
    assert [m["run_name"] for m in info["ensemble"]["members"]] == ["a", "b"]


def test_equal_weights_by_default_and_min_samples_is_the_largest(
    tmp_path: Path, two_members: tuple[Path, Path]
) -> None:
    out = build_ensemble(list(two_members), tmp_path / "ens")
    model, config, _ = load_checkpoint(out)
    assert config.member_weights == [0.5, 0.5]
    assert model.min_samples == max(m.min_samples for m in model.members)
    with pytest.raises(DataError, match="at least"):
        model(torch.zeros(1, model.min_samples - 1))


def test_exports_to_one_onnx_graph_that_matches_torch(tmp_path: Path, two_members: tuple[Path, Path]) -> None:
    pytest.importorskip("onnxruntime")
    from spoof_export import export

    ckpt = build_ensemble(list(two_members), tmp_path / "ens")
    result = export(ckpt, output=tmp_path / "x" / "ens")
    onnx_path = result.paths["onnx"]
    assert onnx_path.is_file()
    assert result.report["stages"]["torch->onnx"]["max_abs_diff"]["logits"] < 1e-3

    import numpy as np

    from spoofsdk import Detector

    det = Detector(onnx_path, backend="cpu", speech_gate=False)  # noise, not speech: score every window
    pcm = (0.1 * np.random.default_rng(3).standard_normal(40000)).astype(np.float32)
    model, _, _ = load_checkpoint(ckpt)
    win = torch.from_numpy(pcm[:16000])[None]
    with torch.no_grad():
        logits = model(win, torch.tensor([16000]))[0]
    first = det.score(pcm[:16000])
    assert first.logit == pytest.approx(float(logits[1] - logits[0]), abs=1e-4)


def test_config_validation() -> None:
    member = _spectral().to_dict()

    def ens(options: dict[str, Any], **kw: Any) -> DetectorConfig:
        return DetectorConfig(kind="ensemble", backend={"name": "ensemble", "config": options}, **kw)

    with pytest.raises(ConfigError, match=">= 2"):
        ens({"members": [member]})
    with pytest.raises(ConfigError, match="member 1"):
        ens({"members": [member, {"kind": "nope"}]})
    nested = ens({"members": [member, member]}).to_dict()
    with pytest.raises(ConfigError, match="nested"):
        ens({"members": [member, nested]})
    with pytest.raises(ConfigError, match="sample_rate"):
        ens({"members": [member, member]}, sample_rate=8000)
    for bad in ([1.0], [1.0, 0.0], [1.0, float("nan")], [True, 1.0], "1,1"):
        with pytest.raises(ConfigError, match="weights"):
            ens({"members": [member, member], "weights": bad})
    with pytest.raises(ConfigError, match="unknown keys"):
        ens({"members": [member, member], "mode": "max"})
    with pytest.raises(ConfigError, match="backbone=None"):
        ens({"members": [member, member]}, layers=2)
    with pytest.raises(ConfigError, match="backend name"):
        DetectorConfig(kind="ensemble", backend={"name": "spectral", "config": {"members": [member, member]}})
    assert _spectral().members == []


def test_build_errors(tmp_path: Path, two_members: tuple[Path, Path]) -> None:
    a, b = two_members
    with pytest.raises(ConfigError, match="at least 2"):
        build_ensemble([a], tmp_path / "o1")
    with pytest.raises(ConfigError, match="weights"):
        build_ensemble([a, b], tmp_path / "o2", weights=[1.0, -1.0])
    with pytest.raises(ConfigError, match="one of the members"):
        build_ensemble([a, b], a)
    other = _checkpoint(tmp_path, "w", _spectral(window_samples=32000), 3)
    with pytest.raises(ConfigError, match="window_samples"):
        build_ensemble([a, other], tmp_path / "o3")
    ens = build_ensemble([a, b], tmp_path / "ens")
    with pytest.raises(ConfigError, match="already an ensemble"):
        build_ensemble([a, ens], tmp_path / "o4")
    assert not any((tmp_path / n).exists() for n in ("o1", "o2", "o3", "o4"))


def test_cli(tmp_path: Path, two_members: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_members
    assert main(["ensemble", str(a), str(b), "-o", str(tmp_path / "ens"), "--weights", "2", "1"]) == 0
    assert "ensemble of 2" in capsys.readouterr().out
    cfg = json.loads((tmp_path / "ens" / "config.json").read_text())
    assert cfg["kind"] == "ensemble"
    assert cfg["backend"]["config"]["weights"] == [2.0, 1.0]
    assert main(["ensemble", str(a), str(tmp_path / "missing"), "-o", str(tmp_path / "e2")]) == 5
    assert main(["ensemble", str(a), str(b), "-o", str(tmp_path / "e3"), "--weights", "1"]) == 3
