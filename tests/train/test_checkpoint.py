"""Checkpoints (contract A): round trip, atomic replace, safe loading, typed errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from spoof_train.checkpoint import (
    checkpoint_sha256,
    load_checkpoint,
    load_trainer_state,
    read_checkpoint_config,
    save_checkpoint,
)
from spoof_train.errors import CheckpointError, ConfigError
from spoof_train.models import build_detector


def _outputs(model: Any, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(wave, lengths)


def test_round_trip_reproduces_outputs(tiny_checkpoint: Path, tiny_detector: Any, tiny_wave: Any) -> None:
    assert sorted(p.name for p in tiny_checkpoint.iterdir()) == [
        "config.json",
        "model.safetensors",
        "training.json",
    ]
    model, config, info = load_checkpoint(tiny_checkpoint)
    assert config.to_dict() == tiny_detector.config.to_dict()
    assert info == {"origin": "test", "seed": 0}
    assert not model.training
    assert torch.equal(_outputs(model, *tiny_wave), _outputs(tiny_detector, *tiny_wave))
    # built on the meta device and assigned: real tensors, trainable parameters, nothing left on meta
    assert all(p.requires_grad and not p.is_meta for p in model.parameters())
    assert all(isinstance(p, torch.nn.Parameter) for p in model.parameters())
    model.train()
    model(*tiny_wave).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    assert cfg["format"] == "spoof_train.detector"
    assert cfg["label_order"] == ["bonafide", "spoof"]
    assert cfg["backbone"]["family"] == "wavlm"
    assert read_checkpoint_config(tiny_checkpoint).to_dict() == config.to_dict()
    assert len(checkpoint_sha256(tiny_checkpoint)) == 64


@pytest.mark.parametrize(
    ("preset", "backend"), [("xlsr-tiny", "aasist"), ("aasist-l", None), ("rawnet2-small", None)]
)
def test_round_trip_other_kinds(tmp_path: Path, tiny_config: Any, preset: str, backend: str | None) -> None:
    cfg = tiny_config(preset, backend)
    model = build_detector(cfg, seed=2).eval()
    path = save_checkpoint(tmp_path / "c", model, cfg, {"eer": 0.5})
    loaded, _, _ = load_checkpoint(path)
    wave = 0.1 * torch.randn(1, 8000)
    want, got = model.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    # identical weights; the outputs may differ in the last bits (a loaded tensor's memory alignment can pick
    # another CPU kernel path: 7e-9 seen for xlsr-tiny + aasist)
    torch.testing.assert_close(
        _outputs(loaded, wave, torch.tensor([8000])),
        _outputs(model, wave, torch.tensor([8000])),
        rtol=0,
        atol=1e-6,
    )


def test_trainer_state_round_trip_and_unsafe_state_is_refused(tmp_path: Path, tiny_detector: Any) -> None:
    opt = torch.optim.AdamW(tiny_detector.parameters(), lr=1e-3)
    tiny_detector.train()
    tiny_detector(0.1 * torch.randn(2, 4000)).sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "step": 3, "torch_rng": torch.get_rng_state(), "np_rng": [1, 2]}
    path = save_checkpoint(tmp_path / "c", tiny_detector, tiny_detector.config, {"step": 3}, state)
    loaded = load_trainer_state(path)
    assert loaded is not None
    assert loaded["step"] == 3
    assert torch.equal(loaded["torch_rng"], state["torch_rng"])
    assert loaded["optimizer"]["param_groups"][0]["lr"] == 1e-3
    assert (
        load_trainer_state(save_checkpoint(tmp_path / "d", tiny_detector, tiny_detector.config, {})) is None
    )
    # A NumPy RNG state does not load with weights_only=True: refused before anything is committed.
    bad = {"np_rng": np.random.default_rng(0).bit_generator.state, "arr": np.zeros(3)}
    with pytest.raises(CheckpointError, match="does not load with weights_only=True"):
        save_checkpoint(tmp_path / "e", tiny_detector, tiny_detector.config, {}, bad)
    assert not (tmp_path / "e").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_atomic_replace_keeps_old_checkpoint_on_failure(
    tmp_path: Path, tiny_detector: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(tmp_path / "c", tiny_detector, tiny_detector.config, {"version": 1})
    before = checkpoint_sha256(path)
    import safetensors.torch

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, tiny_detector, tiny_detector.config, {"version": 2})
    monkeypatch.undo()
    assert checkpoint_sha256(path) == before
    assert json.loads((path / "training.json").read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temporary or backup directories left
    # A successful save replaces the previous checkpoint.
    with torch.no_grad():
        next(tiny_detector.parameters()).add_(1.0)
    save_checkpoint(path, tiny_detector, tiny_detector.config, {"version": 2})
    assert checkpoint_sha256(path) != before
    assert json.loads((path / "training.json").read_text()) == {"version": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def test_refuses_to_overwrite_a_non_checkpoint_directory(tmp_path: Path, tiny_detector: Any) -> None:
    target = tmp_path / "data"
    target.mkdir()
    (target / "keep.wav").write_bytes(b"RIFF")
    with pytest.raises(CheckpointError, match="exists and is not a checkpoint directory"):
        save_checkpoint(target, tiny_detector, tiny_detector.config, {})
    assert (target / "keep.wav").read_bytes() == b"RIFF"


def test_save_errors(tmp_path: Path, tiny_detector: Any, tiny_config: Any) -> None:
    with pytest.raises(CheckpointError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "a", tiny_detector, tiny_detector.config, {"bad": object()})
    with pytest.raises(CheckpointError, match=r"differs from model\.config"):
        save_checkpoint(tmp_path / "b", tiny_detector, tiny_config("wavlm-tiny", "sls"), {})
    with pytest.raises(ConfigError, match="expects a DetectorConfig, got dict"):
        save_checkpoint(tmp_path / "c", tiny_detector, tiny_detector.config.to_dict(), {})  # type: ignore[arg-type]


def test_missing_and_corrupt_files(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint directory not found: expected a directory"):
        load_checkpoint(tmp_path / "nothing")
    (tiny_checkpoint / "training.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"training\.json: expected a JSON object"):
        load_checkpoint(tiny_checkpoint)
    (tiny_checkpoint / "training.json").write_text("{}")
    weights = tiny_checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="is not a readable safetensors file"):
        load_checkpoint(tiny_checkpoint)
    weights.unlink()
    with pytest.raises(CheckpointError, match=r"is incomplete: expected model\.safetensors"):
        load_checkpoint(tiny_checkpoint)
    (tiny_checkpoint / "config.json").write_text('{"kind": "ssl", "backend": {"name": "nope"}}')
    with pytest.raises(CheckpointError, match="invalid detector config: unknown back-end 'nope'"):
        load_checkpoint(tiny_checkpoint)


def test_config_that_does_not_match_the_weights(tiny_checkpoint: Path) -> None:
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    cfg["backbone"]["config"]["num_hidden_layers"] = 3  # weights hold 2 layers
    (tiny_checkpoint / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        CheckpointError, match=r"config.json does not match model.safetensors .*3 layers.*missing"
    ):
        load_checkpoint(tiny_checkpoint)
    cfg["backbone"]["config"]["num_hidden_layers"] = 2
    cfg["backend"]["config"]["hidden"] = 64  # weights have the default 256
    (tiny_checkpoint / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        CheckpointError, match=r"shape mismatches e\.g\. \['backend.mlp.0.bias: config gives \(64,\)"
    ):
        load_checkpoint(tiny_checkpoint)


def test_interrupted_replace_is_reported_with_recovery_hint(tiny_checkpoint: Path) -> None:
    backup = tiny_checkpoint.parent / f".{tiny_checkpoint.name}.old-deadbeef"
    tiny_checkpoint.rename(backup)
    with pytest.raises(CheckpointError, match=r"interrupted save left .*old-deadbeef"):
        load_checkpoint(tiny_checkpoint)
