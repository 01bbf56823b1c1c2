"""The training loop of spoof_train: :func:`fit`, with resumable checkpoints, logs, AMP, DDP and EMA.

:func:`fit` is model-agnostic: any module that follows the detector contract
``forward(wave [B, T], lengths [B]) -> logits [B, 2]``, any dataset of the data contract's item dicts. What
a step minimises is an :class:`~spoof_train.losses.Objective` (supervised classification by default;
distillation and quantisation-aware fine-tuning pass theirs) and :class:`FitHook` callbacks run around
the loop, so every way of training gets the same loop. The run is built from a config by
:func:`spoof_train.train.train`; losses live in :mod:`spoof_train.losses`, the optimiser, schedules, SAM
and EMA in :mod:`spoof_train.optim`, scoring in :mod:`spoof_train.evaluation`.

Output directory of a run::

    run_config.yaml        resolved config        checkpoints/last/  latest state (resume from here)
    steps.csv, epochs.csv  CSV logs               checkpoints/best/  best by the early-stopping monitor
    train.log              the run's log (INFO)   tensorboard/       TensorBoard events

Exact resume: a run killed after a checkpoint and resumed from ``checkpoints/last`` reproduces the
uninterrupted run bit for bit on the same machine (model, optimizer, scheduler, AMP scaler, the objective's
own parameters, the hooks' state, the RNG states of python / numpy / torch and the position inside the
epoch's sample order are restored; the DataLoader uses its own seeded generator so creating it does not
touch the global RNG). With ``data.num_workers > 0`` this holds when the dataset draws its randomness per
item (the data contract's ``AudioDataset`` does).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from spoof_train.config import RunConfig, run_config_to_dict
from spoof_train.distributed import DistInfo, all_reduce_mean, barrier, broadcast_object, resolve_device
from spoof_train.errors import CheckpointError, ConfigError, DataError
from spoof_train.evaluation import LABELS, _eer_of, score_utterances
from spoof_train.losses import (
    ClassifierObjective,
    Criterion,
    Objective,
    OCSoftmaxLoss,
    build_criterion,
    mixup,
)
from spoof_train.optim import SharpnessAware, WeightAverage, amp_dtype, build_optimizer, build_scheduler
from spoofsdk._logfile import log_to_file

__all__ = [
    "RUN_LOG",
    "FitHook",
    "FitRun",
    "StepState",
    "fit",
    "get_rng_state",
    "load_trainer_state",
    "run_log",
    "set_rng_state",
    "set_seed",
]

log = logging.getLogger("spoof_train")

TRAINER_STATE = "trainer_state.pt"
#: the text log every run folder gets (INFO and above, timestamped)
RUN_LOG = "train.log"


# ----------------------------------------------------------------------------------------------------
# Seeds and RNG state (stored as plain tensors / ints so trainer_state.pt loads with weights_only=True)


def set_seed(seed: int) -> None:

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the legacy global RNG is what user code draws from)
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:

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

    random.setstate(_tuplify(state["python"]))
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------------
# The run's text log


@contextlib.contextmanager
def run_log(path: Path, logger: logging.Logger | None = None) -> Iterator[Path]:
    """While the block runs, ``logger`` (default ``spoof_train``) also writes INFO and above to ``path``
    (appended, timestamped), whatever the console shows; the console's handlers get what they got before
    (:func:`spoofsdk._logfile.log_to_file`)."""
    with log_to_file(logger or log, path, mode="a"):
        yield path


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


class FitHook:
    """Callbacks of :func:`fit` around the loop; every method is optional (the base does nothing).

    Quantisation-aware fine-tuning uses them: :meth:`start` attaches fake quantisation and calibrates its
    observers, :meth:`state_dict` puts the observers in the trainer state so a resumed run goes on with
    them, :meth:`end` runs however the loop ends.
    """

    def start(self, run: FitRun, state: dict[str, Any] | None) -> None:
        """The model is on its device and the optimiser built; ``state`` is this hook's
        :meth:`state_dict` from the trainer state when the run resumes, else None."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def end(self, run: FitRun) -> None:
        """After the loop, also when it raised."""


class _Trainee(torch.nn.Module):
    """The model and the objective as one module: what DDP wraps, so the objective's own parameters are
    all-reduced with the model's and its forward runs inside DDP's."""

    def __init__(self, model: torch.nn.Module, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(
        self, wave: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor, criterion: Criterion
    ) -> torch.Tensor:
        return self.objective(self.model, wave, lengths, labels, criterion)  # type: ignore[no-any-return]


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
    objective: Objective | None = None,
    hooks: Sequence[FitHook] = (),
) -> Path:
    """Train ``model`` and return the directory of the best checkpoint (``checkpoints/best``).

    ``objective`` is the loss of a batch (default :class:`~spoof_train.losses.ClassifierObjective`: the
    run's criterion on the model's logits; distillation and quantisation-aware fine-tuning pass theirs);
    ``hooks`` are called around the loop (:class:`FitHook`). Every objective and hook gets the same DDP,
    AMP, resume, EMA, logs and checkpoints.

    ``on_step`` is called after every optimizer step (after any checkpoint of that step); an exception it
    raises aborts the run like a crash would (tests use it to kill a run and resume it).
    """
    run = FitRun(
        model,
        train_set,
        dev_set,
        cfg,
        detector_config=detector_config,
        collate_fn=collate_fn,
        out_dir=Path(out_dir),
        dist=dist or DistInfo(),
        objective=objective or ClassifierObjective(),
        hooks=hooks,
        training_info=training_info,
    )
    return run.run(resume=resume, on_step=on_step)


class FitRun:
    """One run of :func:`fit`: the model, its optimiser, schedule, scaler, average and position.

    Built by :func:`fit`; hooks see it (``model``, ``device``, ``cfg``, ``train_set``, ``collate_fn``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        train_set: Any,
        dev_set: Any | None,
        cfg: RunConfig,
        *,
        detector_config: Any,
        collate_fn: Callable[[list[Any]], dict[str, Any]],
        out_dir: Path,
        dist: DistInfo,
        objective: Objective,
        hooks: Sequence[FitHook],
        training_info: dict[str, Any] | None,
    ) -> None:
        tcfg = cfg.train
        if len(train_set) == 0:
            raise DataError(f"data.train_split={cfg.data.train_split!r}: the training split is empty")
        if tcfg.early_stopping.monitor == "dev_eer" and (dev_set is None or len(dev_set) == 0):
            raise DataError(
                f"train.early_stopping.monitor=dev_eer but the dev split {cfg.data.dev_split!r} is empty"
            )
        self.model, self.train_set, self.dev_set, self.cfg, self.tcfg = model, train_set, dev_set, cfg, tcfg
        self.detector_config, self.collate_fn, self.out_dir = detector_config, collate_fn, out_dir
        self.dist, self.objective, self.hooks = dist, objective, list(hooks)
        self.device = resolve_device(cfg.device, dist)
        self.ckpt_last = out_dir / "checkpoints" / "last"
        self.ckpt_best = out_dir / "checkpoints" / "best"

        set_seed(cfg.seed)
        if tcfg.deterministic:
            torch.use_deterministic_algorithms(True)
        model.to(self.device)
        objective.setup(self.device)
        self.trainee = _Trainee(model, objective)
        # the average is copied before the criterion exists (OC-Softmax hooks the model's last layer)
        self.ema = WeightAverage(model, tcfg.ema_decay) if tcfg.ema_decay is not None else None
        self.criterion = build_criterion(tcfg, model, _labels_of(train_set))
        extra = [p for p in objective.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(model, tcfg, extra)
        self.sampler: DistributedSampler[Any] = DistributedSampler(
            train_set,
            num_replicas=dist.world_size,
            rank=dist.rank,
            shuffle=True,
            seed=cfg.seed,
            drop_last=False,
        )
        self.micro_per_epoch = math.ceil(len(self.sampler) / cfg.data.batch_size)
        steps_per_epoch = math.ceil(self.micro_per_epoch / tcfg.grad_accum_steps)
        total_steps = steps_per_epoch * tcfg.epochs
        if tcfg.max_steps is not None:
            total_steps = min(total_steps, tcfg.max_steps)
        self.scheduler = build_scheduler(self.optimizer, tcfg, total_steps, steps_per_epoch)
        self.amp_dtype = amp_dtype(tcfg.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if tcfg.sam_rho is not None and self.scaler.is_enabled():
            raise ConfigError("train.sam_rho: SAM is not supported with fp16 AMP (use amp bf16 or off)")
        # SAM moves every trained weight, the objective's too (it zeroes their gradients for the second pass)
        self.sam = (
            None if tcfg.sam_rho is None else SharpnessAware(self.trainee, tcfg.sam_rho, tcfg.sam_adaptive)
        )
        self.st = StepState()
        self.info = dict(training_info or {})
        self.info.update(
            {"seed": cfg.seed, "run_name": cfg.name, "loss": tcfg.loss, "train_items": len(train_set)}
        )
        self.steps_log: _CsvLog | None = None
        self.epochs_log: _CsvLog | None = None
        self.writer: Any = None
        self.current_frozen: bool | None = None
        self.net: torch.nn.Module = self.trainee  # the trainee, DDP-wrapped in a process group
        self._last_loss = float("nan")  # of the last micro-batch
        self._t_log, self._items_log = 0.0, 0  # the items/s of the step log
        self._batch: tuple[Criterion, torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # for SAM
        self._clip_params = [*model.parameters(), *extra]

    # ---- the run

    def run(self, *, resume: bool, on_step: Callable[[StepState], None] | None) -> Path:
        with contextlib.ExitStack() as stack:
            if isinstance(self.criterion, OCSoftmaxLoss):
                stack.callback(self.criterion.remove)  # its forward hook on the model, however the run ends
            if self.dist.is_main:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                stack.enter_context(run_log(self.out_dir / RUN_LOG))
            hook_states: list[dict[str, Any]] | None = None
            if resume and (self.ckpt_last / TRAINER_STATE).is_file():
                hook_states = self._resume()
            elif resume:
                log.info(
                    "resume requested but %s has no trainer state: starting from scratch", self.ckpt_last
                )
            if self.st.finished:
                log.info("run already finished; best checkpoint %s", self.ckpt_best)
                return self.ckpt_best
            if self.dist.is_main:
                self._open_logs()
            log.info(
                "run %s: %d training items, %d dev items, device %s, out %s",
                self.cfg.name,
                len(self.train_set),
                0 if self.dev_set is None else len(self.dev_set),
                self.device,
                self.out_dir,
            )
            self._loop(hook_states, on_step)
        return self.ckpt_best

    def _loop(
        self, hook_states: list[dict[str, Any]] | None, on_step: Callable[[StepState], None] | None
    ) -> None:
        started: list[FitHook] = []
        try:
            for i, hook in enumerate(self.hooks):
                hook.start(self, None if hook_states is None else hook_states[i])
                started.append(hook)
            stop = False
            while self.st.epoch < self.tcfg.epochs and not stop:
                stop = self._epoch(on_step)
        finally:
            for hook in reversed(started):
                hook.end(self)
            if self.writer is not None:
                self.writer.close()

    def _resume(self) -> list[dict[str, Any]] | None:
        from spoof_train.checkpoint import load_checkpoint

        loaded, _, _ = load_checkpoint(self.ckpt_last, map_location="cpu")
        self.model.load_state_dict(loaded.state_dict())
        state = load_trainer_state(self.ckpt_last)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if "objective" in state:
            self.objective.load_state_dict(state["objective"])
        self.st = StepState(**state["step_state"])
        if self.ema is not None:
            if "ema" not in state:
                raise CheckpointError(
                    f"resume: train.ema_decay is set but {str(self.ckpt_last / TRAINER_STATE)!r} holds no "
                    "weight average (the run was started without ema_decay); resume with the run's original "
                    "config"
                )
            self.ema.module.load_state_dict(state["ema"])
        rng = state["rng"]
        if self.dist.enabled and "rng_per_rank" in state and self.dist.rank < len(state["rng_per_rank"]):
            rng = state["rng_per_rank"][self.dist.rank]
        set_rng_state(rng)
        if self.dist.is_main:
            _truncate_csv(self.out_dir / "steps.csv", "step", self.st.global_step)
            _truncate_csv(self.out_dir / "epochs.csv", "epoch", self.st.epoch)
        log.info(
            "resumed from %s at epoch %d, batch %d, step %d",
            self.ckpt_last,
            self.st.epoch,
            self.st.batch_in_epoch,
            self.st.global_step,
        )
        hooks = state.get("hooks")
        if self.hooks and (not isinstance(hooks, list) or len(hooks) != len(self.hooks)):
            raise CheckpointError(
                f"resume: {str(self.ckpt_last / TRAINER_STATE)!r} holds the state of "
                f"{len(hooks) if isinstance(hooks, list) else 0} hook(s), this run has "
                f"{len(self.hooks)}; resume with the command that started the run"
            )
        return hooks if self.hooks else None

    def _open_logs(self) -> None:
        import yaml

        (self.out_dir / "run_config.yaml").write_text(
            yaml.safe_dump(run_config_to_dict(self.cfg), sort_keys=False)
        )
        self.steps_log = _CsvLog(
            self.out_dir / "steps.csv",
            ["step", "epoch", "lr", "loss", *self.objective.term_names, "items_per_s"],
        )
        self.epochs_log = _CsvLog(
            self.out_dir / "epochs.csv",
            ["epoch", "step", "train_loss", "dev_eer", "dev_threshold", "lr", "seconds", "backbone_frozen"],
        )
        if self.tcfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                log_dir=str(self.out_dir / "tensorboard"), purge_step=self.st.global_step or None
            )

    def _gather_rng(self) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
        mine = get_rng_state()
        if not self.dist.enabled:
            return mine, None
        import torch.distributed as tdist

        allr: list[Any] = [None] * self.dist.world_size
        tdist.all_gather_object(allr, mine)
        return mine, allr

    def checkpoint(self, directory: Path, *, with_state: bool, metrics: dict[str, Any] | None = None) -> None:
        rng, per_rank = self._gather_rng() if with_state else (None, None)
        if not self.dist.is_main:
            return
        trainer_state = None
        if with_state:
            trainer_state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rng,
                "step_state": dataclasses.asdict(self.st),
            }
            if per_rank is not None:
                trainer_state["rng_per_rank"] = per_rank
            if self.ema is not None:
                trainer_state["ema"] = self.ema.module.state_dict()
            objective_state = self.objective.state_dict()
            if objective_state:
                trainer_state["objective"] = objective_state
            if self.hooks:
                trainer_state["hooks"] = [h.state_dict() for h in self.hooks]
        ti = dict(self.info)
        ti.update({"epoch": self.st.epoch, "global_step": self.st.global_step})
        if metrics:
            ti.update(metrics)
        weights = self.model
        if self.ema is not None:
            # best = the evaluated average; last = the raw weights (the average rides in the trainer state)
            weights = self.model if with_state else self.ema.module
            ti.update({"ema_decay": self.ema.decay, "weights": "raw" if with_state else "ema"})
        save_training_checkpoint(directory, weights, self.detector_config, ti, trainer_state)

    # ---- one epoch

    def _set_freeze(self, epoch: int) -> None:
        """Freeze / unfreeze the backbone at the epoch boundary it changes at, and (re)wrap DDP."""
        frozen = epoch < self.tcfg.freeze_backbone_epochs
        if frozen == self.current_frozen:
            return
        backbone = getattr(self.model, "backbone_parameters", None)
        if self.tcfg.freeze_backbone_epochs and not (callable(backbone) and list(backbone())):
            raise ConfigError(
                "train.freeze_backbone_epochs > 0 needs a model with a backbone to freeze (an SSL "
                f"detector with freeze_backbone()); this {type(self.model).__name__} has none"
            )
        freeze = getattr(self.model, "freeze_backbone", None)
        if callable(freeze):
            freeze(frozen)
        self.current_frozen = frozen
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DDP(self.trainee, device_ids=ids)
        else:
            self.net = self.trainee

    def _loader(self, epoch: int) -> DataLoader[Any]:
        cfg = self.cfg
        self.sampler.set_epoch(epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        return DataLoader(
            self.train_set,
            batch_size=cfg.data.batch_size,
            sampler=_SkipSampler(self.sampler, self.st.batch_in_epoch * cfg.data.batch_size),
            collate_fn=self.collate_fn,
            num_workers=cfg.data.num_workers,
            generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch),
            worker_init_fn=_seed_worker if cfg.data.num_workers else None,
            drop_last=False,
        )

    def batch_loss(
        self, criterion: Criterion, wave: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """The objective's loss of one batch through the (DDP-wrapped) trainee, under autocast with AMP."""
        dtype = self.amp_dtype
        amp = torch.autocast(device_type=self.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with amp:
            return self.net(wave, lengths, labels, criterion).float()  # type: ignore[no-any-return]

    def _epoch(self, on_step: Callable[[StepState], None] | None) -> bool:
        """Train to the end of the epoch (or ``max_steps``), then evaluate and checkpoint; True = stop."""
        st, tcfg = self.st, self.tcfg
        epoch = st.epoch
        t_epoch = time.perf_counter()
        self._set_freeze(epoch)
        loader = self._loader(epoch)
        self.net.train()
        loss_sum, loss_n = (st.epoch_loss_sum, st.epoch_loss_n) if st.batch_in_epoch else (0.0, 0)
        micro = st.batch_in_epoch
        stop = False
        with tqdm(
            total=self.micro_per_epoch,
            initial=micro,
            desc=f"epoch {epoch + 1}/{tcfg.epochs}",
            file=sys.stderr,
            disable=not (tcfg.progress and self.dist.is_main),
            dynamic_ncols=True,
        ) as bar:
            self._t_log, self._items_log = time.perf_counter(), 0
            for batch in loader:
                micro += 1
                boundary = micro % tcfg.grad_accum_steps == 0 or micro == self.micro_per_epoch
                step_batch = self._forward_backward(batch, micro, boundary, epoch)
                if step_batch is not None:
                    loss_sum += step_batch[0] * step_batch[1]
                    loss_n += step_batch[1]
                    self._last_loss = step_batch[0]
                bar.update(1)
                if not boundary:
                    continue
                self._optimizer_step(batch)
                st.global_step += 1
                st.batch_in_epoch = micro
                st.epoch_loss_sum, st.epoch_loss_n = loss_sum, loss_n
                lr = self.optimizer.param_groups[0]["lr"]
                bar.set_postfix(loss=f"{self._last_loss:.4f}", lr=f"{lr:.2e}")
                self._log_step(epoch, lr)
                every = tcfg.checkpoint_every_steps
                if every and st.global_step % every == 0 and micro < self.micro_per_epoch:
                    self.checkpoint(self.ckpt_last, with_state=True)
                if on_step is not None:
                    on_step(st)
                if tcfg.max_steps is not None and st.global_step >= tcfg.max_steps:
                    stop = True
                    break
        train_loss = all_reduce_mean(loss_sum / max(1, loss_n), self.dist)
        # BatchNorm running statistics: every rank takes rank 0's (DDP's convention)
        _sync_buffers(self.model, self.dist)
        return self._end_epoch(
            epoch, train_loss, epoch_done=micro >= self.micro_per_epoch, stop=stop, t0=t_epoch
        )

    def _forward_backward(
        self, batch: dict[str, Any], micro: int, boundary: bool, epoch: int
    ) -> tuple[float, int] | None:
        """Forward and backward of one micro-batch; returns (loss, items), None for an empty batch."""
        tcfg = self.tcfg
        labels = batch["label"].to(self.device)
        self._batch = None
        if len(labels) == 0:  # every file of the batch was skipped (on_error="skip"): no forward
            log.warning("epoch %d: an empty batch (all files skipped)", epoch + 1)
            return None
        wave = batch["wave"].to(self.device, non_blocking=True)
        lengths = batch["lengths"].to(self.device)
        loss_of: Criterion = self.criterion
        if tcfg.mixup_alpha is not None and len(labels) > 1:
            wave, lengths, loss_of = mixup(wave, lengths, labels, tcfg.mixup_alpha, self.criterion)
        self._batch = (loss_of, wave, lengths, labels)
        no_sync = boundary or not self.dist.enabled
        with contextlib.nullcontext() if no_sync else self.net.no_sync():  # type: ignore[operator]
            loss = self.batch_loss(loss_of, wave, lengths, labels)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite training loss {loss.item()} at epoch {epoch + 1}, "
                    f"step {self.st.global_step}; lower train.lr or disable AMP"
                )
            accum = tcfg.grad_accum_steps
            full = (self.micro_per_epoch // accum) * accum
            group = accum if micro <= full else self.micro_per_epoch - full
            self.scaler.scale(loss / group).backward()  # type: ignore[no-untyped-call]
        self._items_log += len(labels)
        return float(loss.detach()), len(labels)

    def _optimizer_step(self, batch: dict[str, Any]) -> None:
        tcfg = self.tcfg
        if self.sam is not None and self._batch is not None:
            # the second gradient of the same batch, at w + e (grad_accum_steps is 1 with SAM)
            self.sam.take_perturbed_gradient(functools.partial(self.batch_loss, *self._batch))
        if tcfg.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self._clip_params, tcfg.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if tcfg.scheduler.name != "plateau":
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(_unwrap(self.model), self.st.global_step)

    def _log_step(self, epoch: int, lr: float) -> None:
        st, dist = self.st, self.dist
        if not (dist.is_main and st.global_step % self.tcfg.log_every_steps == 0):
            return
        rate = self._items_log * dist.world_size / max(1e-9, time.perf_counter() - self._t_log)
        assert self.steps_log is not None
        terms = {k: f"{v:.8g}" for k, v in self.objective.last_terms.items()}
        self.steps_log.write(
            {
                "step": st.global_step,
                "epoch": epoch + 1,
                "lr": f"{lr:.6g}",
                "loss": f"{self._last_loss:.8g}",
                **terms,
                "items_per_s": f"{rate:.2f}",
            }
        )
        if self.writer is not None:
            self.writer.add_scalar("train/loss", self._last_loss, st.global_step)
            self.writer.add_scalar("train/lr", lr, st.global_step)
            for k, v in self.objective.last_terms.items():
                self.writer.add_scalar(f"train/{k}", v, st.global_step)
        self._t_log, self._items_log = time.perf_counter(), 0

    # ---- end of an epoch (or of max_steps): evaluate, early stop, checkpoint

    def _evaluate(self, epoch: int, stop: bool) -> dict[str, Any]:
        tcfg, dev_set = self.tcfg, self.dev_set
        metrics: dict[str, Any] = {}
        due = (epoch + 1) % tcfg.eval_every_epochs == 0 or stop or epoch + 1 == tcfg.epochs
        if dev_set is not None and len(dev_set) > 0 and due and self.dist.is_main:
            res = score_utterances(
                self.ema.module if self.ema is not None else _unwrap(self.model),
                dev_set,
                batch_size=self.cfg.data.eval_batch_size,
                device=self.device,
                amp_dtype=self.amp_dtype,
                progress=tcfg.progress,
                desc="dev",
                min_samples=int(getattr(_unwrap(self.model), "min_samples", 0) or 0),
            )
            eer, thr = _eer_of(res)
            metrics.update({"dev_eer": eer, "dev_threshold": thr})
        return metrics

    def _early_stop(self, epoch: int, train_loss: float, metrics: dict[str, Any]) -> tuple[bool, bool]:
        """Best-so-far and patience; returns (improved, stop early)."""
        st, es = self.st, self.tcfg.early_stopping
        value = train_loss if es.monitor == "train_loss" else metrics.get("dev_eer")
        improved = False
        if value is not None:
            if st.best_metric is None or value < st.best_metric - es.min_delta:
                st.best_metric, st.best_epoch, st.bad_epochs, improved = float(value), epoch + 1, 0, True
            elif es.monitor != "none":
                st.bad_epochs += 1
            if self.tcfg.scheduler.name == "plateau":
                self.scheduler.step(value)
        elif st.best_metric is None:
            improved = True  # nothing to compare against: the latest is the best
        if es.monitor != "none" and st.bad_epochs > es.patience:
            st.stopped_early = True
            log.info(
                "early stopping at epoch %d: %s did not improve for %d epochs (best %.6g at epoch %s)",
                epoch + 1,
                es.monitor,
                st.bad_epochs,
                st.best_metric or float("nan"),
                st.best_epoch,
            )
            return improved, True
        return improved, False

    def _log_epoch(self, epoch: int, train_loss: float, metrics: dict[str, Any], seconds: float) -> None:
        assert self.epochs_log is not None
        self.epochs_log.write(
            {
                "epoch": epoch + 1,
                "step": self.st.global_step,
                "train_loss": f"{train_loss:.6f}",
                "dev_eer": metrics.get("dev_eer"),
                "dev_threshold": metrics.get("dev_threshold"),
                "lr": f"{self.optimizer.param_groups[0]['lr']:.6g}",
                "seconds": f"{seconds:.1f}",
                "backbone_frozen": int(bool(self.current_frozen)),
            }
        )
        if self.writer is not None:
            self.writer.add_scalar("epoch/train_loss", train_loss, self.st.global_step)
            if "dev_eer" in metrics:
                self.writer.add_scalar("dev/eer", metrics["dev_eer"], self.st.global_step)
            self.writer.flush()
        log.info(
            "epoch %d: train_loss %.4f dev_eer %s (%.1f s)",
            epoch + 1,
            train_loss,
            metrics.get("dev_eer"),
            seconds,
        )

    def _end_epoch(self, epoch: int, train_loss: float, *, epoch_done: bool, stop: bool, t0: float) -> bool:
        st = self.st
        metrics: dict[str, Any] = {"train_loss": train_loss, **self._evaluate(epoch, stop)}
        metrics = broadcast_object(metrics, self.dist)
        improved, early = self._early_stop(epoch, train_loss, metrics)
        stop = stop or early
        if self.dist.is_main:
            self._log_epoch(epoch, train_loss, metrics, time.perf_counter() - t0)
        if epoch_done:
            st.epoch, st.batch_in_epoch, st.epoch_loss_sum, st.epoch_loss_n = epoch + 1, 0, 0.0, 0
        if st.epoch >= self.tcfg.epochs or stop:
            st.finished = True
        best_metrics = {k: v for k, v in metrics.items() if v is not None}
        if improved:
            self.checkpoint(
                self.ckpt_best, with_state=False, metrics={**best_metrics, "best_epoch": epoch + 1}
            )
        self.checkpoint(self.ckpt_last, with_state=True, metrics=best_metrics)
        barrier(self.dist)
        return stop
