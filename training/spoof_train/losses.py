"""The losses of :func:`spoof_train.loop.fit`: what a training step minimises.

* the classification criteria (:func:`build_criterion`: weighted cross-entropy or :class:`OCSoftmaxLoss`)
  and :func:`mixup`;
* :class:`Objective`, the loss of one batch given the model: :class:`ClassifierObjective` (the criterion on
  the model's logits, what ``spoof-train train`` uses) and :class:`DistillationObjective` (criterion +
  ``T^2 KL`` towards a frozen teacher + hidden-state MSE; ``spoof-train distil`` and ``qat`` use it);
* the terms they are made of (:func:`kd_loss`, :func:`masked_mse`).

An objective is an ``nn.Module``: its own trainable parameters (e.g. the projections of a narrower
student's hidden states) are optimised with the detector's head, saved in the trainer state and
all-reduced under DDP together with the detector's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from spoof_train.config import TrainConfig
from spoof_train.errors import ConfigError, DataError

__all__ = [
    "ClassifierObjective",
    "Criterion",
    "DistillationObjective",
    "OCSoftmaxLoss",
    "Objective",
    "build_criterion",
    "kd_loss",
    "masked_mse",
    "mixup",
]

#: a classification loss ``(logits [B, 2], labels [B]) -> scalar``
Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _final_linear(model: torch.nn.Module) -> torch.nn.Linear:

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

    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(len(labels), device=labels.device)
    mixed = lam * wave + (1.0 - lam) * wave[perm]
    other = labels[perm]

    def loss_of(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return lam * criterion(logits, y) + (1.0 - lam) * criterion(logits, other)

    return mixed, torch.maximum(lengths, lengths[perm]), loss_of


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

    if cfg.loss == "ocsoftmax":
        return OCSoftmaxLoss(
            model, margin_real=cfg.oc_margin_real, margin_fake=cfg.oc_margin_fake, alpha=cfg.oc_alpha
        )
    weights = _class_weights(cfg.class_weights, train_labels)
    device = next(model.parameters()).device
    weight_t = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
    return torch.nn.CrossEntropyLoss(weight=weight_t)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch (Hinton et al.)."""
    return (
        F.kl_div(
            F.log_softmax(student_logits / temperature, -1),
            F.log_softmax(teacher_logits / temperature, -1),
            reduction="batchmean",
            log_target=True,
        )
        * temperature**2
    )


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error of ``[B, T, D]`` states over the frames where ``mask [B, T]`` is true."""
    m = mask.to(a.dtype).unsqueeze(-1)
    return ((a - b) ** 2 * m).sum() / (m.sum() * a.shape[-1]).clamp_min(1.0)


class Objective(torch.nn.Module):
    """The loss of one training batch, given the model (called by :func:`spoof_train.loop.fit` under AMP
    autocast, inside the DDP-wrapped forward).

    ``criterion`` is the run's classification loss (cross-entropy with class weights, OC-Softmax, or its
    mixup mix for this batch). ``term_names`` name the parts of the loss that :meth:`forward` leaves in
    ``last_terms`` (floats) for the step log.
    """

    term_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.last_terms: dict[str, float] = {}

    def setup(self, device: torch.device) -> None:
        """Move what the objective holds to the training device (called once by fit)."""
        self.to(device)

    def forward(
        self,
        model: torch.nn.Module,
        wave: torch.Tensor,
        lengths: torch.Tensor,
        labels: torch.Tensor,
        criterion: Criterion,
    ) -> torch.Tensor:
        raise NotImplementedError


class ClassifierObjective(Objective):
    """``criterion(model(wave, lengths), labels)``: supervised training of a detector."""

    def forward(
        self,
        model: torch.nn.Module,
        wave: torch.Tensor,
        lengths: torch.Tensor,
        labels: torch.Tensor,
        criterion: Criterion,
    ) -> torch.Tensor:
        return criterion(model(wave, lengths).float(), labels)


class DistillationObjective(Objective):
    """``alpha_ce * criterion(student, label) + alpha_kd * T^2 KL(teacher || student)
    + alpha_hidden * mean_k MSE(P_k(student_state[s_k]), teacher_state[t_k])``.

    The teacher is frozen, kept in eval mode and is not part of the module tree (it is neither trained,
    saved nor put in train mode with the student). With ``layer_pairs`` the student and the teacher run as
    ``backend(backbone(wave))`` so their hidden states are at hand (index 0 = the CNN features, ``i`` = the
    output of layer ``i``); ``P_k`` is the identity when ``student_width == teacher_width`` and a learned
    linear map otherwise. Without pairs (quantisation-aware fine-tuning against the FP32 model) only the
    logits are compared and the terms are ``ce`` and ``kd``.
    """

    def __init__(
        self,
        teacher: torch.nn.Module,
        *,
        temperature: float,
        alpha_ce: float,
        alpha_kd: float,
        alpha_hidden: float = 0.0,
        layer_pairs: Sequence[tuple[int, int]] = (),
        student_width: int | None = None,
        teacher_width: int | None = None,
    ) -> None:
        super().__init__()
        self._teacher = (teacher.eval().requires_grad_(False),)  # a tuple: not a registered submodule
        self.temperature = float(temperature)
        self.alpha_ce, self.alpha_kd, self.alpha_hidden = (
            float(alpha_ce),
            float(alpha_kd),
            float(alpha_hidden),
        )
        self.pairs = [(int(s), int(t)) for s, t in layer_pairs]
        same = student_width == teacher_width
        self.proj = torch.nn.ModuleList(
            [
                torch.nn.Identity()
                if same
                else torch.nn.Linear(int(student_width or 0), int(teacher_width or 0))
                for _ in self.pairs
            ]
        )
        self.term_names = ("ce", "kd", "hidden") if self.pairs else ("ce", "kd")

    @property
    def teacher(self) -> torch.nn.Module:
        return self._teacher[0]

    def setup(self, device: torch.device) -> None:
        super().setup(device)
        self.teacher.to(device).eval()

    def forward(
        self,
        model: torch.nn.Module,
        wave: torch.Tensor,
        lengths: torch.Tensor,
        labels: torch.Tensor,
        criterion: Criterion,
    ) -> torch.Tensor:
        teacher = self.teacher
        if self.pairs:
            with torch.no_grad():
                t_hidden, t_mask = teacher.backbone(wave, lengths)  # type: ignore[operator]
                t_logits = teacher.backend(t_hidden, t_mask)  # type: ignore[operator]
            s_hidden, s_mask = model.backbone(wave, lengths)  # type: ignore[operator]
            s_logits = model.backend(s_hidden, s_mask).float()  # type: ignore[operator]
            hidden = torch.stack(
                [
                    masked_mse(p(s_hidden[:, si]).float(), t_hidden[:, ti].float(), s_mask)
                    for p, (si, ti) in zip(self.proj, self.pairs, strict=True)
                ]
            ).mean()
        else:
            with torch.no_grad():
                t_logits = teacher(wave, lengths)
            s_logits = model(wave, lengths).float()
            hidden = torch.zeros((), device=s_logits.device)
        ce = criterion(s_logits, labels)
        kd = kd_loss(s_logits, t_logits.float(), self.temperature)
        loss = self.alpha_ce * ce + self.alpha_kd * kd + self.alpha_hidden * hidden
        terms = {"ce": ce, "kd": kd, "hidden": hidden}
        self.last_terms = {k: float(terms[k].detach()) for k in self.term_names}
        return loss
