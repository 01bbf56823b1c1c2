"""Training a detector from a run config: ``spoof-train train CONFIG``.

Public entry points::

    best_dir = train(load_run_config("configs/smoke-cpu.yaml"))          # -> checkpoint dir (contract A)
    result = evaluate("runs/x/checkpoints/best", "MANIFEST.tsv", "dev")   # -> metrics dict

:func:`train` builds the detector and the datasets of a :class:`~spoof_train.config.RunConfig` and calls
:func:`spoof_train.loop.fit`, the one training loop (the run folder's layout and the exact-resume contract
are documented there). The jobs live in their own modules: the loop (:mod:`spoof_train.loop`), losses and
objectives (:mod:`spoof_train.losses`), optimisation (:mod:`spoof_train.optim`) and evaluation
(:mod:`spoof_train.evaluation`); their public names are re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spoof_train.config import RunConfig
from spoof_train.errors import ConfigError, DataError
from spoof_train.evaluation import (
    MODEL_WINDOW,
    eval_dataset,
    eval_scoring,
    evaluate,
    limit_rows,
    read_asv_scores,
    score_utterances,
    select_split,
)
from spoof_train.loop import (
    FitHook,
    StepState,
    fit,
    get_rng_state,
    load_trainer_state,
    set_rng_state,
    set_seed,
)
from spoof_train.losses import OCSoftmaxLoss, build_criterion, mixup
from spoof_train.optim import (
    SharpnessAware,
    WeightAverage,
    build_optimizer,
    build_scheduler,
    frozen_norm_stats,
    lr_factor,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "MODEL_WINDOW",
    "FitHook",
    "OCSoftmaxLoss",
    "SharpnessAware",
    "StepState",
    "WeightAverage",
    "build_augment",
    "build_criterion",
    "build_datasets",
    "build_detector_from_run",
    "build_optimizer",
    "build_scheduler",
    "crop_train_set",
    "detector_config_from_run",
    "eval_dataset",
    "eval_scoring",
    "evaluate",
    "fine_tune_run_config",
    "fit",
    "frozen_norm_stats",
    "get_rng_state",
    "load_trainer_state",
    "lr_factor",
    "mixup",
    "prepare_run_dir",
    "read_asv_scores",
    "run_fine_tune",
    "score_utterances",
    "set_rng_state",
    "set_seed",
    "step_history",
    "train",
]


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
    train_rows = limit_rows(select_split(rows, d.train_split, d.manifest), d.limit_per_split, cfg.seed)
    dev_rows = None
    if d.dev_split:
        dev_rows = limit_rows(select_split(rows, d.dev_split, d.manifest), d.limit_per_split, cfg.seed)
    crop = None if d.crop_seconds is None else round(d.crop_seconds * sample_rate)
    augment = build_augment(d.augment) if d.augment else None
    clip_augment = build_augment(d.clip_augment, clip=True) if d.clip_augment else None
    train_set = AudioDataset(
        train_rows,
        sample_rate=sample_rate,
        crop_samples=crop,
        train=True,
        augment=augment,
        clip_augment=clip_augment,
        seed=cfg.seed,
        on_error=d.on_error,
        cache=True if d.cache_audio else None,
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
# Fine-tuning runs of an existing checkpoint (distillation, quantisation-aware training) through fit


def crop_train_set(
    manifest: str | Path,
    split: str,
    *,
    sample_rate: int,
    crop_seconds: float,
    seed: int,
    max_files: int | None = None,
) -> Any:
    """Random training crops of a manifest split (at most ``max_files`` rows, a seeded subset)."""
    import numpy as np

    from spoof_train.data import AudioDataset, read_manifest

    if not Path(manifest).is_file():
        raise DataError(f"manifest {str(manifest)!r} does not exist")
    rows = read_manifest(manifest, splits=[split])
    if max_files is not None and len(rows) > max_files:
        idx = np.random.default_rng(seed).permutation(len(rows))[:max_files]
        rows = [rows[i] for i in sorted(idx)]
    return AudioDataset(
        rows, sample_rate=sample_rate, crop_samples=int(crop_seconds * sample_rate), train=True, seed=seed
    )


def fine_tune_run_config(
    name: str,
    job: Any,
    *,
    model: dict[str, Any],
    epochs: int,
    max_steps: int | None,
    weight_decay: float,
) -> RunConfig:
    """The :class:`RunConfig` a fine-tuning job hands to :func:`fit`: plain cross-entropy, constant
    learning rates (the back-end's and the backbone's), gradient norm clipped at 5, no dev set (the job
    scores dev itself afterwards), the last weights kept as the result, a step-log row every step.
    ``job`` is the job's config (``DistilConfig`` / ``QATConfig``: its run folder, manifest, train split,
    crop, seed, batch size, learning rates ``lr`` (backbone) and ``head_lr``, amp, ema_decay, device);
    ``model`` is the ``model`` section recorded in the run's ``run_config.yaml`` (the job builds the model
    itself)."""
    from spoof_train.config import (
        DataConfig,
        EarlyStoppingConfig,
        ModelConfig,
        SchedulerConfig,
        TrainConfig,
    )

    cfg = RunConfig(
        name=name,
        output_dir=str(job.run_folder()),
        seed=job.seed,
        device=job.device,
        model=ModelConfig(**model),
        data=DataConfig(
            manifest=str(job.manifest),
            train_split=job.train_split,
            dev_split=None,
            batch_size=job.batch_size,
            crop_seconds=job.crop_seconds,
        ),
        train=TrainConfig(
            epochs=epochs,
            max_steps=max_steps,
            class_weights=None,
            lr=job.head_lr,
            backbone_lr=job.lr,
            weight_decay=weight_decay,
            scheduler=SchedulerConfig(name="constant"),
            grad_clip_norm=5.0,
            ema_decay=job.ema_decay,
            amp=job.amp,
            early_stopping=EarlyStoppingConfig(monitor="none"),
            log_every_steps=1,
            tensorboard=False,
        ),
    )
    return cfg.validate()


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool, what: str) -> None:
    """A fine-tuning job's run folder: new, resumed (``resume``), or an earlier run's started over
    (``overwrite``: only a folder that holds a run's ``run_config.yaml`` is removed)."""
    import os
    import shutil

    if not run_dir.exists() or resume:
        return
    if not overwrite:
        raise ConfigError(
            f"{what} run folder {str(run_dir)!r} already exists: expected a new one, --resume to continue "
            "that run, or --overwrite to start it over"
        )
    if not (run_dir / "run_config.yaml").is_file():
        raise ConfigError(
            f"{what} run folder {str(run_dir)!r} exists and is not a run folder (no run_config.yaml); "
            "not removing it: choose another --run-dir"
        )
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun rank 0 alone removes it (and writes it again)
        shutil.rmtree(run_dir)


def run_fine_tune(
    model: torch.nn.Module,
    config: Any,
    train_set: Any,
    run_cfg: Any,
    *,
    objective: Any,
    hooks: list[Any],
    out: Path,
    info: dict[str, Any],
    resume: bool,
    complete: Callable[[torch.nn.Module], None] | None = None,
) -> Path | None:
    """Run :func:`~spoof_train.loop.fit` (single process or one rank of torchrun) and write its last
    weights as the checkpoint ``out`` (distillation, QAT) with ``info`` plus the steps, time, run folder and
    loss history.
    ``complete(model)`` may add to ``info`` before it is written. Returns ``out`` on rank 0, None on the
    other ranks."""
    from spoof_train.checkpoint import load_checkpoint, save_checkpoint
    from spoof_train.data import collate_pad
    from spoof_train.distributed import cleanup_distributed, init_distributed

    run_dir = Path(run_cfg.output_dir)
    dist = init_distributed()
    t0 = time.perf_counter()
    try:
        best = fit(
            model,
            train_set,
            None,
            run_cfg,
            detector_config=config,
            collate_fn=collate_pad,
            out_dir=run_dir,
            resume=resume,
            dist=dist,
            training_info={"origin": info["origin"]},
            objective=objective,
            hooks=hooks,
        )
    finally:
        cleanup_distributed()
    if not dist.is_main:
        return None
    trained, _, fit_info = load_checkpoint(best)
    history = step_history(run_dir, objective.term_names)
    info.update(
        {
            "steps": int(fit_info.get("global_step", len(history))),
            "seconds": round(time.perf_counter() - t0, 1),
            "run_dir": str(run_dir),
            "final_losses": history[-1] if history else None,
            "loss_history_every_10": history[::10],
        }
    )
    if "ema_decay" in fit_info:
        info["weights"] = {"ema_decay": fit_info["ema_decay"], "kind": fit_info.get("weights")}
    if complete is not None:
        complete(trained)
    return save_checkpoint(out, trained, config, info)


def step_history(run_dir: Path, terms: Sequence[str]) -> list[dict[str, float]]:
    """The per-step losses of a run (its ``steps.csv``): ``step``, ``loss`` and the objective's terms."""
    import csv

    path = run_dir / "steps.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    keys = ["loss", *terms]
    return [{"step": int(r["step"]), **{k: float(r[k]) for k in keys}} for r in rows]
