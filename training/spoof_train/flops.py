"""Parameter counts and FLOPs per window, measured with ``torch.utils.flop_counter.FlopCounterMode``.

FLOPs count matrix products and convolutions (2 x multiply-accumulates), as FlopCounterMode does;
element-wise ops, norms and softmax are not counted. GRU layers, which FlopCounterMode does not count,
are added analytically (2 x 3 gates x H x (I + H) per step and layer). The model runs on the ``meta``
device when it can (no memory for weights or activations, nothing computed), else on CPU.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from spoof_train.models.config import DetectorConfig

__all__ = ["CostReport", "count_parameters", "measure_cost"]

log = logging.getLogger("spoof_train")

# Parts of a detector, as (label, module path below the detector) – first match wins.
_SSL_PARTS = (
    ("feature_encoder", "backbone.model.feature_extractor"),
    ("feature_projection", "backbone.model.feature_projection"),
    ("positional_conv", "backbone.model.encoder.pos_conv_embed"),
    ("transformer", "backbone.model.encoder"),
    ("backend", "backend"),
)
_RAW_PARTS = (
    ("sinc_front_end", "net.conv_time"),
    ("sinc_front_end", "net.sinc_conv"),
    ("encoder", "net.encoder"),
    ("encoder", "net.blocks"),
    ("graph_head", "net.head"),
    ("gru_head", "net.gru"),
    ("gru_head", "net.fc1_gru"),
    ("gru_head", "net.fc2_gru"),
)


@dataclass
class CostReport:
    """Cost of one forward pass of ``batch`` x ``samples``."""

    samples: int
    batch: int
    params: int
    gflops: float
    gflops_by_part: dict[str, float] = field(default_factory=dict)
    params_by_part: dict[str, int] = field(default_factory=dict)
    device: str = "meta"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parts(model: nn.Module) -> tuple[tuple[str, str], ...]:
    return _SSL_PARTS if hasattr(model, "backbone") else _RAW_PARTS


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Total parameters and parameters per part (feature encoder, transformer, back-end, ...)."""
    by_part: dict[str, int] = {}
    total = 0
    for name, p in model.named_parameters():
        total += p.numel()
        label = next((lab for lab, prefix in _parts(model) if name.startswith(prefix + ".")), "other")
        by_part[label] = by_part.get(label, 0) + p.numel()
    return {"total": total, **by_part}


def _run(model: nn.Module, samples: int, batch: int, device: str) -> dict[str, dict[Any, int]]:
    from torch.utils.flop_counter import FlopCounterMode

    wave = torch.zeros(batch, samples, device=device)
    # torch reads depth=None as "every depth" (FlopCounterMode.get_table) though its annotation says int
    counter = FlopCounterMode(display=False, depth=None)  # type: ignore[arg-type]
    # No autograd at all: the module tracker of FlopCounterMode chokes on views of parameters made under
    # no_grad (requires_grad without grad_fn), so switch requires_grad off for the measurement.
    flags = [(p, p.requires_grad) for p in model.parameters()]
    rnn_flops: dict[str, int] = {}
    hooks = []
    root = type(model).__name__
    for mod_name, module in model.named_modules():
        if isinstance(module, nn.GRU):

            def hook(mod: Any, args: Any, _out: Any, key: str = f"{root}.{mod_name}") -> None:
                x = args[0]
                b, t = (x.shape[0], x.shape[1]) if mod.batch_first else (x.shape[1], x.shape[0])
                h, i = mod.hidden_size, mod.input_size
                per_step = sum(2 * 3 * h * ((i if n == 0 else h) + h) for n in range(mod.num_layers))
                rnn_flops[key] = int(b) * int(t) * int(per_step)

            hooks.append(module.register_forward_hook(hook))
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.no_grad(), counter:
            model(wave)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for h in hooks:
            h.remove()
    counts = dict(counter.get_flop_counts())
    for name, flops in rnn_flops.items():  # FlopCounterMode has no formula for recurrent layers
        counts.setdefault(name, {})["gru (analytic)"] = flops
        counts.setdefault("Global", {})["gru (analytic)"] = counts["Global"].get("gru (analytic)", 0) + flops
    return counts


def _sum_under(counts: dict[str, dict[Any, int]], prefix: str) -> int:
    """FLOPs of the module at ``prefix`` or, if it never ran as a whole (ModuleList), of its children."""
    if prefix in counts:
        return sum(counts[prefix].values())
    keys = [k for k in counts if k.startswith(prefix + ".")]
    top = [k for k in keys if not any(k != o and k.startswith(o + ".") for o in keys)]
    return sum(sum(counts[k].values()) for k in top)


def measure_cost(
    model_or_config: nn.Module | DetectorConfig, *, samples: int = 64600, batch: int = 1
) -> CostReport:
    """Parameters and GFLOPs of one forward pass (default: one 4.04 s window at 16 kHz, batch 1).

    A DetectorConfig is built on the meta device (no weights allocated), so real-sized presets are cheap to
    measure. A module is measured as given (on CPU if meta is not possible).
    """
    from spoof_train.models import build_detector

    if isinstance(model_or_config, DetectorConfig):
        with torch.device("meta"):
            model: nn.Module = build_detector(model_or_config)
        model.eval()
        try:
            counts = _run(model, samples, batch, "meta")
            device = "meta"
        except RuntimeError as exc:  # some decompositions (GroupNorm) mix CPU scalars into meta graphs
            log.info("meta-device FLOP count failed (%s); measuring on CPU", str(exc).splitlines()[0])
            model = build_detector(model_or_config).eval()
            counts = _run(model, samples, batch, "cpu")
            device = "cpu"
    else:
        model = model_or_config
        was_training = model.training
        model.eval()
        device = "meta" if next(model.parameters()).is_meta else "cpu"
        try:
            counts = _run(model, samples, batch, device)
        finally:
            model.train(was_training)
    root = type(model).__name__
    total = sum(counts.get("Global", {}).values())
    by_part: dict[str, float] = {}
    claimed = 0
    for label, prefix in _parts(model):
        flops = _sum_under(counts, f"{root}.{prefix}")
        if label == "transformer":  # the encoder minus its positional conv (counted on its own)
            flops -= _sum_under(counts, f"{root}.backbone.model.encoder.pos_conv_embed")
        if flops:
            by_part[label] = by_part.get(label, 0.0) + flops / 1e9
            claimed += flops
    if total - claimed > 0:
        by_part["other"] = (total - claimed) / 1e9
    params = count_parameters(model)
    return CostReport(
        samples=samples,
        batch=batch,
        params=params.pop("total"),
        gflops=total / 1e9,
        gflops_by_part=by_part,
        params_by_part=params,
        device=device,
    )


def _table(rows: list[tuple[str, str, int | None]], samples: int) -> str:
    from spoof_train.presets import get_preset

    lines = [
        "| preset | back-end | layers | params (M) | GFLOP / window | conv encoder | transformer "
        "| back-end GFLOP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for preset, backend, layers in rows:
        cfg = get_preset(preset, backend=backend if backend != "-" else None, layers=layers)
        r = measure_cost(cfg, samples=samples)
        parts = r.gflops_by_part
        enc = parts.get("feature_encoder", parts.get("sinc_front_end", 0.0) + parts.get("encoder", 0.0))
        trans = (
            parts.get("transformer", 0.0)
            + parts.get("positional_conv", 0.0)
            + parts.get("feature_projection", 0.0)
        )
        head = parts.get("backend", parts.get("graph_head", 0.0) + parts.get("gru_head", 0.0))
        kept = cfg.kept_layers if cfg.kept_layers is not None else "-"
        lines.append(
            f"| {preset} | {backend} | {kept} | {r.params / 1e6:.3f} | {r.gflops:.2f} | {enc:.2f} | "
            f"{trans:.2f} | {head:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m spoof_train.flops``: print the cost table of the presets (docs/training-models.md)."""
    import argparse

    parser = argparse.ArgumentParser(
        description="parameters and GFLOPs per window of the spoof_train presets"
    )
    parser.add_argument("--samples", type=int, default=64600, help="window length in samples (default 64600)")
    args = parser.parse_args(argv)
    rows: list[tuple[str, str, int | None]] = []
    for preset, cuts in (
        ("wavlm-base", (None, 6, 3)),
        ("hubert-base", (None, 6)),
        ("wav2vec2-base", (None, 6)),
        ("wavlm-large", (None, 12, 6)),
        ("xlsr-300m", (None, 12, 6)),
    ):
        rows += [(preset, "ffn", n) for n in cuts]
    rows += [("wavlm-base", b, 6) for b in ("layer-weighted", "sls", "aasist", "mhfa")]
    rows += [("xlsr-300m", b, 6) for b in ("layer-weighted", "sls", "aasist", "mhfa")]
    rows += [
        (p, "-", None) for p in ("aasist", "aasist-l", "rawnet2", "rawnet2-asvspoof2021", "rawnet2-small")
    ]
    print(_table(rows, args.samples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
