"""Optimisation of :func:`spoof_train.loop.fit`: optimiser and parameter groups, learning-rate schedules,
AMP, sharpness-aware minimisation and the weight average (EMA)."""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from spoof_train.config import TrainConfig
from spoof_train.errors import ConfigError

__all__ = [
    "SharpnessAware",
    "WeightAverage",
    "amp_dtype",
    "build_optimizer",
    "build_scheduler",
    "frozen_norm_stats",
    "lr_factor",
]


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
        pairs = [(p, p.grad) for p in self.model.parameters() if p.grad is not None]
        if not pairs:
            return False
        with torch.no_grad():
            scale = [(p.abs() + self.eta if self.adaptive else None) for p, _ in pairs]
            scaled = [g if t is None else t * g for (_, g), t in zip(pairs, scale, strict=True)]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in scaled]))
            if not bool(torch.isfinite(norm)) or float(norm) == 0.0:
                return False
            for (p, _), t, g in zip(pairs, scale, scaled, strict=True):
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
                loss_fn().backward()  # type: ignore[no-untyped-call]  # untyped in torch's stubs
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
            if tracked is not None and m.num_batches_tracked is not None:
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


def _param_groups(
    model: torch.nn.Module, cfg: TrainConfig, extra: Sequence[torch.nn.Parameter] = ()
) -> list[dict[str, Any]]:
    has_groups = callable(getattr(model, "backbone_parameters", None)) and callable(
        getattr(model, "head_parameters", None)
    )
    if not has_groups:
        return [{"params": [*model.parameters(), *extra], "lr": cfg.lr, "name": "all"}]
    backbone = list(model.backbone_parameters())  # type: ignore[operator]
    head = list(model.head_parameters())  # type: ignore[operator]
    seen = {id(p) for p in backbone} | {id(p) for p in head}
    rest = [p for p in model.parameters() if id(p) not in seen]
    groups = [{"params": head + rest + list(extra), "lr": cfg.lr, "name": "head"}]
    if backbone:
        groups.append(
            {
                "params": backbone,
                "lr": cfg.lr if cfg.backbone_lr is None else cfg.backbone_lr,
                "name": "backbone",
            }
        )
    return groups


def build_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, extra: Sequence[torch.nn.Parameter] = ()
) -> torch.optim.Optimizer:
    """Adam or AdamW over per-group learning rates (head ``lr``, SSL backbone ``backbone_lr``); ``extra``
    parameters (an objective's own, e.g. distillation projections) train with the head."""
    groups = _param_groups(model, cfg, extra)
    betas = (float(cfg.betas[0]), float(cfg.betas[1]))
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


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

    if cfg.scheduler.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.scheduler.factor, patience=cfg.scheduler.patience
        )
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, cfg, total_steps, steps_per_epoch)
    )


def amp_dtype(mode: str, device: torch.device) -> Any:
    """Autocast dtype or None. ``auto``: bf16 (or fp16 + GradScaler) on CUDA, off on CPU."""

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
