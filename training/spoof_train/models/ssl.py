"""SSL backbones (WavLM, Wav2Vec2 / XLS-R, HuBERT from transformers) with real layer pruning.

``layers=N`` builds the model from a config whose ``num_hidden_layers`` is N and loads a state dict filtered
to those layers: the removed layers are never created, so a pruned 24-layer XLS-R costs the memory of its
kept layers only (docs/cpu-baseline.md measured 2.8 GB peak when building the full model and pruning later).

Hidden-state semantics (transformers 5.x, pinned): ``SSLBackbone.forward`` returns the stack
``[hidden_states[0], ..., hidden_states[N]]``: ``hidden_states[0]`` is the input of the first transformer
layer (CNN features + positional conv), ``hidden_states[i]`` the output of layer ``i``; each entry equals
the full model's ``hidden_states[i]`` from transformers itself. For stable-layer-norm models (XLS-R,
WavLM-large, HuBERT-large) transformers 5.x returns the *pre*-final-LayerNorm tensor as
``hidden_states[-1]`` and applies ``encoder.layer_norm`` only to ``last_hidden_state``.

- ``final_norm=False`` (default): the stack is the raw layer outputs and ``encoder.layer_norm`` is removed
  from the pruned model (dead weight otherwise, and unused parameters break DDP).
- ``final_norm=True``: the last entry is ``encoder.layer_norm(hidden_states[N])``, i.e. the pruned model's
  ``last_hidden_state`` (what the full model's final LN would give at layer N).

Post-LN models (WavLM/HuBERT/wav2vec2 base) have no final norm: ``final_norm`` changes nothing for them.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from spoof_train.errors import CheckpointError, ConfigError
from spoof_train.models.config import SSL_FAMILIES
from spoof_train.models.masking import lengths_to_mask

__all__ = [
    "SSLBackbone",
    "check_state_matches",
    "clean_hf_config_dict",
    "hf_config_class",
    "hf_model_class",
    "make_hf_config",
    "prune_state_dict",
]

log = logging.getLogger("spoof_train")

# transformers' WavLM attention hands torch a boolean key_padding_mask next to its float position-bias
# attn_mask, which torch >= 2.x flags as deprecated on every padded forward; the masks are correct and the
# mix is transformers' to change, so the note is not repeated to every training run.
warnings.filterwarnings(
    "ignore",
    message="Support for mismatched key_padding_mask and attn_mask is deprecated",
    category=UserWarning,
)

_CLASSES = {
    "wavlm": ("WavLMConfig", "WavLMModel"),
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model"),
    "hubert": ("HubertConfig", "HubertModel"),
}
# Keys of HF checkpoints that are not part of the bare backbone (heads, quantizers, pretraining projections).
_FOREIGN_PREFIXES = (
    "lm_head.",
    "quantizer.",
    "project_q.",
    "project_hid.",
    "projector.",
    "classifier.",
    "final_proj.",
    "label_embeddings_concat",
    "dropout_features",
    "layer_weights",
    "tdnn.",
    "feature_extractor_head",
    "objective.",
)
_HEAD_MODEL_PREFIXES = ("wav2vec2.", "wavlm.", "hubert.")
_LAYER_RE = re.compile(r"^encoder\.layers\.(\d+)\.")


def _check_family(family: str) -> None:
    if family not in _CLASSES:
        raise ConfigError(f"unknown backbone family {family!r}; expected one of {SSL_FAMILIES}")


def hf_config_class(family: str) -> Any:
    _check_family(family)
    import transformers

    return getattr(transformers, _CLASSES[family][0])


def hf_model_class(family: str) -> Any:
    _check_family(family)
    import transformers

    return getattr(transformers, _CLASSES[family][1])


def clean_hf_config_dict(family: str, config: Any) -> dict[str, Any]:
    """A compact, JSON-serialisable HF config dict (non-default keys plus the ones we rely on).

    Spec-augment masking and LayerDrop are written as switched off: the research recipes we reproduce
    extract features without masking, HF's time masking draws from NumPy's global RNG (breaks resumable,
    seeded runs) and an unused ``masked_spec_embed`` parameter breaks DDP; LayerDrop is refused outright
    (see :func:`make_hf_config`). Spec-augment can be turned back on by editing the dict.
    """
    cls = hf_config_class(family)
    if isinstance(config, Mapping):
        config = cls.from_dict(dict(config))
    d: dict[str, Any] = config.to_diff_dict()
    for key in ("transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype"):
        d.pop(key, None)
    d.update(apply_spec_augment=False, mask_time_prob=0.0, mask_feature_prob=0.0, layerdrop=0.0)
    for key in (
        "model_type",
        "num_hidden_layers",
        "hidden_size",
        "num_attention_heads",
        "intermediate_size",
        "do_stable_layer_norm",
        "feat_extract_norm",
        "conv_dim",
        "conv_stride",
        "conv_kernel",
        "conv_bias",
    ):
        value = getattr(config, key)
        d[key] = list(value) if isinstance(value, tuple) else value
    return d


def make_hf_config(family: str, config: Mapping[str, Any], layers: int | None = None) -> Any:
    """HF config object for ``family`` with ``num_hidden_layers`` reduced to ``layers`` (pruned config)."""
    cls = hf_config_class(family)
    d = dict(config)
    model_type = d.get("model_type")
    expected = cls.model_type
    if model_type is not None and model_type != expected:
        raise ConfigError(f"backbone family {family!r} needs model_type {expected!r}, got {model_type!r}")
    total = int(d.get("num_hidden_layers", cls().num_hidden_layers))
    if layers is not None:
        if layers < 1 or layers > total:
            raise ConfigError(
                f"layers={layers} is larger than the backbone: expected 1..{total} "
                f"({family} with {total} layers)"
            )
        d["num_hidden_layers"] = layers
    d.setdefault("apply_spec_augment", False)
    if not d["apply_spec_augment"]:
        d["mask_time_prob"] = 0.0
        d["mask_feature_prob"] = 0.0
    d.setdefault("layerdrop", 0.0)
    if float(d["layerdrop"]) != 0.0:
        raise ConfigError(
            f"layerdrop must be 0.0, got {d['layerdrop']}: transformers 5 records hidden states with hooks, "
            f"so a dropped layer would remove an entry of the hidden-state stack"
        )
    return cls.from_dict(d)


def _rename_legacy_key(key: str) -> str:
    # transformers < 4.3x saved the weight-normed positional conv as weight_g / weight_v.
    prefix = "pos_conv_embed.conv."
    key = key.replace(prefix + "weight_g", prefix + "parametrizations.weight.original0")
    return key.replace(prefix + "weight_v", prefix + "parametrizations.weight.original1")


def check_state_matches(own: Mapping[str, Tensor], given: Mapping[str, Tensor], what: str) -> None:
    """Raise :class:`CheckpointError` (``what`` + the missing, unexpected and mis-shaped keys) unless
    ``given`` has exactly the keys and shapes of ``own``."""
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    mismatched = [
        f"{k}: expected {tuple(own[k].shape)}, given {tuple(given[k].shape)}"
        for k in sorted(set(own) & set(given))
        if tuple(own[k].shape) != tuple(given[k].shape)
    ]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{what}: missing {missing[:5]}{'...' if len(missing) > 5 else ''} ({len(missing)}), "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''} ({len(unexpected)}), "
            f"shape mismatches {mismatched[:5]} ({len(mismatched)})"
        )


def prune_state_dict(
    state: Mapping[str, Tensor], *, layers: int, keep_final_norm: bool, keep_masked_spec_embed: bool = False
) -> tuple[dict[str, Tensor], list[str]]:
    """Filter an HF-layout backbone state dict to the first ``layers`` layers.

    ``keep_final_norm=False`` drops ``encoder.layer_norm`` (only right for stable-layer-norm models, where
    it is the final norm; post-LN models apply it before the first layer).

    Strips task-model prefixes (``wav2vec2.``, ``wavlm.``, ``hubert.``), renames legacy weight-norm keys and
    drops heads / quantizers. Returns ``(kept, dropped_foreign_keys)``; layer keys beyond ``layers`` are
    dropped silently (that is the pruning).
    """
    kept: dict[str, Tensor] = {}
    foreign: list[str] = []
    for raw_key in state:  # values are fetched only for kept keys (lazy safetensors / mmap)
        key = raw_key
        for prefix in _HEAD_MODEL_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        key = _rename_legacy_key(key)
        m = _LAYER_RE.match(key)
        if m is not None:
            if int(m.group(1)) < layers:
                kept[key] = state[raw_key]
            continue
        if key.startswith("encoder.layer_norm.") and not keep_final_norm:
            continue
        if key == "masked_spec_embed" and not keep_masked_spec_embed:
            continue
        if key.startswith(_FOREIGN_PREFIXES) or raw_key.startswith(_FOREIGN_PREFIXES):
            foreign.append(raw_key)
            continue
        kept[key] = state[raw_key]
    return kept, foreign


class SSLBackbone(nn.Module):
    """A pruned transformers SSL model returning the stack of its hidden states and a frame mask.

    ``forward(wave [B, T] float32, lengths [B] int64 | None)``
    ``-> (hidden [B, N+1, F, D], frame_mask [B, F] bool)``.
    """

    def __init__(
        self,
        family: str,
        config: Mapping[str, Any],
        layers: int | None = None,
        *,
        final_norm: bool = False,
    ) -> None:
        super().__init__()
        hf_config = make_hf_config(family, config, layers)
        self.family = family
        self.stable_layer_norm = bool(hf_config.do_stable_layer_norm)
        self.final_norm = bool(final_norm) and self.stable_layer_norm
        self.num_layers = int(hf_config.num_hidden_layers)
        self.hidden_size = int(hf_config.hidden_size)
        self.model = hf_model_class(family)(hf_config)
        if self.stable_layer_norm and not self.final_norm:
            # Hidden states are the raw layer outputs; the final LN would be computed and never used.
            self.model.encoder.layer_norm = nn.Identity()

    @property
    def num_hidden_states(self) -> int:
        """Entries of the stack: the pre-transformer features plus one per kept layer."""
        return self.num_layers + 1

    @property
    def hf_config(self) -> Any:
        return self.model.config

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Valid frames per row for ``lengths`` valid samples (HF ``_get_feat_extract_output_lengths``)."""
        frames: Tensor = self.model._get_feat_extract_output_lengths(lengths)
        return frames.to(torch.long)

    def load_backbone_state(self, state: Mapping[str, Tensor], *, source: str = "state dict") -> None:
        """Load an HF-layout state dict (full or pruned) into this pruned model; strict on what it keeps."""
        kept, foreign = prune_state_dict(
            state,
            layers=self.num_layers,
            keep_final_norm=self.final_norm or not self.stable_layer_norm,  # post-LN: LN before the layers
            keep_masked_spec_embed="masked_spec_embed" in dict(self.model.named_parameters()),
        )
        if foreign:
            log.info("ignoring %d non-backbone keys from %s (e.g. %s)", len(foreign), source, foreign[:3])
        check_state_matches(
            self.model.state_dict(), kept, f"{source} does not match the {self.family} backbone "
            f"({self.num_layers} layers)"
        )  # fmt: skip
        self.model.load_state_dict(kept, strict=True)

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        attention_mask = None
        if lengths is not None:
            attention_mask = lengths_to_mask(lengths, wave.shape[1]).to(torch.long)
        out = self.model(wave, attention_mask=attention_mask, output_hidden_states=True, return_dict=True)
        states = list(out.hidden_states)
        if self.final_norm:
            states[-1] = out.last_hidden_state
        hidden = torch.stack(states, dim=1)
        frames = hidden.shape[2]
        if lengths is None:
            mask = torch.ones(hidden.shape[0], frames, dtype=torch.bool, device=hidden.device)
        else:
            mask = lengths_to_mask(self.frame_lengths(lengths), frames)
        return hidden, mask
