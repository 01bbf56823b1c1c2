"""fairseq wav2vec 2.0 / XLS-R checkpoints (e.g. ``xlsr2_300m.pt``) -> transformers Wav2Vec2 layout.

A fairseq checkpoint is a ``torch.save`` dict holding the model weights under ``model`` and the model
configuration under ``cfg["model"]`` (fairseq >= 0.10, plain dicts) or ``args`` (older fairseq, an
``argparse.Namespace``). Only the former loads with ``torch.load(weights_only=True)``; a checkpoint that needs
full unpickling (``args`` Namespace, OmegaConf objects, NumPy state) is refused unless the caller passes
``trust_checkpoint=True`` (CLI: ``--trust-checkpoint``), because unpickling runs arbitrary code.

Fine-tuned checkpoints (``w2v_encoder.w2v_model.*``, config under ``cfg["model"]["w2v_args"]``) are accepted
too; their CTC heads are dropped.
"""

from __future__ import annotations

import ast
import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spoof_train.errors import CheckpointError, ConfigError

__all__ = [
    "fairseq_cfg_to_hf_config",
    "fairseq_to_hf_state_dict",
    "hf_config_to_fairseq_cfg",
    "hf_to_fairseq_state_dict",
    "load_fairseq_checkpoint",
    "parse_conv_feature_layers",
]

log = logging.getLogger("spoof_train")

_IGNORED = ("quantizer.", "project_q.", "final_proj.", "label_embs_concat", "target_glu.", "proj.")
_LAYER_MAP = {
    "self_attn.k_proj": "attention.k_proj",
    "self_attn.q_proj": "attention.q_proj",
    "self_attn.v_proj": "attention.v_proj",
    "self_attn.out_proj": "attention.out_proj",
    "self_attn_layer_norm": "layer_norm",
    "fc1": "feed_forward.intermediate_dense",
    "fc2": "feed_forward.output_dense",
    "final_layer_norm": "final_layer_norm",
}
_TOP_MAP = {
    "post_extract_proj.weight": "feature_projection.projection.weight",
    "post_extract_proj.bias": "feature_projection.projection.bias",
    "layer_norm.weight": "feature_projection.layer_norm.weight",
    "layer_norm.bias": "feature_projection.layer_norm.bias",
    "mask_emb": "masked_spec_embed",
    "encoder.pos_conv.0.weight_g": "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
    "encoder.pos_conv.0.weight_v": "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
    "encoder.pos_conv.0.bias": "encoder.pos_conv_embed.conv.bias",
    "encoder.layer_norm.weight": "encoder.layer_norm.weight",
    "encoder.layer_norm.bias": "encoder.layer_norm.bias",
}
_TOP_INV = {v: k for k, v in _TOP_MAP.items()}
# fairseq builds with torch's newer weight-norm parametrization save the positional conv like this.
_TOP_MAP.update(
    {
        "encoder.pos_conv.0.parametrizations.weight.original0": _TOP_MAP["encoder.pos_conv.0.weight_g"],
        "encoder.pos_conv.0.parametrizations.weight.original1": _TOP_MAP["encoder.pos_conv.0.weight_v"],
    }
)
_LAYER_INV = {v: k for k, v in _LAYER_MAP.items()}
_FS_CONV = re.compile(r"^feature_extractor\.conv_layers\.(\d+)\.(0|2|2\.1)\.(weight|bias)$")
_FS_LAYER = re.compile(r"^encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")
_HF_CONV = re.compile(r"^feature_extractor\.conv_layers\.(\d+)\.(conv|layer_norm)\.(weight|bias)$")
_HF_LAYER = re.compile(r"^encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")


def parse_conv_feature_layers(spec: str) -> list[tuple[int, int, int]]:
    """Parse fairseq's ``conv_feature_layers`` (e.g. ``"[(512, 10, 5)] + [(512, 3, 2)] * 4"``) safely.

    Only list/tuple literals of ints, ``+`` and ``*`` are accepted (no ``eval``).
    """

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = ev(node.left), ev(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise ConfigError(f"unsupported conv_feature_layers expression {ast.dump(node)[:80]!r}")

    try:
        tree = ast.parse(spec.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"conv_feature_layers is not a list expression: {spec!r}") from exc
    value = ev(tree)
    if not isinstance(value, list) or not all(isinstance(t, tuple) and len(t) == 3 for t in value):
        raise ConfigError(f"conv_feature_layers must give a list of (dim, kernel, stride), got {value!r}")
    return [(int(d), int(k), int(s)) for d, k, s in value]


def fairseq_cfg_to_hf_config(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """fairseq ``Wav2Vec2Config`` (dict) -> transformers ``Wav2Vec2Config`` kwargs."""
    cfg = dict(model_cfg)
    if int(cfg.get("pos_conv_depth", 1)) != 1:
        raise ConfigError(
            f"pos_conv_depth={cfg['pos_conv_depth']} is not supported (expected 1: wav2vec 2.0)"
        )
    conv = parse_conv_feature_layers(
        str(cfg.get("conv_feature_layers", "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]"))
    )
    mode = cfg.get("extractor_mode", "default")
    if mode not in ("default", "layer_norm"):
        raise ConfigError(f"extractor_mode must be 'default' or 'layer_norm', got {mode!r}")
    act = cfg.get("activation_fn", "gelu")
    return {
        "model_type": "wav2vec2",
        "hidden_size": int(cfg.get("encoder_embed_dim", 768)),
        "num_hidden_layers": int(cfg.get("encoder_layers", 12)),
        "num_attention_heads": int(cfg.get("encoder_attention_heads", 12)),
        "intermediate_size": int(cfg.get("encoder_ffn_embed_dim", 3072)),
        "hidden_act": act,
        "hidden_dropout": float(cfg.get("dropout", 0.1)),
        "attention_dropout": float(cfg.get("attention_dropout", 0.1)),
        "activation_dropout": float(cfg.get("activation_dropout", 0.0)),
        "feat_proj_dropout": float(cfg.get("dropout_input", 0.0)),
        "layerdrop": float(cfg.get("encoder_layerdrop", 0.0)),
        "conv_dim": [c[0] for c in conv],
        "conv_kernel": [c[1] for c in conv],
        "conv_stride": [c[2] for c in conv],
        "conv_bias": bool(cfg.get("conv_bias", False)),
        "feat_extract_norm": "layer" if mode == "layer_norm" else "group",
        "feat_extract_activation": "gelu",
        "do_stable_layer_norm": bool(cfg.get("layer_norm_first", False)),
        "num_conv_pos_embeddings": int(cfg.get("conv_pos", 128)),
        "num_conv_pos_embedding_groups": int(cfg.get("conv_pos_groups", 16)),
        "layer_norm_eps": 1e-5,
    }


def hf_config_to_fairseq_cfg(config: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`fairseq_cfg_to_hf_config` for the keys it maps (used to build test checkpoints)."""
    conv = " + ".join(
        f"[({d}, {k}, {s})]"
        for d, k, s in zip(config["conv_dim"], config["conv_kernel"], config["conv_stride"], strict=True)
    )
    return {
        "_name": "wav2vec2",
        "encoder_embed_dim": config["hidden_size"],
        "encoder_layers": config["num_hidden_layers"],
        "encoder_attention_heads": config["num_attention_heads"],
        "encoder_ffn_embed_dim": config["intermediate_size"],
        "activation_fn": config.get("hidden_act", "gelu"),
        "conv_feature_layers": f"{conv}",
        "conv_bias": config.get("conv_bias", False),
        "extractor_mode": "layer_norm" if config.get("feat_extract_norm") == "layer" else "default",
        "layer_norm_first": config.get("do_stable_layer_norm", False),
        "conv_pos": config.get("num_conv_pos_embeddings", 128),
        "conv_pos_groups": config.get("num_conv_pos_embedding_groups", 16),
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.0,
        "encoder_layerdrop": 0.0,
    }


def fairseq_to_hf_state_dict(state: Mapping[str, Tensor], *, group_norm: bool) -> dict[str, Tensor]:
    """Rename fairseq wav2vec2 keys to transformers ``Wav2Vec2Model`` keys (tensors are not copied).

    ``group_norm``: the fairseq ``extractor_mode == "default"`` (GroupNorm on the first conv layer only).
    Pretraining-only keys (quantizer, project_q, final_proj) are dropped; any other unknown key is an error.
    """
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key in state:
        k = key
        for prefix in ("w2v_encoder.w2v_model.", "w2v_model."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
                break
        if k.startswith(_IGNORED) or k.startswith("w2v_encoder.proj"):
            continue
        if k in _TOP_MAP:
            out[_TOP_MAP[k]] = state[key]
            continue
        m = _FS_CONV.match(k)
        if m is not None:
            i, part, kind = m.groups()
            if part == "0":
                out[f"feature_extractor.conv_layers.{i}.conv.{kind}"] = state[key]
                continue
            if (part == "2" and group_norm and i == "0") or (part == "2.1" and not group_norm):
                out[f"feature_extractor.conv_layers.{i}.layer_norm.{kind}"] = state[key]
                continue
        m = _FS_LAYER.match(k)
        if m is not None and m.group(2) in _LAYER_MAP:
            i, name, kind = m.groups()
            out[f"encoder.layers.{i}.{_LAYER_MAP[name]}.{kind}"] = state[key]
            continue
        unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"fairseq checkpoint has {len(unknown)} keys this wav2vec2 converter does not know, "
            f"e.g. {unknown[:5]} (expected a wav2vec 2.0 / XLS-R model)"
        )
    return out


def hf_to_fairseq_state_dict(state: Mapping[str, Tensor], *, group_norm: bool) -> dict[str, Tensor]:
    """Inverse of :func:`fairseq_to_hf_state_dict` (used to build synthetic fairseq checkpoints in tests)."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key in _TOP_INV:
            out[_TOP_INV[key]] = value
            continue
        m = _HF_CONV.match(key)
        if m is not None:
            i, part, kind = m.groups()
            if part == "conv":
                out[f"feature_extractor.conv_layers.{i}.0.{kind}"] = value
            else:
                out[f"feature_extractor.conv_layers.{i}.{'2' if group_norm else '2.1'}.{kind}"] = value
            continue
        m = _HF_LAYER.match(key)
        if m is not None and m.group(2) in _LAYER_INV:
            i, name, kind = m.groups()
            out[f"encoder.layers.{i}.{_LAYER_INV[name]}.{kind}"] = value
            continue
        raise ConfigError(f"no fairseq name for transformers key {key!r}")
    return out


def _model_cfg(ckpt: Mapping[str, Any], path: Path) -> dict[str, Any]:
    cfg = ckpt.get("cfg")
    if cfg is not None:
        if not isinstance(cfg, Mapping) or not isinstance(cfg.get("model"), Mapping):
            raise CheckpointError(
                f"{path}: 'cfg' must be a dict with a 'model' dict, got {type(cfg).__name__}"
            )
        model = dict(cfg["model"])
    elif ckpt.get("args") is not None:
        args = ckpt["args"]
        model = dict(vars(args)) if hasattr(args, "__dict__") else dict(args)
    else:
        raise CheckpointError(
            f"{path}: a fairseq checkpoint needs 'cfg' or 'args' next to 'model', got keys {sorted(ckpt)}"
        )
    w2v = model.get("w2v_args")
    if isinstance(w2v, Mapping):  # fine-tuned model: the encoder config is nested
        inner = w2v.get("model", w2v)
        model = dict(inner) if isinstance(inner, Mapping) else model
    elif w2v is not None and hasattr(w2v, "model"):
        model = dict(vars(w2v.model)) if hasattr(w2v.model, "__dict__") else dict(w2v.model)
    return model


def load_fairseq_checkpoint(
    path: str | Path, *, trust_checkpoint: bool = False
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Read a fairseq wav2vec2 / XLS-R ``.pt`` -> ``(hf_config_dict, hf_state_dict)`` (full, unpruned).

    The file is memory-mapped where torch supports it, so tensors of layers that pruning drops are never read.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"fairseq checkpoint not found: expected a file at {path}")
    kwargs: dict[str, Any] = {"map_location": "cpu", "weights_only": not trust_checkpoint}
    try:
        try:
            ckpt = torch.load(path, mmap=True, **kwargs)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            ckpt = torch.load(path, **kwargs)  # legacy (non-zip) serialisation cannot be memory-mapped
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} cannot be loaded with weights_only=True: it is not a torch checkpoint, or it stores "
            f"Python objects beyond tensors and plain containers ({str(exc).splitlines()[0][:120]}). If it "
            f"is a fairseq checkpoint you trust, pass trust_checkpoint=True (CLI: --trust-checkpoint)."
        ) from exc
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {exc}") from exc
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("model"), Mapping):
        raise CheckpointError(f"{path}: expected a fairseq checkpoint dict with a 'model' state dict")
    model_cfg = _model_cfg(ckpt, path)
    name = model_cfg.get("_name", model_cfg.get("arch", "wav2vec2"))
    if name not in ("wav2vec2", "wav2vec_ctc", "wav2vec2_ctc", None):
        raise CheckpointError(f"{path}: expected a wav2vec2 / XLS-R model, got fairseq model {name!r}")
    hf_config = fairseq_cfg_to_hf_config(model_cfg)
    state = fairseq_to_hf_state_dict(ckpt["model"], group_norm=hf_config["feat_extract_norm"] == "group")
    log.info(
        "converted fairseq checkpoint %s: %d tensors, %d layers",
        path,
        len(state),
        hf_config["num_hidden_layers"],
    )
    return hf_config, state
