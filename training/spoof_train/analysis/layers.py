"""Layer analysis: which transformer layers of an SSL backbone carry the spoofing evidence.

Procedure (``spoof-train analyse-layers``), after the layer-wise studies of SSL anti-spoofing front ends:

1. Train a detector whose back-end is the **layer-weighted sum** over *all* hidden states of the unpruned
   backbone (``layers: null``, ``backend.name: layer-weighted``): one learnable logit per hidden state,
   softmax-normalised, so the weights sum to 1 and compare across layers.
2. Read the learned weights (index 0 = the CNN feature projection entering layer 1, index i = output of
   transformer layer i), write a heatmap PNG and a table (markdown + JSON).
3. **Recommend N** with the coverage rule: the smallest N such that hidden states ``0..N`` (exactly the
   ones a model pruned to N layers still computes) hold at least ``coverage`` (default 90 %) of the weight
   mass. Pruning to that N keeps that share of what the trained weighting used while removing the layers
   after N. The knee of the cumulative curve (largest distance from the chord between its ends) is reported
   alongside as a second opinion; when several runs/seeds are given, their mean weights are used.
4. **Flatness check**: when the weights are near-uniform the coverage rule only restates the number of layers
   times the coverage, and the knee is noise. The criterion is the largest gap between the cumulative weight
   curve and that of uniform weights (a Kolmogorov-Smirnov distance, in units of weight mass): below
   ``FLAT_TOLERANCE`` (0.05: no prefix of layers holds 5 % more or less of the mass than under uniform
   weights) the report sets ``near_uniform: true`` and a ``warning``, and the CLI prints it.

The weights measure what one back-end relied on, not causal importance: confirm N by training the pruned
detector and comparing dev EER (docs/training.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spoof_train.errors import CheckpointError, ConfigError

__all__ = [
    "analyse_layers",
    "layer_weights",
    "layer_weights_from_checkpoint",
    "recommend_layers",
    "write_layer_report",
]

log = logging.getLogger("spoof_train")

#: Largest gap between the cumulative weight curve and the uniform one below which the weights count as
#: near-uniform (too flat to support a recommendation); see the module docstring, step 4.
FLAT_TOLERANCE = 0.05


def layer_weights(model: Any) -> np.ndarray:
    """Softmax-normalised layer weights of a detector with a layer-weighted back-end (index 0 = CNN output).

    Uses ``model.backend.layer_weights()`` when the back-end provides it, else the back-end's 1-D parameter
    named ``*layer_weights``/``*weights`` whose length is the number of hidden states (softmax applied).
    """
    import torch

    backend = getattr(model, "backend", None) or getattr(model, "head", None)
    cfg = getattr(model, "config", None)
    name = getattr(cfg, "backend_name", None)
    if name is not None and name != "layer-weighted":
        raise ConfigError(f"layer analysis needs a 'layer-weighted' back-end, the checkpoint has {name!r}")
    kept = getattr(cfg, "kept_layers", None)
    candidates: list[Any] = []
    for mod in (backend, model):
        if mod is None:
            continue
        fn = getattr(mod, "layer_weights", None)
        if callable(fn):
            with torch.no_grad():
                w = fn()
            return np.asarray(
                w.detach().cpu().double().numpy() if hasattr(w, "detach") else w, dtype=np.float64
            )
        if isinstance(mod, torch.nn.Module):
            for pname, p in mod.named_parameters():
                if (
                    p.dim() == 1
                    and pname.split(".")[-1] in ("layer_weights", "weights", "layer_logits")
                    and (kept is None or p.numel() in (kept, kept + 1))
                ):
                    candidates.append(p)
        if candidates:
            break
    if not candidates:
        raise ConfigError(
            "layer analysis: the model has no layer weights (expected a layer-weighted back-end "
            "with a 1-D 'layer_weights' parameter or a layer_weights() method)"
        )
    with torch.no_grad():
        return torch.softmax(candidates[0].detach().double(), dim=0).cpu().numpy()


def layer_weights_from_checkpoint(checkpoint: str | Path) -> np.ndarray:
    from spoof_train.checkpoint import load_checkpoint

    model, _, _ = load_checkpoint(checkpoint, map_location="cpu")
    return layer_weights(model)


def _knee(cum: np.ndarray) -> int:
    """Index of the cumulative curve's point farthest above the chord from its first to its last point."""
    n = cum.size
    if n < 3:
        return n - 1
    x = np.arange(n, dtype=np.float64)
    chord = cum[0] + (cum[-1] - cum[0]) * x / (n - 1)
    return int(np.argmax(cum - chord))


def recommend_layers(weights: Sequence[float] | np.ndarray, coverage: float = 0.9) -> dict[str, Any]:
    """Recommend the number of transformer layers N to keep from hidden-state weights ``w[0..L]``.

    ``N`` = the smallest N >= 1 with ``sum(w[0..N]) >= coverage * sum(w)``; also returns the knee of the
    cumulative curve, the top layer and the cumulative mass per N. ``uniform_distance`` is the largest gap
    between the cumulative curve and that of uniform weights; below ``FLAT_TOLERANCE`` the weights are
    ``near_uniform`` and ``warning`` says the recommendation is not supported (else ``warning`` is None).
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 2:  # several runs: average them
        w = w.mean(axis=0)
    if w.ndim != 1 or w.size < 2:
        raise ConfigError(f"weights: expected a vector over >= 2 hidden states, got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ConfigError("weights: expected finite non-negative weights with a positive sum")
    if not 0.0 < coverage <= 1.0:
        raise ConfigError(f"coverage: expected a fraction in (0, 1], got {coverage}")
    w = w / w.sum()
    cum = np.cumsum(w)
    n_cov = int(np.searchsorted(cum, coverage - 1e-12))  # first index with cum >= coverage
    n_cov = max(1, n_cov)
    uniform = np.arange(1, w.size + 1, dtype=np.float64) / w.size
    distance = float(np.max(np.abs(cum - uniform)))
    flat = distance < FLAT_TOLERANCE
    warning = (
        f"the layer weights are near-uniform ({w.min():.3f} .. {w.max():.3f}; cumulative curve within "
        f"{distance:.3f} of uniform weights' < {FLAT_TOLERANCE:g}): they do not single out any layers, so "
        f"N = {n_cov} only restates the {100 * coverage:g} % coverage of {w.size} hidden states and the knee "
        "is noise; train longer or with a higher back-end learning rate before pruning on this"
        if flat
        else None
    )
    return {
        "coverage": coverage,
        "recommended_layers": n_cov,
        "knee_layers": max(1, _knee(cum)),
        "top_layer": int(np.argmax(w)),
        "total_layers": int(w.size - 1),
        "weights": [float(v) for v in w],
        "cumulative": [float(v) for v in cum],
        "rule": f"smallest N with sum(w[0..N]) >= {coverage:g}",
        "uniform_distance": distance,
        "flat_tolerance": FLAT_TOLERANCE,
        "near_uniform": flat,
        "warning": warning,
    }


def write_layer_report(
    weights: np.ndarray,
    out_dir: str | Path,
    *,
    coverage: float = 0.9,
    labels: Sequence[str] | None = None,
    title: str = "learned layer weights",
) -> dict[str, Any]:
    """Write ``layer_weights.png`` (heatmap), ``layer_weights.md`` and ``layer_weights.json``; return JSON."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    w = w / w.sum(axis=1, keepdims=True)
    rec = recommend_layers(w, coverage)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    row_labels = list(labels) if labels is not None else [f"run {i + 1}" for i in range(w.shape[0])]
    if len(row_labels) != w.shape[0]:
        raise ConfigError(f"labels: expected {w.shape[0]} labels, got {len(row_labels)}")
    if rec["warning"]:
        log.warning("analyse-layers: %s", rec["warning"])
    # one row per run, then their mean (the weights the recommendation uses) when there are several
    shown = np.vstack([w, np.asarray(rec["weights"])[None, :]]) if w.shape[0] > 1 else w
    shown_labels = [*row_labels, "mean"] if w.shape[0] > 1 else row_labels
    fig, ax = plt.subplots(
        figsize=(max(6.0, 0.45 * w.shape[1] + 2), 1.6 + 0.45 * shown.shape[0]), constrained_layout=True
    )
    im = ax.imshow(shown, aspect="auto", cmap="viridis", vmin=0.0)
    ax.set_xticks(range(w.shape[1]))
    ax.set_xticklabels(["cnn"] + [str(i) for i in range(1, w.shape[1])])
    ax.set_yticks(range(shown.shape[0]))
    ax.set_yticklabels(shown_labels)
    if w.shape[0] > 1:
        ax.axhline(w.shape[0] - 0.5, color="white", lw=2)
    ax.set_xlabel("hidden state (0 = CNN features, i = transformer layer i)")
    ax.axvline(rec["recommended_layers"] + 0.5, color="white", ls="--", lw=1)
    ax.set_title(
        f"{title}; keep N = {rec['recommended_layers']} ({100 * coverage:.0f} % of the mass)"
        + ("\nWARNING: near-uniform weights, N is not supported" if rec["near_uniform"] else ""),
        color="tab:red" if rec["near_uniform"] else "black",
    )
    for (i, j), v in np.ndenumerate(shown):
        ax.text(
            j,
            i,
            f"{v:.3f}",
            ha="center",
            va="center",
            fontsize=7,
            color="black" if v > 0.6 * shown.max() else "white",
        )
    fig.colorbar(im, ax=ax, shrink=0.8, label="weight (softmax)")
    fig.savefig(out / "layer_weights.png", dpi=120)
    plt.close(fig)
    lines = [
        f"# {title}",
        "",
        f"Rule: {rec['rule']} -> **N = {rec['recommended_layers']}** "
        f"(knee of the cumulative curve: {rec['knee_layers']}, top layer: {rec['top_layer']}).",
        "",
        *([f"**Warning:** {rec['warning']}.", ""] if rec["warning"] else []),
        "| hidden state | "
        + " | ".join(row_labels)
        + (" | mean | cumulative |" if w.shape[0] > 1 else " | cumulative |"),
        "|---|" + "---|" * (w.shape[0] + (2 if w.shape[0] > 1 else 1)),
    ]
    for j in range(w.shape[1]):
        cells = [f"{v:.4f}" for v in w[:, j]]
        if w.shape[0] > 1:
            cells.append(f"{rec['weights'][j]:.4f}")
        cells.append(f"{rec['cumulative'][j]:.4f}")
        lines.append(f"| {'cnn' if j == 0 else j} | " + " | ".join(cells) + " |")
    (out / "layer_weights.md").write_text("\n".join(lines) + "\n")
    payload = {**rec, "runs": {lab: [float(v) for v in row] for lab, row in zip(row_labels, w, strict=True)}}
    (out / "layer_weights.json").write_text(json.dumps(payload, indent=2) + "\n")
    payload["outputs"] = {k: str(out / f"layer_weights.{k}") for k in ("png", "md", "json")}
    return payload


def analyse_layers(
    run_config: Any = None,
    out_dir: str | Path = "layer-analysis",
    *,
    coverage: float = 0.9,
    checkpoints: Sequence[str | Path] = (),
    resume: bool = False,
) -> dict[str, Any]:
    """Train a layer-weighted detector over all layers (``run_config``) and/or read already trained
    checkpoints, then write the report and recommend N. Returns the report JSON.

    The run config's detector is forced to ``layers: null`` (all layers) and ``backend.name:
    layer-weighted``; other back-end settings are kept.
    """
    paths = [Path(c) for c in checkpoints]
    if run_config is not None:
        from spoof_train.train import train

        det = dict(run_config.model.detector)
        backend = dict(det.get("backend") or {})
        if backend.get("name") not in (None, "layer-weighted"):
            log.info("analyse-layers: replacing back-end %r by 'layer-weighted'", backend.get("name"))
            backend = {"config": {}}
        backend["name"] = "layer-weighted"
        backend.setdefault("config", {})
        det.update({"layers": None, "backend": backend})
        run_config.model.detector = det
        paths.append(train(run_config, resume=resume))
    if not paths:
        raise ConfigError("analyse-layers: expected a run config to train or at least one checkpoint")
    rows = []
    for p in paths:
        if not Path(p).is_dir():
            raise CheckpointError(f"analyse-layers: checkpoint {str(p)!r} is not a directory")
        rows.append(layer_weights_from_checkpoint(p))
    sizes = {r.size for r in rows}
    if len(sizes) != 1:
        raise ConfigError(
            f"analyse-layers: checkpoints have different numbers of hidden states {sorted(sizes)}"
        )
    labels = [Path(p).parent.parent.name if Path(p).name in ("best", "last") else Path(p).name for p in paths]
    report = write_layer_report(np.stack(rows), out_dir, coverage=coverage, labels=labels)
    report["checkpoints"] = [str(Path(p).resolve()) for p in paths]
    return report
