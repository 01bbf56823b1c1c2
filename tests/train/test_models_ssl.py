"""SSL backbones: real pruning against transformers itself, final-norm semantics, masks, loading sources."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from spoof_train.errors import CheckpointError, ConfigError
from spoof_train.models import DetectorConfig, SSLBackbone, build_detector, detector_config_from_pretrained
from spoof_train.models.fairseq import (
    hf_config_to_fairseq_cfg,
    hf_to_fairseq_state_dict,
    load_fairseq_checkpoint,
    parse_conv_feature_layers,
)
from spoof_train.models.ssl import hf_model_class, make_hf_config
from spoof_train.presets import PRESETS

TOL = 1e-5
FULL_LAYERS = 4


def _cfg(preset: str, **extra: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(PRESETS[preset].hf_config)
    cfg["num_hidden_layers"] = FULL_LAYERS
    cfg.update(extra)
    return cfg


# (family, config, stable layer norm?) – every family, post-LN and stable-LN variants.
FAMILIES = {
    "wavlm-base-like": ("wavlm", _cfg("wavlm-tiny"), False),
    "wavlm-large-like": (
        "wavlm",
        _cfg("wavlm-tiny", feat_extract_norm="layer", do_stable_layer_norm=True),
        True,
    ),
    "hubert-base-like": ("hubert", _cfg("hubert-tiny"), False),
    "hubert-large-like": (
        "hubert",
        _cfg("hubert-tiny", feat_extract_norm="layer", do_stable_layer_norm=True),
        True,
    ),
    "wav2vec2-base-like": ("wav2vec2", _cfg("wav2vec2-tiny"), False),
    "xlsr-like": ("wav2vec2", _cfg("xlsr-tiny"), True),
}


def _full_model(family: str, cfg: dict[str, Any], seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return hf_model_class(family)(make_hf_config(family, cfg)).eval()


def _wave(seconds: float = 0.6, batch: int = 2, seed: int = 7) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, int(16000 * seconds), generator=gen)


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("layers", [2, FULL_LAYERS])
def test_pruned_stack_equals_transformers_hidden_states(name: str, layers: int) -> None:
    family, cfg, stable = FAMILIES[name]
    full = _full_model(family, cfg)
    wave = _wave()
    with torch.no_grad():
        ref = full(wave, output_hidden_states=True).hidden_states
    assert len(ref) == FULL_LAYERS + 1
    bb = SSLBackbone(family, cfg, layers).eval()
    assert len(bb.model.encoder.layers) == layers  # really removed, not skipped
    bb.load_backbone_state(full.state_dict())
    with torch.no_grad():
        hidden, mask = bb(wave)
    assert hidden.shape == (2, layers + 1, ref[0].shape[1], ref[0].shape[2])
    assert bool(mask.all())
    for i in range(layers + 1):
        diff = (hidden[:, i] - ref[i]).abs().max().item()
        assert diff <= TOL, f"{name}: hidden state {i} differs by {diff}"
    # The pruned model holds fewer parameters than the full one (unless nothing was pruned).
    n_full = sum(p.numel() for p in full.parameters())
    n_bb = sum(p.numel() for p in bb.parameters())
    assert (n_bb < n_full) if layers < FULL_LAYERS else (n_bb <= n_full)
    if stable:
        # final_norm=True: the last entry is LN(full hidden_states[N]) == the pruned model's last_hidden_state
        bb_ln = SSLBackbone(family, cfg, layers, final_norm=True).eval()
        bb_ln.load_backbone_state(full.state_dict())
        with torch.no_grad():
            hidden_ln, _ = bb_ln(wave)
            expect = full.encoder.layer_norm(ref[layers])
            pruned_hf = bb_ln.model(wave).last_hidden_state
        assert (hidden_ln[:, -1] - expect).abs().max().item() <= TOL
        assert (hidden_ln[:, -1] - pruned_hf).abs().max().item() <= TOL
        assert (hidden_ln[:, :-1] - hidden[:, :-1]).abs().max().item() <= TOL
        if layers == FULL_LAYERS:  # transformers 5.x: the full model's last_hidden_state is post-LN ...
            out = full(wave, output_hidden_states=True)
            assert (out.last_hidden_state - expect).abs().max().item() <= TOL
            # ... while its hidden_states[-1] is the pre-LN tensor (transformers 4.x returned post-LN).
            assert (out.hidden_states[-1] - out.last_hidden_state).abs().max().item() > 1e-3
        assert "encoder.layer_norm.weight" not in dict(bb.model.named_parameters())
        assert "encoder.layer_norm.weight" in dict(bb_ln.model.named_parameters())


def test_layers_larger_than_backbone_is_a_config_error() -> None:
    family, cfg, _ = FAMILIES["xlsr-like"]
    with pytest.raises(ConfigError, match=r"layers=5 is larger than the backbone: expected 1\.\.4"):
        SSLBackbone(family, cfg, 5)
    with pytest.raises(ConfigError, match=r"layers=13 is larger than the backbone: expected 1\.\.12"):
        DetectorConfig(backbone={"family": "wavlm", "config": {"num_hidden_layers": 12}}, layers=13)
    with pytest.raises(ConfigError, match="positive int"):
        DetectorConfig(backbone={"family": "wavlm", "config": {"num_hidden_layers": 12}}, layers=0)


def test_frame_mask_follows_hf_output_lengths() -> None:
    family, cfg, _ = FAMILIES["xlsr-like"]
    bb = SSLBackbone(family, cfg, 2).eval()
    wave = _wave(1.0, batch=3)
    lengths = torch.tensor([16000, 9001, 400])
    with torch.no_grad():
        hidden, mask = bb(wave, lengths)
    expected = bb.model._get_feat_extract_output_lengths(lengths)
    assert mask.dtype == torch.bool
    assert mask.shape == (3, hidden.shape[2])
    assert mask.sum(dim=1).tolist() == expected.tolist()
    assert expected.tolist() == [49, 27, 1]  # 320x striding, receptive field 400


@pytest.mark.parametrize("backend", ["ffn", "layer-weighted", "sls", "aasist", "mhfa"])
@pytest.mark.parametrize("preset", ["xlsr-tiny", "wavlm-large-like"])
def test_padded_row_with_mask_equals_unpadded_row_for_layer_norm_encoders(preset: str, backend: str) -> None:
    if preset == "xlsr-tiny":
        bb_cfg = {"family": "wav2vec2", "config": copy.deepcopy(PRESETS["xlsr-tiny"].hf_config)}
    else:
        bb_cfg = {"family": "wavlm", "config": FAMILIES["wavlm-large-like"][1]}
    model = build_detector(DetectorConfig(backbone=bb_cfg, backend={"name": backend}), seed=3).eval()
    wave = _wave(1.2, batch=2, seed=11)
    n = 12000
    row = wave[1:2, :n].clone()
    padded = wave.clone()
    padded[1, n:] = 0.5  # garbage after the valid samples must not matter
    with torch.no_grad():
        alone = model(row)
        batch = model(padded, torch.tensor([wave.shape[1], n]))
        first = model(wave[0:1])
    assert (batch[1] - alone[0]).abs().max().item() <= 1e-4
    assert (batch[0] - first[0]).abs().max().item() <= 1e-4


def test_group_norm_encoders_see_padding_as_documented() -> None:
    """WavLM/HuBERT/wav2vec2-base normalise the first conv layer over the whole input: padding leaks in."""
    model = build_detector(
        DetectorConfig(
            backbone={"family": "wavlm", "config": copy.deepcopy(PRESETS["wavlm-tiny"].hf_config)}
        ),
        seed=3,
    ).eval()
    wave = _wave(1.2, batch=2, seed=11)
    n = 12000
    padded = wave.clone()
    padded[1, n:] = 0.0
    with torch.no_grad():
        alone = model(wave[1:2, :n])
        batch = model(padded, torch.tensor([wave.shape[1], n]))
    assert (batch[1] - alone[0]).abs().max().item() > 1e-4


def _save_hf_dir(model: Any, path: Path, *, bin_file: bool = False) -> Path:
    model.save_pretrained(path)
    if bin_file:
        (path / "model.safetensors").unlink()
        torch.save(model.state_dict(), path / "pytorch_model.bin")
    return path


@pytest.mark.parametrize("bin_file", [False, True])
def test_load_local_hf_directory_pruned(tmp_path: Path, bin_file: bool) -> None:
    family, cfg, _ = FAMILIES["wavlm-large-like"]
    full = _full_model(family, cfg, seed=5)
    src = _save_hf_dir(full, tmp_path / "wavlm", bin_file=bin_file)
    config = detector_config_from_pretrained(src, backend="layer-weighted", layers=2)
    assert config.backbone is not None
    assert config.backbone["family"] == "wavlm"
    assert config.total_layers == FULL_LAYERS
    assert config.kept_layers == 2
    model = build_detector(config, pretrained=src).eval()
    wave = _wave()
    with torch.no_grad():
        ref = full(wave, output_hidden_states=True).hidden_states
        hidden, _ = model.backbone(wave)
    for i in range(3):
        assert (hidden[:, i] - ref[i]).abs().max().item() <= TOL


def test_load_hf_task_model_directory_strips_prefix_and_head(tmp_path: Path) -> None:
    from transformers import Wav2Vec2ForCTC

    _, cfg, _ = FAMILIES["xlsr-like"]
    torch.manual_seed(2)
    ctc = Wav2Vec2ForCTC(make_hf_config("wav2vec2", {**cfg, "vocab_size": 8})).eval()
    src = _save_hf_dir(ctc, tmp_path / "ctc")
    model = build_detector(detector_config_from_pretrained(src, layers=3), pretrained=src).eval()
    wave = _wave()
    with torch.no_grad():
        ref = ctc.wav2vec2(wave, output_hidden_states=True).hidden_states
        hidden, _ = model.backbone(wave)
    assert (hidden[:, 3] - ref[3]).abs().max().item() <= TOL


def test_pretrained_family_mismatch_and_missing_weights(tmp_path: Path) -> None:
    family, cfg, _ = FAMILIES["hubert-base-like"]
    src = _save_hf_dir(_full_model(family, cfg), tmp_path / "hubert")
    wrong = DetectorConfig(backbone={"family": "wavlm", "config": FAMILIES["wavlm-base-like"][1]})
    with pytest.raises(CheckpointError, match="expected a wavlm backbone, got hubert"):
        build_detector(wrong, pretrained=src)
    (src / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights found"):
        detector_config_from_pretrained(src)
    with pytest.raises(CheckpointError, match="not found"):
        detector_config_from_pretrained(tmp_path / "nope")


def test_pretrained_weights_that_do_not_fit_the_config(tmp_path: Path) -> None:
    family, cfg, _ = FAMILIES["wav2vec2-base-like"]
    src = _save_hf_dir(_full_model(family, cfg), tmp_path / "w2v")
    wider = DetectorConfig(
        backbone={"family": "wav2vec2", "config": {**cfg, "intermediate_size": 96}}, layers=2
    )
    with pytest.raises(CheckpointError, match=r"shape mismatches .*expected \(96, 32\), given \(64, 32\)"):
        build_detector(wider, pretrained=src)


# -- fairseq wav2vec2 / XLS-R -------------------------------------------------------------------------------


def _fairseq_file(tmp_path: Path, name: str, *, as_args: bool = False) -> tuple[Path, Any]:
    family, cfg, _ = FAMILIES[name]
    full = _full_model(family, cfg, seed=9)
    group = full.config.feat_extract_norm == "group"
    fs_model = hf_to_fairseq_state_dict(full.state_dict(), group_norm=group)
    # Real fairseq checkpoints also carry pretraining-only tensors: they must be dropped.
    d = full.config.hidden_size
    fs_model["mask_emb"] = torch.randn(d)
    fs_model["quantizer.vars"] = torch.randn(1, 8, 4)
    fs_model["project_q.weight"] = torch.randn(4, 4)
    fs_model["final_proj.weight"] = torch.randn(4, d)
    fs_cfg = hf_config_to_fairseq_cfg(full.config.to_dict())
    ckpt: dict[str, Any] = {"model": fs_model}
    if as_args:
        ckpt["args"] = argparse.Namespace(**fs_cfg)
    else:
        ckpt["cfg"] = {"model": fs_cfg, "task": {"_name": "audio_pretraining"}}
    path = tmp_path / f"{name}.pt"
    torch.save(ckpt, path)
    return path, full


@pytest.mark.parametrize("name", ["xlsr-like", "wav2vec2-base-like"])
def test_fairseq_checkpoint_conversion_and_pruning(tmp_path: Path, name: str) -> None:
    path, full = _fairseq_file(tmp_path, name)
    hf_cfg, state = load_fairseq_checkpoint(path)
    assert hf_cfg["num_hidden_layers"] == FULL_LAYERS
    assert hf_cfg["do_stable_layer_norm"] == full.config.do_stable_layer_norm
    assert hf_cfg["feat_extract_norm"] == full.config.feat_extract_norm
    assert "masked_spec_embed" in state  # converted (mask_emb), dropped later by pruning
    config = detector_config_from_pretrained(path, backend="sls", layers=2)
    model = build_detector(config, pretrained=path).eval()
    wave = _wave()
    with torch.no_grad():
        ref = full(wave, output_hidden_states=True).hidden_states
        hidden, _ = model.backbone(wave)
    for i in range(3):
        assert (hidden[:, i] - ref[i]).abs().max().item() <= TOL


def test_fairseq_args_namespace_needs_trust(tmp_path: Path) -> None:
    path, full = _fairseq_file(tmp_path, "xlsr-like", as_args=True)
    with pytest.raises(CheckpointError, match=r"weights_only=True.*trust_checkpoint=True"):
        load_fairseq_checkpoint(path)
    config = detector_config_from_pretrained(path, layers=1, trust_checkpoint=True)
    model = build_detector(config, pretrained=path, trust_checkpoint=True).eval()
    wave = _wave()
    with torch.no_grad():
        ref = full(wave, output_hidden_states=True).hidden_states
        hidden, _ = model.backbone(wave)
    assert (hidden[:, 1] - ref[1]).abs().max().item() <= TOL


def test_fairseq_bad_inputs(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"cannot be loaded with weights_only=True: it is not a torch"):
        load_fairseq_checkpoint(junk)
    nomodel = tmp_path / "nomodel.pt"
    torch.save({"cfg": {"model": {}}}, nomodel)
    with pytest.raises(CheckpointError, match="'model' state dict"):
        load_fairseq_checkpoint(nomodel)
    other = tmp_path / "other.pt"
    torch.save({"cfg": {"model": {"_name": "hubert"}}, "model": {}}, other)
    with pytest.raises(
        CheckpointError, match="expected a wav2vec2 / XLS-R model, got fairseq model 'hubert'"
    ):
        load_fairseq_checkpoint(other)
    unknown = tmp_path / "unknown.pt"
    torch.save(
        {"cfg": {"model": {"_name": "wav2vec2"}}, "model": {"decoder.weight": torch.zeros(1)}}, unknown
    )
    with pytest.raises(
        CheckpointError, match=r"keys this wav2vec2 converter does not know, e.g. \['decoder.weight'\]"
    ):
        load_fairseq_checkpoint(unknown)


def test_parse_conv_feature_layers_is_safe() -> None:
    xlsr = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]"
    layers = parse_conv_feature_layers(xlsr)
    assert layers == [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    with pytest.raises(ConfigError, match="unsupported conv_feature_layers"):
        parse_conv_feature_layers("__import__('os').system('true')")
    with pytest.raises(ConfigError, match="list of"):
        parse_conv_feature_layers("[(1, 2)]")


def test_layerdrop_is_refused_and_spec_augment_is_off_by_default() -> None:
    family, cfg, _ = FAMILIES["hubert-base-like"]
    with pytest.raises(
        ConfigError, match=r"layerdrop must be 0\.0, got 0\.1: transformers 5 records hidden states"
    ):
        SSLBackbone(family, {**cfg, "layerdrop": 0.1})
    hf = SSLBackbone(family, cfg).hf_config
    assert hf.apply_spec_augment is False
    assert hf.layerdrop == 0.0


def test_pruning_reads_only_the_kept_layers_and_sharded_safetensors(tmp_path: Path) -> None:
    from spoof_train.models.ssl import prune_state_dict

    family, cfg, _ = FAMILIES["xlsr-like"]
    full = _full_model(family, cfg, seed=4)

    class Recording(dict):  # type: ignore[type-arg]
        read: set[str]

        def __getitem__(self, key: str) -> torch.Tensor:
            self.read.add(key)
            return super().__getitem__(key)

    state = Recording(full.state_dict())
    state.read = set()
    kept, _ = prune_state_dict(state, layers=1, keep_final_norm=False)
    assert not any(
        k.startswith(("encoder.layers.1.", "encoder.layers.2.", "encoder.layers.3.")) for k in state.read
    )
    assert set(kept) == state.read
    # Sharded safetensors directory (model.safetensors.index.json) loads the same way.
    src = tmp_path / "sharded"
    full.save_pretrained(src, max_shard_size="20KB")
    assert (src / "model.safetensors.index.json").is_file()
    model = build_detector(detector_config_from_pretrained(src, layers=2), pretrained=src).eval()
    wave = _wave()
    with torch.no_grad():
        ref = full(wave, output_hidden_states=True).hidden_states
        hidden, _ = model.backbone(wave)
    assert (hidden[:, 2] - ref[2]).abs().max().item() <= TOL
