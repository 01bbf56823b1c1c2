"""Whisper encoder backbones (transformers ``WhisperEncoder``) with real layer pruning, any input length and
the log-mel front end inside the module.

``WhisperBackbone`` has the interface of :class:`~spoof_train.models.ssl.SSLBackbone`:
``forward(wave [B, T] float32 16 kHz, lengths [B] int64 | None)``
``-> (hidden [B, N+1, F, D], frame_mask [B, F])``.

Front end (:class:`WhisperLogMel`): the log-mel spectrogram of transformers' ``WhisperFeatureExtractor``
(400-point periodic Hann window, hop 160, centred frames with reflect padding, power spectrum, slaney mel
filters 0-8 kHz, ``log10(max(mel, 1e-10))``, clamp to ``max - 8``, ``(x + 4) / 4``; the extractor's last
frame is dropped, so ``T`` samples give ``T // 160`` frames). The DFT is an ``einsum`` with a fixed
windowed cosine / sine basis and the framing is reshape + slice (no ``torch.stft``): the ONNX graph has no
STFT op and the int8 exporter, which quantises MatMul / Gemm / Conv only, leaves the front end in FP32.

Short windows: the encoder runs on the window's own frames (``ceil(frames / 2)`` after the stride-2
convolution, 50 per second) with the positional embedding sliced to that count; Whisper itself always
pads to 30 s. Two consequences, documented in docs/training.md with measurements:

- The ``max - 8`` clamp uses the maximum over the window's valid frames; the feature extractor takes it
  over the zero-padded 30 s, whose padding frames are ``log10(1e-10) = -10`` and never the maximum of a
  window that holds any signal, so the clamps agree except for the last one or two frames, whose centred
  frame reaches past the end (reflect padding of the window vs zeros of the 30 s form).
- Attention sees only the window's frames instead of the window plus ~26 s of padding, so the hidden
  states differ from the 30 s padded form (measured in docs/training.md); fine-tuning adapts to this.

Batches of unequal length (``lengths``): each row is reflect-padded at its own end, the log-mel max is
taken over its own frames, frames past its end are zeroed before each convolution (the zero padding the
unpadded row's convolutions would see), and attention masks the padded frames: in eval mode a padded row
gives exactly the hidden states of the unpadded row on its valid frames.

Hidden states (transformers 5.x, pinned): the stack is ``[h_0, ..., h_N]``, ``h_0`` the input of the first
layer (convolutions + positional embedding), ``h_i`` the raw output of layer ``i``. transformers 5.x
returns, for the *full* encoder, ``hidden_states[i]`` = raw output of layer ``i`` for ``i < L`` but
``hidden_states[L]`` = ``layer_norm(raw output of layer L)`` (``last_hidden_state``: the output recorder
ties the last entry to it). ``final_norm=True`` applies ``encoder.layer_norm`` to the last kept state (so
the unpruned stack equals transformers' ``hidden_states`` entry for entry, and a pruned one ends in what
Whisper's final norm would make of layer N); ``final_norm=False`` (default) keeps raw layer outputs and
removes the final norm from the model. Either way, a pruned stack's entries ``0..N-1`` equal the full
model's, and entry ``N`` equals the full model's ``hidden_states[N]`` (raw) when ``N`` < L and
``final_norm=False``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from spoof_train.errors import ConfigError, DataError
from spoof_train.models.masking import _neg_large, lengths_to_mask
from spoof_train.models.ssl import check_state_matches

__all__ = [
    "HOP_LENGTH",
    "N_FFT",
    "SAMPLES_PER_FRAME",
    "WhisperBackbone",
    "WhisperLogMel",
    "clean_whisper_config",
    "make_whisper_config",
    "prune_whisper_state",
    "whisper_frame_lengths",
]

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
# Encoder frames: the second convolution has stride 2, so one frame per 320 samples (50 per second).
SAMPLES_PER_FRAME = 2 * HOP_LENGTH

# The encoder-side fields of a WhisperConfig the backbone depends on (the decoder is never built).
_ENCODER_KEYS = (
    "d_model",
    "encoder_layers",
    "encoder_attention_heads",
    "encoder_ffn_dim",
    "num_mel_bins",
    "max_source_positions",
    "activation_function",
    "dropout",
    "attention_dropout",
    "activation_dropout",
    "scale_embedding",
)


# Family-independent names the rest of the package reads and writes (detector config validation, the
# exporter's backbone name, spoof-train distil's student config) -> the WhisperConfig fields they stand for.
GENERIC_NAMES = {
    "num_hidden_layers": "encoder_layers",
    "hidden_size": "d_model",
    "num_attention_heads": "encoder_attention_heads",
    "intermediate_size": "encoder_ffn_dim",
}


def clean_whisper_config(config: Any) -> dict[str, Any]:
    """A compact JSON dict of the encoder fields of a ``WhisperConfig`` (object or dict).

    The generic names (``num_hidden_layers``, ``hidden_size``, ``num_attention_heads``,
    ``intermediate_size``) are written too, equal to ``encoder_layers``, ``d_model``,
    ``encoder_attention_heads`` and ``encoder_ffn_dim``: the detector config, the exporter and
    ``spoof-train distil`` read and edit those names for every family. ``encoder_layerdrop`` is written as 0
    (LayerDrop would remove entries of the hidden-state stack).
    """
    from transformers import WhisperConfig

    if isinstance(config, Mapping):
        d = _resolve_generic_names(config)
        model_type = d.pop("model_type", "whisper")
        if model_type != "whisper":
            raise ConfigError(f"a whisper backbone needs model_type 'whisper', got {model_type!r}")
        config = WhisperConfig.from_dict(d)
    out: dict[str, Any] = {"model_type": "whisper"}
    for key in _ENCODER_KEYS:
        out[key] = getattr(config, key)
    out["encoder_layerdrop"] = 0.0
    for generic, specific in GENERIC_NAMES.items():
        out[generic] = int(out[specific])
    return out


def _resolve_generic_names(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy where each generic name present overrides its WhisperConfig field, then is removed.

    The generic name wins because it is what the rest of the package edits (``spoof-train distil`` sets
    ``num_hidden_layers`` to the teacher's kept layers and may narrow ``hidden_size``)."""
    d = dict(config)
    for generic, specific in GENERIC_NAMES.items():
        if generic in d:
            d[specific] = d.pop(generic)
    return d


def make_whisper_config(config: Mapping[str, Any], layers: int | None = None) -> Any:
    """``WhisperConfig`` of the encoder with ``encoder_layers`` reduced to ``layers`` (pruned config)."""
    from transformers import WhisperConfig

    d = _resolve_generic_names(config)
    model_type = d.pop("model_type", "whisper")
    if model_type != "whisper":
        raise ConfigError(f"backbone family 'whisper' needs model_type 'whisper', got {model_type!r}")
    d.pop("output_hidden_size", None)  # written by spoof-train distil for wav2vec2-style configs
    enc_layers = int(d.get("encoder_layers", 0))
    if enc_layers < 1:
        raise ConfigError(f"whisper config needs encoder_layers >= 1, got {enc_layers}")
    if layers is not None:
        if layers < 1 or layers > enc_layers:
            raise ConfigError(
                f"layers={layers} is larger than the backbone: expected 1..{enc_layers} "
                f"(whisper with {enc_layers} layers)"
            )
        enc_layers = layers
    d["encoder_layers"] = enc_layers
    if float(d.get("encoder_layerdrop", 0.0)) != 0.0:
        raise ConfigError(
            f"encoder_layerdrop must be 0.0, got {d['encoder_layerdrop']}: a dropped layer would remove an "
            "entry of the hidden-state stack"
        )
    d["encoder_layerdrop"] = 0.0
    cfg = WhisperConfig.from_dict(d)
    cfg._attn_implementation = "sdpa"
    return cfg


def whisper_frame_lengths(lengths: Tensor) -> Tensor:
    """Encoder frames for ``lengths`` samples: ``ceil((lengths // 160) / 2)``."""
    mel = torch.div(lengths, HOP_LENGTH, rounding_mode="floor")
    return torch.div(mel + 1, 2, rounding_mode="floor").to(torch.long)


def _mel_filters(num_mel_bins: int, sample_rate: int) -> Tensor:
    from transformers.audio_utils import mel_filter_bank

    filters = mel_filter_bank(
        num_frequency_bins=1 + N_FFT // 2,
        num_mel_filters=num_mel_bins,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(filters).to(torch.float32)  # [freq, mel]


def _dft_basis() -> Tensor:
    """``[400, 402]``: periodic-Hann-windowed cosines (bins 0..200) then sines, float64 -> float32."""
    n = torch.arange(N_FFT, dtype=torch.float64)
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / N_FFT)  # torch.hann_window(400, periodic=True)
    k = torch.arange(N_FFT // 2 + 1, dtype=torch.float64)
    angle = 2 * math.pi * torch.outer(n, k) / N_FFT
    basis = torch.cat([torch.cos(angle), -torch.sin(angle)], dim=1) * window[:, None]
    return basis.to(torch.float32)


class WhisperLogMel(nn.Module):
    """Waveform -> Whisper log-mel features ``[B, n_mels, T // 160]`` and the valid frame count per row.

    The DFT basis and mel filters are persistent buffers (they are written into checkpoints, so a
    checkpoint loads without transformers' filter code and on the meta device).
    """

    def __init__(self, num_mel_bins: int = 80, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        if sample_rate != SAMPLE_RATE:
            raise ConfigError(
                f"the Whisper front end runs at {SAMPLE_RATE} Hz, got sample_rate={sample_rate}"
            )
        self.num_mel_bins = int(num_mel_bins)
        self.register_buffer("dft_basis", _dft_basis())
        self.register_buffer("mel_filters", _mel_filters(self.num_mel_bins, sample_rate))

    def _reflect_padded(self, wave: Tensor, lengths: Tensor | None) -> Tensor:
        """``[B, T + 400]``: each row reflect-padded by 200 samples at both ends of its own length."""
        total = wave.shape[1]
        j = torch.arange(-(N_FFT // 2), total + N_FFT // 2, device=wave.device).unsqueeze(0)  # [1, T+400]
        last = (
            torch.full((wave.shape[0], 1), total - 1, dtype=torch.long, device=wave.device)
            if lengths is None
            else (lengths.to(torch.long) - 1).unsqueeze(1)
        )
        idx = j.abs()
        idx = torch.where(idx > last, 2 * last - idx, idx)
        idx = idx.clamp(min=0, max=total - 1)
        return torch.gather(wave, 1, idx.expand(wave.shape[0], -1))

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        # Always float32, also under autocast: in bf16 / fp16 the DFT of a 400-sample frame loses the bins
        # the max - 8 clamp keeps (the convolutions after it may run in reduced precision).
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return self._log_mel(wave.float(), lengths)

    def _log_mel(self, wave: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        batch = wave.shape[0]
        frames = wave.shape[1] // HOP_LENGTH
        padded = self._reflect_padded(wave, lengths)
        chunks = padded[:, : (frames + 2) * HOP_LENGTH].reshape(batch, frames + 2, HOP_LENGTH)
        framed = torch.cat(
            [
                chunks[:, :frames],
                chunks[:, 1 : frames + 1],
                chunks[:, 2 : frames + 2, : N_FFT - 2 * HOP_LENGTH],
            ],
            dim=2,
        )  # [B, F, 400]: frame t covers padded samples 160 t .. 160 t + 399
        spec = torch.einsum("bfn,nk->bfk", framed, self.dft_basis)
        half = N_FFT // 2 + 1
        power = spec[..., :half] ** 2 + spec[..., half:] ** 2
        mel = torch.einsum("bfk,km->bmf", power, self.mel_filters)
        log_spec = torch.log10(mel.clamp(min=1e-10))
        if lengths is None:
            mel_lengths = None
            peak = log_spec.amax(dim=(1, 2), keepdim=True)
        else:
            mel_lengths = torch.div(lengths.to(torch.long), HOP_LENGTH, rounding_mode="floor")
            valid = lengths_to_mask(mel_lengths, frames).unsqueeze(1)  # [B, 1, F]
            peak = log_spec.masked_fill(~valid, -1.0e9).amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        features = (log_spec + 4.0) / 4.0
        if lengths is not None:
            features = features * valid.to(features.dtype)
        return features, mel_lengths


_ENCODER_MODULES = ("conv1", "conv2", "embed_positions", "layers", "layer_norm")


def prune_whisper_state(
    state: Mapping[str, Tensor], *, layers: int, keep_final_norm: bool
) -> tuple[dict[str, Tensor], list[str]]:
    """Filter an encoder state dict (``WhisperEncoder`` key layout) to its first ``layers`` layers.

    Strips the ``model.encoder.`` / ``encoder.`` prefixes of ``WhisperForConditionalGeneration`` /
    ``WhisperModel`` / ``WhisperForAudioClassification`` checkpoints and drops everything that is not an
    encoder module (decoder, output projection, classification heads). Returns ``(kept, dropped)`` where
    ``dropped`` lists those keys; a missing encoder key is caught by the strict load that follows.
    """
    kept: dict[str, Tensor] = {}
    foreign: list[str] = []
    for raw_key in state:
        key = raw_key
        for prefix in ("model.encoder.", "encoder."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        if key.split(".", 1)[0] not in _ENCODER_MODULES or raw_key.startswith(("model.decoder.", "decoder.")):
            foreign.append(raw_key)  # decoder, proj_out, an audio-classification head, ...
            continue
        if key.startswith("layers."):
            index = int(key.split(".", 2)[1])
            if index < layers:
                kept[key] = state[raw_key]
            continue
        if key.startswith("layer_norm.") and not keep_final_norm:
            continue
        kept[key] = state[raw_key]
    return kept, foreign


class WhisperBackbone(nn.Module):
    """A pruned transformers ``WhisperEncoder`` with its log-mel front end, for any input length.

    ``forward(wave [B, T] float32, lengths [B] int64 | None)
    -> (hidden [B, N+1, F, D], frame_mask [B, F] bool)`` with ``F = ceil((T // 160) / 2)``.
    """

    family = "whisper"

    def __init__(
        self,
        config: Mapping[str, Any],
        layers: int | None = None,
        *,
        final_norm: bool = False,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        super().__init__()
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        hf_config = make_whisper_config(config, layers)
        self.final_norm = bool(final_norm)
        self.num_layers = int(hf_config.encoder_layers)
        self.hidden_size = int(hf_config.d_model)
        self.max_frames = int(hf_config.max_source_positions)
        self.frontend = WhisperLogMel(int(hf_config.num_mel_bins), sample_rate)
        self.encoder = WhisperEncoder(hf_config)
        # The positional table is fixed (sinusoids; a buffer in openai-whisper, requires_grad=False in
        # transformers): a buffer here, so unfreezing the backbone or a per-group optimizer never trains it.
        positions = self.encoder.embed_positions
        table = positions.weight.detach()
        del positions.weight
        positions.register_buffer("weight", table)
        if not self.final_norm:
            # raw layer outputs: the final norm would be dead weight
            self.encoder.layer_norm = nn.Identity()  # type: ignore[assignment]

    @property
    def num_hidden_states(self) -> int:
        return self.num_layers + 1

    @property
    def hf_config(self) -> Any:
        return self.encoder.config

    @property
    def max_samples(self) -> int:
        """Longest input: ``max_source_positions`` encoder frames (30 s for every released Whisper)."""
        return 2 * self.max_frames * HOP_LENGTH + HOP_LENGTH - 1

    def min_samples(self, frames: int = 1) -> int:
        """Shortest input giving ``frames`` encoder frames (reflect padding needs more than 200 samples)."""
        return max((2 * frames - 1) * HOP_LENGTH, N_FFT // 2 + 1)

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        return whisper_frame_lengths(lengths)

    def load_backbone_state(self, state: Mapping[str, Tensor], *, source: str = "state dict") -> None:
        """Load an encoder state dict (full or pruned, any of the HF key layouts) into this pruned model."""
        kept, foreign = prune_whisper_state(state, layers=self.num_layers, keep_final_norm=self.final_norm)
        del foreign  # decoder / projection weights of a full Whisper checkpoint
        check_state_matches(
            self.encoder.state_dict(), kept,
            f"{source} does not match the whisper backbone ({self.num_layers} layers x {self.hidden_size})",
        )  # fmt: skip
        self.encoder.load_state_dict({k: v.to(torch.float32) for k, v in kept.items()}, strict=True)

    def features(self, wave: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Log-mel features ``[B, n_mels, T // 160]`` (zero past each row's end) and mel frame counts."""
        return self.frontend(wave, lengths)  # type: ignore[no-any-return]

    def encode_features(self, features: Tensor, mel_lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The hidden-state stack and frame mask from log-mel ``features`` ``[B, n_mels, frames]``."""
        enc = self.encoder
        act = nn.functional.gelu
        x = act(enc.conv1(features))
        if mel_lengths is not None:
            x = x * lengths_to_mask(mel_lengths, x.shape[2]).unsqueeze(1).to(x.dtype)
        x = act(enc.conv2(x)).permute(0, 2, 1)  # [B, F, D]
        frames = x.shape[1]
        if not torch.jit.is_tracing() and frames > self.max_frames:  # type: ignore[attr-defined,no-untyped-call]
            raise DataError(
                f"whisper encoder input: expected at most {self.max_frames} frames (30 s, "
                f"{self.max_samples} samples), got {frames}"
            )
        h = x + enc.embed_positions.weight[:frames].unsqueeze(0)
        h = nn.functional.dropout(h, p=enc.dropout, training=self.training)
        attn_mask = None
        if mel_lengths is None:
            mask = torch.ones(h.shape[0], frames, dtype=torch.bool, device=h.device)
        else:
            mask = lengths_to_mask(torch.div(mel_lengths + 1, 2, rounding_mode="floor"), frames)
            attn_mask = torch.zeros(mask.shape, dtype=h.dtype, device=h.device)
            attn_mask = attn_mask.masked_fill(~mask, _neg_large(h.dtype))[:, None, None, :]
        states = [h]
        for layer in enc.layers:
            h = layer(h, attn_mask)
            states.append(h)
        if self.final_norm:
            states[-1] = enc.layer_norm(states[-1])
        return torch.stack(states, dim=1), mask

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        features, mel_lengths = self.frontend(wave, lengths)
        return self.encode_features(features, mel_lengths)
