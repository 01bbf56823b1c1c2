"""The training loop of spoof_train: losses, optimisers, schedules, resumable checkpoints, logs, DDP.

Public entry points::

    best_dir = train(load_run_config("configs/smoke-cpu.yaml"))          # -> checkpoint dir (contract A)
    result = evaluate("runs/x/checkpoints/best", "MANIFEST.tsv", "dev")   # -> metrics dict

:func:`fit` is the model-agnostic core (any module that follows the detector contract
``forward(wave [B, T], lengths [B]) -> logits [B, 2]``, any dataset of the data contract's item dicts);
:func:`train` builds the detector and datasets from a :class:`~spoof_train.config.RunConfig` and calls it.

Output directory of a run::

    run_config.yaml        resolved config        checkpoints/last/  latest state (resume from here)
    steps.csv, epochs.csv  CSV logs               checkpoints/best/  best by the early-stopping monitor
    tensorboard/           TensorBoard events

Exact resume: a run killed after a checkpoint and resumed from ``checkpoints/last`` reproduces the
uninterrupted run bit for bit on the same machine (model, optimizer, scheduler, AMP scaler, the RNG states of
python / numpy / torch and the position inside the epoch's sample order are restored; the DataLoader uses its
own seeded generator so creating it does not touch the global RNG). With ``data.num_workers > 0`` this holds
when the dataset draws its randomness per item (the data contract's ``AudioDataset`` does).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import functools
import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spoof_train.config import RunConfig, TrainConfig, run_config_to_dict
from spoof_train.distributed import DistInfo, all_reduce_mean, barrier, broadcast_object, resolve_device
from spoof_train.errors import CheckpointError, ConfigError, DataError

if TYPE_CHECKING:
    import torch

__all__ = [
    "OCSoftmaxLoss",
    "StepState",
    "build_criterion",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "fit",
    "get_rng_state",
    "score_utterances",
    "set_rng_state",
    "set_seed",
    "train",
]

log = logging.getLogger("spoof_train")

LABELS = ("bonafide", "spoof")
TRAINER_STATE = "trainer_state.pt"


# ----------------------------------------------------------------------------------------------------
# Seeds and RNG state (stored as plain tensors / ints so trainer_state.pt loads with weights_only=True)


def set_seed(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the legacy global RNG is what user code draws from)
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    import torch

    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(_tuplify(state["python"]))
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------------
# Losses


def _final_linear(model: torch.nn.Module) -> torch.nn.Linear:
    import torch

    last = None
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and m.out_features == 2:
            last = m
    if last is None:
        raise ConfigError(
            "train.loss=ocsoftmax: the model has no final nn.Linear(_, 2) classification layer to "
            "take the embedding and the one-class direction from"
        )
    return last


class OCSoftmaxLoss:
    """One-class softmax (Zhang, Jiang, Li, IEEE SPL 2021, "One-class learning towards synthetic voice
    spoofing detection").

    ``L = mean log(1 + exp(alpha * (m_y - cos(w, x)) * (-1)^y))`` with ``y = 0`` bona fide, ``1`` spoof:
    bona fide embeddings are pulled to within angle ``arccos(m_real)`` of the direction ``w``, spoofs pushed
    beyond ``arccos(m_fake)``. Here ``x`` is the embedding that enters the detector's final
    ``Linear(D, 2)`` layer (captured by a forward hook, so any detector of the contract works) and ``w`` is
    tied to that layer, ``w = W[bonafide] - W[spoof]``, so no extra parameter lives outside the checkpoint.
    The contract score is then ``logit_bf - logit_spoof = |w| |x| cos(w, x) + b``: it has the sign of the OC
    decision ``cos > 0`` up to the constant ``b`` and is monotone in ``cos`` only when ``|x|`` is constant
    (heads whose embedding is normalised). Dev EER during training and ``evaluate`` use that contract score,
    because it is what the exported model outputs; :meth:`cosine_scores` gives the pure OC score.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        margin_real: float = 0.9,
        margin_fake: float = 0.2,
        alpha: float = 20.0,
    ) -> None:
        self.layer = _final_linear(model)
        self.margin_real = margin_real
        self.margin_fake = margin_fake
        self.alpha = alpha
        self._emb: torch.Tensor | None = None
        self._hook = self.layer.register_forward_hook(self._capture)

    def _capture(self, _module: Any, inputs: tuple[Any, ...], _output: Any) -> None:
        self._emb = inputs[0]

    def remove(self) -> None:
        self._hook.remove()

    def cosine_scores(self) -> torch.Tensor:
        """cos(w, x) of the last forward pass (call after the model's forward)."""
        import torch.nn.functional as F

        if self._emb is None:
            raise RuntimeError("OCSoftmaxLoss: no embedding captured; run the model forward first")
        w = self.layer.weight[0] - self.layer.weight[1]
        return F.cosine_similarity(self._emb.float(), w.float().unsqueeze(0), dim=-1)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        del logits  # the OC score comes from the captured embedding
        cos = self.cosine_scores()
        margin = torch.where(labels == 0, self.margin_real, self.margin_fake).to(cos.dtype)
        sign = torch.where(labels == 0, 1.0, -1.0).to(cos.dtype)
        self._emb = None
        return F.softplus(self.alpha * (margin - cos) * sign).mean()


def mixup(
    wave: torch.Tensor,
    lengths: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """Mixup (Zhang et al., ICLR 2018) of a batch of waveforms: each row becomes ``lam x_i + (1 - lam) x_j``
    with ``j`` a random permutation of the batch and ``lam ~ Beta(alpha, alpha)`` (one per batch, from the
    torch RNG, so resume stays exact); the valid length is the longer of the two. Returns the mixed batch,
    its lengths and the loss ``lam L(logits, y_i) + (1 - lam) L(logits, y_j)`` (a bona fide + spoof mix is
    trained towards the soft label of its proportions)."""
    import torch

    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(len(labels), device=labels.device)
    mixed = lam * wave + (1.0 - lam) * wave[perm]
    other = labels[perm]

    def loss_of(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return lam * criterion(logits, y) + (1.0 - lam) * criterion(logits, other)

    return mixed, torch.maximum(lengths, lengths[perm]), loss_of


class SharpnessAware:
    """Sharpness-aware minimisation around any optimiser (SAM: Foret et al., ICLR 2021; ``adaptive`` =
    ASAM: Kwon et al., ICML 2021), for flat minima that generalise better to conditions unseen in training.

    Each optimiser step takes two gradients of the same batch: after the usual backward, :meth:`ascend`
    moves the weights to ``w + e`` with ``e = rho g / |g|`` (ASAM: ``e = rho T^2 g / |T g|``,
    ``T = |w| + eta`` elementwise, so the radius is relative to each weight's size); the caller runs the
    forward and backward again there (under :func:`frozen_norm_stats`, so the batch norm running
    statistics see the batch once) and calls :meth:`descend`, which puts the weights back; the optimiser
    then steps from ``w`` with the gradient taken at ``w + e``. No state lives between steps, so resume
    stays exact.
    """

    def __init__(self, model: torch.nn.Module, rho: float, adaptive: bool = False, eta: float = 0.01) -> None:
        self.model = model
        self.rho = float(rho)
        self.adaptive = bool(adaptive)
        self.eta = float(eta)
        self._moved: list[tuple[torch.nn.Parameter, torch.Tensor]] = []

    def ascend(self) -> bool:
        """Move to ``w + e``; False (nothing moved) when no parameter has a finite, non-zero gradient."""
        import torch

        if self._moved:
            raise RuntimeError("SharpnessAware.ascend: already at w + e; call descend() first")
        params = [p for p in self.model.parameters() if p.grad is not None]
        if not params:
            return False
        with torch.no_grad():
            scale = [(p.abs() + self.eta if self.adaptive else None) for p in params]
            scaled = [p.grad if t is None else t * p.grad for p, t in zip(params, scale, strict=True)]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in scaled]))
            if not bool(torch.isfinite(norm)) or float(norm) == 0.0:
                return False
            for p, t, g in zip(params, scale, scaled, strict=True):
                self._moved.append((p, p.detach().clone()))
                p.add_((g if t is None else t * g) * (self.rho / norm))
        return True

    def descend(self) -> None:
        """Back to exactly ``w`` (the gradients now in ``.grad`` are the ones taken at ``w + e``)."""
        import torch

        with torch.no_grad():
            for p, w in self._moved:
                p.copy_(w)  # the saved weights, not w + e - e: no rounding drift over many steps
        self._moved = []

    def take_perturbed_gradient(self, loss_fn: Callable[[], torch.Tensor]) -> bool:
        """The whole SAM half-step, to call after the usual backward and before the optimiser step:
        :meth:`ascend`, zero the gradients, ``loss_fn().backward()`` at ``w + e`` under
        :func:`frozen_norm_stats`, :meth:`descend`. ``loss_fn`` recomputes the same batch's loss. False
        (gradients untouched) when there was no gradient to move along."""
        if not self.ascend():
            return False
        self.model.zero_grad(set_to_none=True)
        try:
            with frozen_norm_stats(self.model):
                loss_fn().backward()
        finally:
            self.descend()
        return True


@contextlib.contextmanager
def frozen_norm_stats(model: torch.nn.Module) -> Iterator[None]:
    """Batch norm layers normalise with the batch as usual but leave their running statistics (and
    ``num_batches_tracked``) as they were: for a second forward pass of the same batch (SAM)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    saved = []
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            tracked = None if m.num_batches_tracked is None else m.num_batches_tracked.clone()
            saved.append((m, m.momentum, tracked))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


class WeightAverage:
    """Exponential moving average of a model's weights (Polyak averaging, as timm's ``ModelEmaV3``).

    After the n-th optimizer step (n = 0, 1, ...) ``avg = d * avg + (1 - d) * w`` with
    ``d = min(decay, (1 + n) / (10 + n))``: the warm-up keeps the early average from being dominated by the
    random initial weights. Floating-point parameters and buffers (BatchNorm running statistics) are
    averaged; integer buffers (``num_batches_tracked``) are copied. ``module`` is a frozen copy in eval mode.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"weight average: expected a decay in (0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def rate(self, n: int) -> float:
        """The decay applied at the n-th update (0-based)."""
        return min(self.decay, (1.0 + n) / (10.0 + n))

    def update(self, model: torch.nn.Module, n: int) -> None:
        import torch

        d = self.rate(n)
        src = model.state_dict()
        with torch.no_grad():
            for key, avg in self.module.state_dict().items():  # tensors share the module's storage
                new = src[key].detach()
                if avg.is_floating_point():
                    avg.lerp_(new.to(avg.dtype), 1.0 - d)
                else:
                    avg.copy_(new)


def _class_weights(spec: Any, labels: Sequence[int]) -> list[float] | None:
    if spec is None:
        return None
    if spec == "balanced":
        counts = [sum(1 for y in labels if y == c) for c in (0, 1)]
        if min(counts) == 0:
            raise DataError(
                f"class_weights=balanced: the training split needs both classes, got bonafide="
                f"{counts[0]}, spoof={counts[1]}"
            )
        total = sum(counts)
        return [total / (2.0 * c) for c in counts]
    return [float(w) for w in spec]


def build_criterion(cfg: TrainConfig, model: torch.nn.Module, train_labels: Sequence[int]) -> Any:
    """Weighted cross-entropy (``class_weights``: balanced = inverse class frequency) or OC-Softmax."""
    import torch

    if cfg.loss == "ocsoftmax":
        return OCSoftmaxLoss(
            model, margin_real=cfg.oc_margin_real, margin_fake=cfg.oc_margin_fake, alpha=cfg.oc_alpha
        )
    weights = _class_weights(cfg.class_weights, train_labels)
    device = next(model.parameters()).device
    weight_t = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
    return torch.nn.CrossEntropyLoss(weight=weight_t)


# ----------------------------------------------------------------------------------------------------
# Optimiser and schedules


def _param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    has_groups = callable(getattr(model, "backbone_parameters", None)) and callable(
        getattr(model, "head_parameters", None)
    )
    if not has_groups:
        return [{"params": list(model.parameters()), "lr": cfg.lr, "name": "all"}]
    backbone = list(model.backbone_parameters())  # type: ignore[operator]
    head = list(model.head_parameters())  # type: ignore[operator]
    seen = {id(p) for p in backbone} | {id(p) for p in head}
    rest = [p for p in model.parameters() if id(p) not in seen]
    groups = [{"params": head + rest, "lr": cfg.lr, "name": "head"}]
    if backbone:
        groups.append(
            {
                "params": backbone,
                "lr": cfg.lr if cfg.backbone_lr is None else cfg.backbone_lr,
                "name": "backbone",
            }
        )
    return groups


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over per-group learning rates (head ``lr``, SSL backbone ``backbone_lr``)."""
    import torch

    groups = _param_groups(model, cfg)
    kwargs = {"betas": tuple(cfg.betas), "eps": cfg.eps, "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, **kwargs)
    return torch.optim.AdamW(groups, **kwargs)


def lr_factor(step: int, cfg: TrainConfig, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate after ``step`` optimizer steps (cosine / step / constant)."""
    s = cfg.scheduler
    if s.warmup_steps and step < s.warmup_steps:
        return (step + 1) / s.warmup_steps
    if s.name == "cosine":
        span = max(1, total_steps - s.warmup_steps)
        progress = min(1.0, (step - s.warmup_steps) / span)
        return s.min_lr_ratio + (1.0 - s.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if s.name == "step":
        epoch = step // max(1, steps_per_epoch)
        return float(s.gamma ** (epoch // s.step_epochs))
    return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int, steps_per_epoch: int
) -> Any:
    """A per-optimizer-step LambdaLR (cosine/step/constant) or a per-evaluation ReduceLROnPlateau."""
    import torch

    if cfg.scheduler.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.scheduler.factor, patience=cfg.scheduler.patience
        )
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, cfg, total_steps, steps_per_epoch)
    )


def _amp_dtype(mode: str, device: torch.device) -> Any:
    """Autocast dtype or None. ``auto``: bf16 (or fp16 + GradScaler) on CUDA, off on CPU."""
    import torch

    if mode == "off":
        return None
    if device.type == "cuda":
        if mode == "fp16":
            return torch.float16
        if mode == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        raise ConfigError("train.amp: fp16 autocast needs a CUDA device; use bf16 or off on CPU")
    return None


# ----------------------------------------------------------------------------------------------------
# Scoring (full-length, chunked)


def score_utterances(
    model: torch.nn.Module,
    dataset: Any,
    *,
    batch_size: int = 16,
    device: Any = "cpu",
    amp_dtype: Any = None,
    progress: bool = False,
    desc: str = "score",
    min_samples: int = 0,
) -> list[dict[str, Any]]:
    """Score whole utterances with the detector contract's score ``logit_bf - logit_spoof``.

    ``dataset`` items are either chunked (``{"windows": [N, W], "lengths": [N], ...}``, the data package's
    :class:`~spoof_train.data.ChunkedEvalDataset`: an utterance's score is the mean over its windows) or
    plain (``{"wave": [T], ...}``: one window of the whole clip). Windows of many utterances are batched
    up to ``batch_size`` at a time, only windows of the same length together (as the SDK batches: no
    window is zero-padded, so a clip's score does not depend on its batch); ``None`` items (files skipped
    by ``on_error="skip"``) are left out, and so is a clip whose window is shorter than ``min_samples``
    (the SDK refuses such clips).
    Returns one dict per scored item: ``id``, ``label`` (int), ``attack``, ``score``.
    """
    import torch
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    results: list[dict[str, Any]] = []
    # windows waiting for a forward pass, by length: only windows of one length share a batch, as in the
    # SDK, so no window is ever zero-padded (a padding mask does not make every model padding-invariant)
    pending: dict[int, list[tuple[int, torch.Tensor, int]]] = {}  # length -> (result index, window, length)
    sums: list[float] = []
    counts: list[int] = []
    too_short = 0
    dev_type = torch.device(device).type

    def run(batch: list[tuple[int, torch.Tensor, int]]) -> None:
        lengths = torch.tensor([n for _, _, n in batch], dtype=torch.long)
        wave = torch.zeros(len(batch), max(int(w.shape[-1]) for _, w, _ in batch))
        for i, (_, w, _) in enumerate(batch):
            wave[i, : w.shape[-1]] = w
        ctx = torch.autocast(device_type=dev_type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            logits = model(wave.to(device), lengths.to(device)).float().cpu()
        for (idx, _, _), d in zip(batch, (logits[:, 0] - logits[:, 1]).tolist(), strict=True):
            sums[idx] += d
            counts[idx] += 1

    try:
        for i in tqdm(range(len(dataset)), desc=desc, file=sys.stderr, disable=not progress, leave=False):
            item = dataset[i]
            if item is None:  # skipped by on_error="skip"
                continue
            if "windows" in item:
                windows = [
                    (w[:n], int(n)) for w, n in zip(item["windows"], item["lengths"].tolist(), strict=True)
                ]
            else:
                windows = [(item["wave"], int(item["wave"].shape[-1]))]
            if min(n for _, n in windows) < min_samples:
                too_short += 1
                continue
            idx = len(results)
            results.append({"id": item["id"], "label": int(item["label"]), "attack": item.get("attack", "-")})
            sums.append(0.0)
            counts.append(0)
            for w, n in windows:
                group = pending.setdefault(int(n), [])
                group.append((idx, w, int(n)))
                if len(group) >= batch_size:
                    run(pending.pop(int(n)))
            if sum(len(g) for g in pending.values()) >= 4 * batch_size:  # many lengths: bound the memory
                for key in list(pending):
                    run(pending.pop(key))
        for key in list(pending):
            run(pending.pop(key))
    finally:
        model.train(was_training)
    if too_short:
        log.warning(
            "%s: left out %d clip(s) shorter than the model's %d samples", desc, too_short, min_samples
        )
    for r, total, c in zip(results, sums, counts, strict=True):
        r["score"] = total / c
    return results


#: ``chunk_seconds`` / ``data.eval_chunk_seconds`` value that scores as the SDK does (the default).
MODEL_WINDOW = "model"


def eval_scoring(
    chunk_seconds: float | str | None,
    *,
    sample_rate: int,
    window_samples: int,
    hop_samples: int,
) -> dict[str, Any]:
    """How full-length evaluation scores a clip, as recorded in every metrics file.

    ``"model"`` (the default of training's dev evaluation, ``evaluate`` and the export report): the
    checkpoint's ``window_samples`` every ``hop_samples``, a last window aligned to the end when the hop
    grid leaves a tail, a clip shorter than a window scored as one window of its own length, the clip score
    the mean of its window logit differences: what ``spoofsdk.Detector.score`` does (aggregate ``mean``,
    speech gate off). A number is an explicit override (windows of that many seconds, hop = window,
    shorter clips repeat-padded to one window); ``None`` scores each clip whole in one forward pass.
    """
    if chunk_seconds == MODEL_WINDOW:
        w, h, short, source = window_samples, hop_samples, "own length", "checkpoint"
    elif chunk_seconds is None:
        return {
            "window_samples": None,
            "hop_samples": None,
            "window_s": None,
            "hop_s": None,
            "aggregate": "none (each clip whole, one forward pass)",
            "short_clips": "own length",
            "source": "override: whole clips",
        }
    elif isinstance(chunk_seconds, str) or not chunk_seconds > 0:
        raise ConfigError(
            f"chunk_seconds: expected {MODEL_WINDOW!r} (the checkpoint's window and hop), seconds > 0 or "
            f"null (whole clips), got {chunk_seconds!r}"
        )
    else:
        w = round(float(chunk_seconds) * sample_rate)
        h, short, source = w, "repeat-padded to one window", f"override: chunk_seconds={chunk_seconds:g}"
    return {
        "window_samples": int(w),
        "hop_samples": int(h),
        "window_s": w / sample_rate,
        "hop_s": h / sample_rate,
        "aggregate": "mean",
        "short_clips": short,
        "source": source,
    }


def eval_dataset(
    rows: Sequence[Any], *, sample_rate: int, scoring: dict[str, Any], on_error: str, cache: Any = None
) -> Any:
    """Full-length evaluation data cut as ``scoring`` (an :func:`eval_scoring` dict) says: windows of
    ``window_samples`` every ``hop_samples`` (last window aligned to the end), or each clip whole."""
    from spoof_train.data import AudioDataset, ChunkedEvalDataset

    if scoring["window_samples"] is None:
        return AudioDataset(
            rows, sample_rate=sample_rate, crop_samples=None, train=False, on_error=on_error, cache=cache
        )
    return ChunkedEvalDataset(
        rows,
        window_samples=scoring["window_samples"],
        hop_samples=scoring["hop_samples"],
        sample_rate=sample_rate,
        short="none" if scoring["short_clips"] == "own length" else "repeat",
        on_error=on_error,
        cache=cache,
    )


def _eer_of(results: list[dict[str, Any]]) -> tuple[float, float]:
    from spoof_train.metrics import compute_eer

    bf = np.array([r["score"] for r in results if r["label"] == 0], dtype=np.float64)
    sp = np.array([r["score"] for r in results if r["label"] == 1], dtype=np.float64)
    eer, thr = compute_eer(bf, sp)
    return float(eer), float(thr)


# ----------------------------------------------------------------------------------------------------
# The loop


@dataclasses.dataclass
class StepState:
    """Position of the run; stored in ``trainer_state.pt``."""

    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of ``epoch`` already consumed
    global_step: int = 0  # optimizer steps
    best_metric: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    finished: bool = False
    epoch_loss_sum: float = 0.0  # running training loss of the current epoch (so resume logs the same mean)
    epoch_loss_n: int = 0


class _SkipSampler:
    """Wraps a sampler and skips its first ``skip`` indices (resume inside an epoch)."""

    def __init__(self, sampler: Any, skip: int) -> None:
        self.sampler = sampler
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        for i, idx in enumerate(self.sampler):
            if i >= self.skip:
                yield idx

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


def _seed_worker(worker_id: int) -> None:
    import torch

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002
    random.seed(seed)


class _CsvLog:
    def __init__(self, path: Path, fields: list[str]) -> None:
        self.path = path
        self.fields = fields
        if not path.exists():
            with path.open("w", newline="") as f:
                csv.writer(f).writerow(fields)

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow(["" if row.get(k) is None else row.get(k) for k in self.fields])


def _truncate_csv(path: Path, key: str, max_value: int) -> None:
    """On resume, drop log rows written after the checkpoint (they will be written again)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    col = rows[0].index(key)
    kept = [rows[0]] + [r for r in rows[1:] if r[col] != "" and int(float(r[col])) <= max_value]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(kept)


def _sync_buffers(model: torch.nn.Module, dist: DistInfo) -> None:
    """Broadcast rank 0's buffers (e.g. BatchNorm running statistics, which each rank updates locally in its
    last forward) so that every rank ends an epoch with identical state."""
    if not dist.enabled:
        return
    import torch.distributed as tdist

    for buf in _unwrap(model).buffers():
        tdist.broadcast(buf.data, src=0)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def _labels_of(dataset: Any) -> list[int]:
    rows = getattr(dataset, "rows", None)
    if rows is not None:
        return [LABELS.index(r.label) if isinstance(r.label, str) else int(r.label) for r in rows]
    return [int(dataset[i]["label"]) for i in range(len(dataset))]


def save_training_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    detector_config: Any,
    training_info: dict[str, Any],
    trainer_state: dict[str, Any] | None,
) -> None:
    """Contract-A checkpoint (atomic) through the models helper's ``save_checkpoint``."""
    from spoof_train.checkpoint import save_checkpoint

    save_checkpoint(directory, _unwrap(model), detector_config, training_info, optimizer_state=trainer_state)


def load_trainer_state(directory: Path) -> dict[str, Any]:
    """Trainer state of a ``checkpoints/last`` directory (``weights_only=True``), its keys checked."""
    from spoof_train.checkpoint import load_trainer_state as _load

    state = _load(directory)
    if state is None:
        raise CheckpointError(
            f"resume: expected {TRAINER_STATE} in {str(directory)!r} (a checkpoint written by train() "
            "with its trainer state), it is missing"
        )
    for key in ("optimizer", "scheduler", "rng", "step_state"):
        if key not in state:
            raise CheckpointError(
                f"resume: {str(Path(directory) / TRAINER_STATE)!r} lacks {key!r}; expected keys optimizer, "
                f"scheduler, rng, step_state; got {sorted(state)}"
            )
    return state


def fit(
    model: torch.nn.Module,
    train_set: Any,
    dev_set: Any | None,
    cfg: RunConfig,
    *,
    detector_config: Any,
    collate_fn: Callable[[list[Any]], dict[str, Any]],
    out_dir: Path,
    resume: bool = False,
    dist: DistInfo | None = None,
    on_step: Callable[[StepState], None] | None = None,
    training_info: dict[str, Any] | None = None,
) -> Path:
    """Train ``model`` and return the directory of the best checkpoint (``checkpoints/best``).

    ``on_step`` is called after every optimizer step (after any checkpoint of that step); an exception it
    raises aborts the run like a crash would (tests use it to kill a run and resume it).
    """
    import torch
    from torch.utils.data import DataLoader, DistributedSampler
    from tqdm import tqdm

    dist = dist or DistInfo()
    tcfg = cfg.train
    device = resolve_device(cfg.device, dist)
    out_dir = Path(out_dir)
    ckpt_last = out_dir / "checkpoints" / "last"
    ckpt_best = out_dir / "checkpoints" / "best"
    if len(train_set) == 0:
        raise DataError(f"data.train_split={cfg.data.train_split!r}: the training split is empty")
    if tcfg.early_stopping.monitor == "dev_eer" and (dev_set is None or len(dev_set) == 0):
        raise DataError(
            f"train.early_stopping.monitor=dev_eer but the dev split {cfg.data.dev_split!r} is empty"
        )

    set_seed(cfg.seed)
    if tcfg.deterministic:
        torch.use_deterministic_algorithms(True)
    model.to(device)
    # the average is copied before the criterion exists (OC-Softmax hooks the model's last layer)
    ema = WeightAverage(model, tcfg.ema_decay) if tcfg.ema_decay is not None else None
    train_labels = _labels_of(train_set)
    criterion = build_criterion(tcfg, model, train_labels)
    optimizer = build_optimizer(model, tcfg)
    sampler = DistributedSampler(
        train_set, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=cfg.seed, drop_last=False
    )
    micro_per_epoch = math.ceil(len(sampler) / cfg.data.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / tcfg.grad_accum_steps)
    total_steps = steps_per_epoch * tcfg.epochs
    if tcfg.max_steps is not None:
        total_steps = min(total_steps, tcfg.max_steps)
    scheduler = build_scheduler(optimizer, tcfg, total_steps, steps_per_epoch)
    amp_dtype = _amp_dtype(tcfg.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    if tcfg.sam_rho is not None and scaler.is_enabled():
        raise ConfigError("train.sam_rho: SAM is not supported with fp16 AMP (use amp bf16 or off)")
    sam = SharpnessAware(model, tcfg.sam_rho, tcfg.sam_adaptive) if tcfg.sam_rho is not None else None

    def batch_loss(
        net: Any, loss_of: Any, wave: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Forward of one batch through ``net`` (under autocast when AMP is on) and its loss."""
        amp = (
            torch.autocast(device_type=device.type, dtype=amp_dtype)
            if amp_dtype
            else contextlib.nullcontext()
        )
        with amp:
            return loss_of(net(wave, lengths).float(), labels)  # type: ignore[no-any-return]

    st = StepState()

    if resume and (ckpt_last / TRAINER_STATE).is_file():
        from spoof_train.checkpoint import load_checkpoint

        loaded, _, _ = load_checkpoint(ckpt_last, map_location="cpu")
        model.load_state_dict(loaded.state_dict())
        state = load_trainer_state(ckpt_last)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        st = StepState(**state["step_state"])
        if ema is not None:
            if "ema" not in state:
                raise CheckpointError(
                    f"resume: train.ema_decay is set but {str(ckpt_last / TRAINER_STATE)!r} holds no weight "
                    "average (the run was started without ema_decay); resume with the run's original config"
                )
            ema.module.load_state_dict(state["ema"])
        rng = state["rng"]
        if dist.enabled and "rng_per_rank" in state and dist.rank < len(state["rng_per_rank"]):
            rng = state["rng_per_rank"][dist.rank]
        set_rng_state(rng)
        if dist.is_main:
            _truncate_csv(out_dir / "steps.csv", "step", st.global_step)
            _truncate_csv(out_dir / "epochs.csv", "epoch", st.epoch)
        log.info(
            "resumed from %s at epoch %d, batch %d, step %d",
            ckpt_last,
            st.epoch,
            st.batch_in_epoch,
            st.global_step,
        )
    elif resume:
        log.info("resume requested but %s has no trainer state: starting from scratch", ckpt_last)

    if st.finished:
        log.info("run already finished; best checkpoint %s", ckpt_best)
        return ckpt_best

    info = dict(training_info or {})
    info.update({"seed": cfg.seed, "run_name": cfg.name, "loss": tcfg.loss, "train_items": len(train_set)})
    steps_log = epochs_log = writer = None
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        import yaml

        (out_dir / "run_config.yaml").write_text(yaml.safe_dump(run_config_to_dict(cfg), sort_keys=False))
        steps_log = _CsvLog(out_dir / "steps.csv", ["step", "epoch", "lr", "loss", "items_per_s"])
        epochs_log = _CsvLog(
            out_dir / "epochs.csv",
            ["epoch", "step", "train_loss", "dev_eer", "dev_threshold", "lr", "seconds", "backbone_frozen"],
        )
        if tcfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"), purge_step=st.global_step or None)

    def gather_rng() -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
        mine = get_rng_state()
        if not dist.enabled:
            return mine, None
        import torch.distributed as tdist

        allr: list[Any] = [None] * dist.world_size
        tdist.all_gather_object(allr, mine)
        return mine, allr

    def checkpoint(directory: Path, *, with_state: bool, metrics: dict[str, Any] | None = None) -> None:
        rng, per_rank = gather_rng() if with_state else (None, None)
        if not dist.is_main:
            return
        trainer_state = None
        if with_state:
            trainer_state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng,
                "step_state": dataclasses.asdict(st),
            }
            if per_rank is not None:
                trainer_state["rng_per_rank"] = per_rank
            if ema is not None:
                trainer_state["ema"] = ema.module.state_dict()
        ti = dict(info)
        ti.update({"epoch": st.epoch, "global_step": st.global_step})
        if metrics:
            ti.update(metrics)
        weights = model
        if ema is not None:
            # best = the evaluated average; last = the raw weights (the average rides in the trainer state)
            weights = model if with_state else ema.module
            ti.update({"ema_decay": ema.decay, "weights": "raw" if with_state else "ema"})
        save_training_checkpoint(directory, weights, detector_config, ti, trainer_state)

    current_frozen: bool | None = None
    ddp_model: torch.nn.Module = model
    stop = False
    bar = None

    try:
        while st.epoch < tcfg.epochs and not stop:
            epoch = st.epoch
            t_epoch = time.perf_counter()
            frozen = epoch < tcfg.freeze_backbone_epochs
            if frozen != current_frozen:
                backbone = getattr(model, "backbone_parameters", None)
                if tcfg.freeze_backbone_epochs and not (callable(backbone) and list(backbone())):
                    raise ConfigError(
                        "train.freeze_backbone_epochs > 0 needs a model with a backbone to freeze (an SSL "
                        f"detector with freeze_backbone()); this {type(model).__name__} has none"
                    )
                if hasattr(model, "freeze_backbone"):
                    model.freeze_backbone(frozen)  # type: ignore[operator]
                current_frozen = frozen
                if dist.enabled:
                    from torch.nn.parallel import DistributedDataParallel as DDP

                    ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
                else:
                    ddp_model = model
            sampler.set_epoch(epoch)
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)
            gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
            skip = st.batch_in_epoch * cfg.data.batch_size
            loader = DataLoader(
                train_set,
                batch_size=cfg.data.batch_size,
                sampler=_SkipSampler(sampler, skip),
                collate_fn=collate_fn,
                num_workers=cfg.data.num_workers,
                generator=gen,
                worker_init_fn=_seed_worker if cfg.data.num_workers else None,
                drop_last=False,
            )
            ddp_model.train()
            loss_sum, loss_n = (st.epoch_loss_sum, st.epoch_loss_n) if st.batch_in_epoch else (0.0, 0)
            loss_value = float("nan")
            micro = st.batch_in_epoch
            bar = tqdm(
                total=micro_per_epoch,
                initial=micro,
                desc=f"epoch {epoch + 1}/{tcfg.epochs}",
                file=sys.stderr,
                disable=not (tcfg.progress and dist.is_main),
                dynamic_ncols=True,
            )
            t_log, items_log = time.perf_counter(), 0
            for batch in loader:
                micro += 1
                boundary = micro % tcfg.grad_accum_steps == 0 or micro == micro_per_epoch
                labels = batch["label"].to(device)
                if len(labels) == 0:  # every file of the batch was skipped (on_error="skip"): no forward
                    log.warning("epoch %d: an empty batch (all files skipped)", epoch + 1)
                else:
                    wave = batch["wave"].to(device, non_blocking=True)
                    lengths = batch["lengths"].to(device)
                    loss_of = criterion
                    if tcfg.mixup_alpha is not None and len(labels) > 1:
                        wave, lengths, loss_of = mixup(wave, lengths, labels, tcfg.mixup_alpha, criterion)
                    sync = (
                        contextlib.nullcontext() if boundary or not dist.enabled else ddp_model.no_sync()  # type: ignore[operator]
                    )
                    with sync:
                        loss = batch_loss(ddp_model, loss_of, wave, lengths, labels)
                        if not torch.isfinite(loss):
                            raise FloatingPointError(
                                f"non-finite training loss {loss.item()} at epoch {epoch + 1}, "
                                f"step {st.global_step}; lower train.lr or disable AMP"
                            )
                        full = (micro_per_epoch // tcfg.grad_accum_steps) * tcfg.grad_accum_steps
                        group = tcfg.grad_accum_steps if micro <= full else micro_per_epoch - full
                        scaler.scale(loss / group).backward()
                    loss_value = float(loss.detach())
                    loss_sum += loss_value * len(labels)
                    loss_n += len(labels)
                    items_log += len(labels)
                bar.update(1)
                if not boundary:
                    continue
                if sam is not None and len(labels):
                    # the second gradient of the same batch, at w + e (grad_accum_steps is 1 with SAM)
                    sam.take_perturbed_gradient(
                        functools.partial(batch_loss, ddp_model, loss_of, wave, lengths, labels)
                    )
                if tcfg.grad_clip_norm is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip_norm)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                if tcfg.scheduler.name != "plateau":
                    scheduler.step()
                if ema is not None:
                    ema.update(_unwrap(model), st.global_step)
                st.global_step += 1
                st.batch_in_epoch = micro
                st.epoch_loss_sum, st.epoch_loss_n = loss_sum, loss_n
                lr = optimizer.param_groups[0]["lr"]
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
                if dist.is_main and st.global_step % tcfg.log_every_steps == 0:
                    rate = items_log * dist.world_size / max(1e-9, time.perf_counter() - t_log)
                    assert steps_log is not None
                    steps_log.write(
                        {
                            "step": st.global_step,
                            "epoch": epoch + 1,
                            "lr": f"{lr:.6g}",
                            "loss": f"{loss_value:.6f}",
                            "items_per_s": f"{rate:.2f}",
                        }
                    )
                    if writer is not None:
                        writer.add_scalar("train/loss", loss_value, st.global_step)
                        writer.add_scalar("train/lr", lr, st.global_step)
                    t_log, items_log = time.perf_counter(), 0
                if (
                    tcfg.checkpoint_every_steps
                    and st.global_step % tcfg.checkpoint_every_steps == 0
                    and (micro < micro_per_epoch)
                ):
                    checkpoint(ckpt_last, with_state=True)
                if on_step is not None:
                    on_step(st)
                if tcfg.max_steps is not None and st.global_step >= tcfg.max_steps:
                    stop = True
                    break
            bar.close()
            bar = None
            epoch_done = micro >= micro_per_epoch
            train_loss = all_reduce_mean(loss_sum / max(1, loss_n), dist)
            # BatchNorm running statistics: every rank takes rank 0's (DDP's convention)
            _sync_buffers(model, dist)

            # ---- end of epoch (or of max_steps): evaluate, early stop, checkpoint
            metrics: dict[str, Any] = {"train_loss": train_loss}
            evaluate_now = (
                dev_set is not None
                and len(dev_set) > 0
                and ((epoch + 1) % tcfg.eval_every_epochs == 0 or stop or epoch + 1 == tcfg.epochs)
            )
            if evaluate_now and dist.is_main:
                res = score_utterances(
                    ema.module if ema is not None else _unwrap(model),
                    dev_set,
                    batch_size=cfg.data.eval_batch_size,
                    device=device,
                    amp_dtype=amp_dtype,
                    progress=tcfg.progress,
                    desc="dev",
                    min_samples=int(getattr(_unwrap(model), "min_samples", 0) or 0),
                )
                eer, thr = _eer_of(res)
                metrics.update({"dev_eer": eer, "dev_threshold": thr})
            metrics = broadcast_object(metrics, dist)
            monitor = tcfg.early_stopping.monitor
            value = (
                metrics.get("dev_eer")
                if monitor == "dev_eer"
                else (train_loss if monitor == "train_loss" else metrics.get("dev_eer"))
            )
            improved = False
            if value is not None:
                if st.best_metric is None or value < st.best_metric - tcfg.early_stopping.min_delta:
                    st.best_metric, st.best_epoch, st.bad_epochs, improved = float(value), epoch + 1, 0, True
                elif monitor != "none":
                    st.bad_epochs += 1
                if tcfg.scheduler.name == "plateau":
                    scheduler.step(value)
            elif st.best_metric is None:
                improved = True  # nothing to compare against: the latest is the best
            if monitor != "none" and st.bad_epochs > tcfg.early_stopping.patience:
                st.stopped_early = stop = True
                log.info(
                    "early stopping at epoch %d: %s did not improve for %d epochs (best %.6g at epoch %s)",
                    epoch + 1,
                    monitor,
                    st.bad_epochs,
                    st.best_metric or float("nan"),
                    st.best_epoch,
                )
            seconds = time.perf_counter() - t_epoch
            if dist.is_main:
                assert epochs_log is not None
                epochs_log.write(
                    {
                        "epoch": epoch + 1,
                        "step": st.global_step,
                        "train_loss": f"{train_loss:.6f}",
                        "dev_eer": metrics.get("dev_eer"),
                        "dev_threshold": metrics.get("dev_threshold"),
                        "lr": f"{optimizer.param_groups[0]['lr']:.6g}",
                        "seconds": f"{seconds:.1f}",
                        "backbone_frozen": int(bool(current_frozen)),
                    }
                )
                if writer is not None:
                    writer.add_scalar("epoch/train_loss", train_loss, st.global_step)
                    if "dev_eer" in metrics:
                        writer.add_scalar("dev/eer", metrics["dev_eer"], st.global_step)
                    writer.flush()
                log.info(
                    "epoch %d: train_loss %.4f dev_eer %s (%.1f s)",
                    epoch + 1,
                    train_loss,
                    metrics.get("dev_eer"),
                    seconds,
                )
            if epoch_done:
                st.epoch, st.batch_in_epoch, st.epoch_loss_sum, st.epoch_loss_n = epoch + 1, 0, 0.0, 0
            if st.epoch >= tcfg.epochs or stop:
                st.finished = True
            best_metrics = {k: v for k, v in metrics.items() if v is not None}
            if improved:
                checkpoint(ckpt_best, with_state=False, metrics={**best_metrics, "best_epoch": epoch + 1})
            checkpoint(ckpt_last, with_state=True, metrics=best_metrics)
            barrier(dist)
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        if isinstance(criterion, OCSoftmaxLoss):
            criterion.remove()
    return ckpt_best


# ----------------------------------------------------------------------------------------------------
# Building a run from a RunConfig


def _select_split(rows: list[Any], split: str, manifest: str | Path) -> list[Any]:
    chosen = [r for r in rows if r.split == split]
    if not chosen:
        splits = sorted({str(r.split) for r in rows})
        raise DataError(
            f"split {split!r} of manifest {str(manifest)!r} is empty; the manifest has splits {splits}"
        )
    return chosen


def _limit(rows: list[Any], limit: int | None, seed: int) -> list[Any]:
    """A seeded subset of ``limit`` rows that keeps both classes in proportion (for smoke runs)."""
    if limit is None or len(rows) <= limit:
        return rows
    rng = random.Random(seed)
    by_label: dict[str, list[Any]] = {}
    for r in rows:
        by_label.setdefault(str(r.label), []).append(r)
    out: list[Any] = []
    for label in sorted(by_label):
        group = by_label[label]
        k = max(1, round(limit * len(group) / len(rows)))
        out.extend(rng.sample(group, min(k, len(group))))
    return out[:limit] if len(out) > limit else out


def detector_config_from_run(cfg: RunConfig) -> Any:
    """The DetectorConfig a run trains (preset merged with ``model.detector``), validated, nothing built.

    With ``model.init_checkpoint`` it is the checkpoint's config (``model.detector`` may only repeat it).
    """
    from spoof_train.models import DetectorConfig

    if cfg.model.init_checkpoint is not None:
        from spoof_train.checkpoint import read_checkpoint_config

        det_cfg = read_checkpoint_config(cfg.model.init_checkpoint)
        if cfg.model.detector:
            merged = _deep_merge(det_cfg.to_dict(), cfg.model.detector)
            if DetectorConfig.from_dict(merged).to_dict() != det_cfg.to_dict():
                raise ConfigError(
                    "model.detector: does not match the config of model.init_checkpoint "
                    f"{cfg.model.init_checkpoint!r}; fine-tuning keeps the checkpoint's architecture"
                )
        return det_cfg
    base: dict[str, Any] = {}
    if cfg.model.preset is not None:
        from spoof_train import presets

        base = presets.get_preset(cfg.model.preset).to_dict()
    return DetectorConfig.from_dict(_deep_merge(base, cfg.model.detector))


def build_detector_from_run(cfg: RunConfig) -> tuple[torch.nn.Module, Any]:
    """The detector a run trains: a preset merged with ``model.detector``, or ``model.init_checkpoint``."""
    from spoof_train.models import build_detector

    det_cfg = detector_config_from_run(cfg)
    if cfg.model.init_checkpoint is not None:
        from spoof_train.checkpoint import load_checkpoint

        model, det_cfg, _ = load_checkpoint(cfg.model.init_checkpoint, map_location="cpu")
        return model, det_cfg
    model = build_detector(
        det_cfg, seed=cfg.seed, pretrained=cfg.model.pretrained, trust_checkpoint=cfg.model.trust_checkpoint
    )
    return model, det_cfg


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_datasets(
    cfg: RunConfig, sample_rate: int, *, detector_config: Any = None
) -> tuple[Any, Any | None, dict[str, Any]]:
    """Training and dev datasets of a run (data contract) and the data facts recorded in training.json.

    The dev set is cut as ``data.eval_chunk_seconds`` says (:func:`eval_scoring`; by default the window
    and hop of ``detector_config``, else of the run's detector config); the rule is recorded as
    ``dev_scoring``."""
    from spoof_train.data import AudioDataset, read_manifest

    d = cfg.data
    if not d.manifest:
        raise ConfigError("data.manifest: expected the path of a TSV manifest, got an empty value")
    if not Path(d.manifest).is_file():
        raise DataError(f"data.manifest: {d.manifest!r} does not exist")
    rows = read_manifest(d.manifest, root=d.root)
    train_rows = _limit(_select_split(rows, d.train_split, d.manifest), d.limit_per_split, cfg.seed)
    dev_rows = None
    if d.dev_split:
        dev_rows = _limit(_select_split(rows, d.dev_split, d.manifest), d.limit_per_split, cfg.seed)
    crop = None if d.crop_seconds is None else round(d.crop_seconds * sample_rate)
    augment = build_augment(d.augment) if d.augment else None
    clip_augment = build_augment(d.clip_augment, clip=True) if d.clip_augment else None
    common = {"sample_rate": sample_rate, "on_error": d.on_error}
    extra = {"cache": True} if d.cache_audio else {}
    train_set = AudioDataset(
        train_rows,
        crop_samples=crop,
        train=True,
        augment=augment,
        clip_augment=clip_augment,
        seed=cfg.seed,
        **common,
        **extra,
    )
    dev_set = scoring = None
    if dev_rows is not None:
        det_cfg = detector_config
        if det_cfg is None and d.eval_chunk_seconds == MODEL_WINDOW:
            det_cfg = detector_config_from_run(cfg)
        scoring = eval_scoring(
            d.eval_chunk_seconds,
            sample_rate=sample_rate,
            window_samples=0 if det_cfg is None else int(det_cfg.window_samples),
            hop_samples=0 if det_cfg is None else int(det_cfg.hop_samples),
        )
        dev_set = eval_dataset(
            dev_rows,
            sample_rate=sample_rate,
            scoring=scoring,
            on_error=d.on_error,
            cache=True if d.cache_audio else None,
        )
    facts = {
        "data": {
            "manifest": str(Path(d.manifest).resolve()),
            "train_split": d.train_split,
            "dev_split": d.dev_split,
            "n_train": len(train_rows),
            "n_dev": 0 if dev_rows is None else len(dev_rows),
            "crop_seconds": d.crop_seconds,
            "augment": d.augment,
            "clip_augment": d.clip_augment,
        },
        "train_attacks": sorted({str(r.attack) for r in train_rows if r.label == "spoof"}),
    }
    if scoring is not None:
        facts["dev_scoring"] = scoring
    return train_set, dev_set, facts


def build_augment(specs: list[dict[str, Any]], *, clip: bool = False) -> Any:
    """Augmentation chain from ``data.augment`` entries ``{name: ..., p: prob, ...kwargs}`` (training crops),
    or with ``clip`` from ``data.clip_augment`` entries (whole clips before the crop; steps may change the
    length)."""
    from spoof_train.augment import build_augmentation

    key = "data.clip_augment" if clip else "data.augment"
    try:
        return build_augmentation(specs, keep_length=not clip, where=key)
    except (TypeError, KeyError) as exc:
        raise ConfigError(f"{key}: {exc}") from None


def train(
    run_config: RunConfig, *, resume: bool = False, on_step: Callable[[StepState], None] | None = None
) -> Path:
    """Train the detector of ``run_config`` and return the best checkpoint directory (contract A).

    Works single-process or under torchrun (``RANK``/``WORLD_SIZE`` set): rank 0 writes checkpoints and logs.
    ``resume=True`` continues from ``output_dir/checkpoints/last`` when it holds a trainer state.
    """
    import torch

    from spoof_train.distributed import cleanup_distributed, init_distributed

    cfg = run_config.validate()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    dist = init_distributed()
    try:
        set_seed(cfg.seed)  # the model's initial weights depend on the seed
        model, det_cfg = build_detector_from_run(cfg)
        train_set, dev_set, facts = build_datasets(cfg, int(det_cfg.sample_rate), detector_config=det_cfg)
        from spoof_train.data import collate_pad

        return fit(
            model,
            train_set,
            dev_set,
            cfg,
            detector_config=det_cfg,
            collate_fn=collate_pad,
            out_dir=Path(cfg.output_dir),
            resume=resume,
            dist=dist,
            on_step=on_step,
            training_info=facts,
        )
    finally:
        cleanup_distributed()


# ----------------------------------------------------------------------------------------------------
# Evaluation of a checkpoint


def read_asv_scores(path: str | Path) -> dict[str, np.ndarray]:
    """ASV score file in the ASVspoof 2019/2021 layout: whitespace-separated lines whose last two columns are
    ``key`` (target | nontarget | spoof) and ``score``. Returns the three score arrays."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"asv scores: {str(p)!r} does not exist")
    out: dict[str, list[float]] = {"target": [], "nontarget": [], "spoof": []}
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or parts[-2] not in out:
            raise DataError(
                f"asv scores {str(p)!r} line {n}: expected '... KEY SCORE' with KEY target, "
                f"nontarget or spoof, got {line!r}"
            )
        try:
            out[parts[-2]].append(float(parts[-1]))
        except ValueError:
            raise DataError(f"asv scores {str(p)!r} line {n}: score {parts[-1]!r} is not a number") from None
    for key, vals in out.items():
        if not vals:
            raise DataError(
                f"asv scores {str(p)!r}: no {key} trials; min t-DCF needs target, nontarget and spoof"
            )
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def evaluate(
    checkpoint: str | Path,
    manifest: str | Path,
    split: str,
    *,
    root: str | Path | None = None,
    out_dir: str | Path | None = None,
    asv_scores: str | Path | None = None,
    seen_attacks: Sequence[str] | None = None,
    chunk_seconds: float | str | None = MODEL_WINDOW,
    batch_size: int = 16,
    on_error: str = "raise",
    device: str = "auto",
    progress: bool = True,
    limit: int | None = None,
) -> dict[str, Any]:
    """Score one split of a manifest with a checkpoint and compute the ASVspoof metrics.

    Returns (and with ``out_dir`` writes ``metrics.json``, ``scores.tsv`` and ``det.png``): EER and its
    threshold, minDCF / actDCF / Cllr (ASVspoof 5 definitions on the raw scores read as LLRs), per-attack EER,
    pooled EER over seen and over unseen attacks (seen = spoof attacks of the training data recorded in the
    checkpoint's training.json, or ``seen_attacks``), and min t-DCF (2019 and 2021) when ``asv_scores`` is
    given.

    Clips are scored as :func:`eval_scoring` says: by default (``chunk_seconds="model"``) with the
    checkpoint's window and hop and the mean of the window scores, as the SDK scores (so training's dev
    EER, this and the export report agree on the same rows); a number of seconds or ``None`` (whole clips)
    overrides it. The rule is recorded as ``scoring`` in the result and ``metrics.json``.
    """
    from spoof_train import metrics as M
    from spoof_train.checkpoint import load_checkpoint
    from spoof_train.data import read_manifest

    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error: expected 'raise' or 'skip', got {on_error!r}")
    if not Path(manifest).is_file():
        raise DataError(f"manifest {str(manifest)!r} does not exist")
    model, det_cfg, info = load_checkpoint(checkpoint, map_location="cpu")
    dev = resolve_device(device)
    model.to(dev)
    rows = _limit(_select_split(read_manifest(manifest, root=root), split, manifest), limit, 0)
    for label in ("bonafide", "spoof"):
        if not any(r.label == label for r in rows):
            raise DataError(f"split {split!r} of {str(manifest)!r} has no {label} trials; the EER needs both")
    scoring = eval_scoring(
        chunk_seconds,
        sample_rate=int(det_cfg.sample_rate),
        window_samples=int(det_cfg.window_samples),
        hop_samples=int(det_cfg.hop_samples),
    )
    ds = eval_dataset(rows, sample_rate=int(det_cfg.sample_rate), scoring=scoring, on_error=on_error)
    t0 = time.perf_counter()
    res = score_utterances(
        model,
        ds,
        batch_size=batch_size,
        device=dev,
        progress=progress,
        desc=f"score {split}",
        min_samples=int(getattr(model, "min_samples", 0) or 0),
    )
    seconds = time.perf_counter() - t0
    scores = np.array([r["score"] for r in res])
    labels = np.array([r["label"] for r in res])
    attacks = [str(r["attack"]) for r in res]
    bona, spoof = scores[labels == 0], scores[labels == 1]
    eer, thr = M.compute_eer(bona, spoof)
    mdcf, mdcf_thr = M.min_dcf(bona, spoof)
    adcf, _ = M.act_dcf(bona, spoof)
    out: dict[str, Any] = {
        "checkpoint": str(Path(checkpoint).resolve()),
        "manifest": str(Path(manifest).resolve()),
        "split": split,
        "n_bonafide": int(bona.size),
        "n_spoof": int(spoof.size),
        "n_skipped": len(rows) - len(res),
        "eer": eer,
        "eer_threshold": thr,
        "min_dcf": mdcf,
        "min_dcf_threshold": mdcf_thr,
        "act_dcf": adcf,
        "cllr": M.cllr(bona, spoof),
        "scoring": scoring,
        "scoring_seconds": round(seconds, 2),
    }
    per = M.per_attack_eer(scores, labels, attacks)
    seen = set(seen_attacks if seen_attacks is not None else info.get("train_attacks", []) or [])
    out["per_attack"] = {
        k: {"eer": v.eer, "n_spoof": v.n_spoof, "seen": (k in seen) if k != "pooled" else None}
        for k, v in per.items()
    }
    if seen_attacks is not None or info.get("train_attacks"):
        for name, keep in (("seen", True), ("unseen", False)):
            sel = np.array(
                [lab == 1 and ((a in seen) == keep) for a, lab in zip(attacks, labels, strict=True)]
            )
            if sel.any():
                e, _ = M.compute_eer(bona, scores[sel])
                out[f"eer_{name}"] = e
                out[f"n_spoof_{name}"] = int(sel.sum())
    if asv_scores is not None:
        asv = read_asv_scores(asv_scores)
        for version in ("2019", "2021"):
            r = M.min_tdcf(
                bona,
                spoof,
                asv_target=asv["target"],
                asv_nontarget=asv["nontarget"],
                asv_spoof=asv["spoof"],
                version=version,
            )  # type: ignore[arg-type]
            out[f"min_tdcf_{version}"] = r.min_tdcf
    if out_dir is not None:
        od = Path(out_dir)
        od.mkdir(parents=True, exist_ok=True)
        with (od / "scores.tsv").open("w", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["id", "label", "attack", "score"])
            for r in res:
                w.writerow([r["id"], LABELS[r["label"]], r["attack"], f"{r['score']:.6f}"])
        M.plot_det(od / "det.png", {split: (bona, spoof)}, title=f"DET: {split}")  # it marks EER, minDCF
        (od / "metrics.json").write_text(json.dumps(out, indent=2) + "\n")
        out["outputs"] = {
            "scores": str(od / "scores.tsv"),
            "det": str(od / "det.png"),
            "metrics": str(od / "metrics.json"),
        }
    return out
