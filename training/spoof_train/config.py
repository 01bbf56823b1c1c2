"""Run configuration of ``spoof-train``: YAML recipes plus dotted command-line overrides.

A run config is a YAML mapping with the sections ``model``, ``data`` and ``train`` (and a few top-level
keys); it is validated into the dataclasses below. Every problem raises :class:`ConfigError` naming the
dotted key, what was expected and what was given::

    cfg = load_run_config("configs/smoke-cpu.yaml", overrides=["train.lr=1e-4", "data.batch_size=8"])

Override values are parsed as YAML scalars/flow collections (``train.class_weights=[1.0,9.0]``,
``model.preset=aasist-l``, ``train.max_steps=null``); numbers in exponent form without a dot (``1e-4``) are
read as floats too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spoof_train.errors import ConfigError

__all__ = [
    "AMP_MODES",
    "DataConfig",
    "EarlyStoppingConfig",
    "FineTuneConfig",
    "ModelConfig",
    "RunConfig",
    "SchedulerConfig",
    "TrainConfig",
    "apply_overrides",
    "load_run_config",
    "parse_override",
    "run_config_from_dict",
    "run_config_to_dict",
]


def _choice(*values: str) -> dict[str, Any]:
    return {"choices": values}


#: ``train.amp``: autocast off, bf16, fp16 (CUDA, with a GradScaler) or auto (bf16/fp16 on CUDA, off on CPU)
AMP_MODES = ("auto", "off", "bf16", "fp16")


@dataclass
class ModelConfig:
    """Which detector to train: a named preset (``spoof_train.presets``) and/or a DetectorConfig dict.

    ``detector`` entries are deep-merged over the preset's ``DetectorConfig.to_dict()`` (so a recipe can say
    ``preset: wavlm-base`` and ``detector: {layers: 6, backend: {name: ffn}}``), or form the whole
    DetectorConfig without a preset. ``pretrained`` loads SSL backbone weights (kept layers only) from a local
    Hugging Face directory or a fairseq ``.pt`` (``trust_checkpoint`` allows pickled fairseq files).
    ``init_checkpoint`` starts from the weights of a contract-A checkpoint instead (fine-tuning).
    """

    preset: str | None = None
    detector: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    trust_checkpoint: bool = False
    init_checkpoint: str | None = None


@dataclass
class DataConfig:
    """Where the audio comes from and how it is batched."""

    manifest: str = ""
    root: str | None = None
    train_split: str = "train"
    dev_split: str | None = "dev"
    crop_seconds: float | None = 4.0
    eval_chunk_seconds: float | str | None = "model"
    batch_size: int = 16
    eval_batch_size: int = 16
    num_workers: int = 0
    on_error: str = field(default="raise", metadata=_choice("raise", "skip"))
    cache_audio: bool = False
    augment: list[dict[str, Any]] = field(default_factory=list)
    clip_augment: list[dict[str, Any]] = field(default_factory=list)
    limit_per_split: int | None = None


@dataclass
class SchedulerConfig:
    """Learning-rate schedule. ``cosine`` and ``step`` support a linear warm-up over ``warmup_steps``
    optimizer steps; ``step`` multiplies by ``gamma`` every ``step_epochs`` epochs; ``plateau`` multiplies by
    ``factor`` after ``patience`` evaluations without improvement of the early-stopping monitor."""

    name: str = field(default="cosine", metadata=_choice("cosine", "step", "plateau", "constant"))
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    step_epochs: int = 1
    gamma: float = 0.5
    patience: int = 1
    factor: float = 0.5


@dataclass
class EarlyStoppingConfig:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``dev_eer`` needs a dev split (the best checkpoint is the lowest dev EER); ``train_loss`` uses the mean
    training loss of the epoch (the research recipes that train without a dev set); ``none`` never stops
    early.
    """

    monitor: str = field(default="dev_eer", metadata=_choice("dev_eer", "train_loss", "none"))
    patience: int = 5
    min_delta: float = 0.0


@dataclass
class TrainConfig:
    """Optimisation. ``lr`` is the head / whole-model rate, ``backbone_lr`` the SSL backbone's (None = lr)."""

    epochs: int = 10
    max_steps: int | None = None
    loss: str = field(default="ce", metadata=_choice("ce", "ocsoftmax"))
    class_weights: Any = "balanced"  # "balanced", None, or [w_bonafide, w_spoof]
    oc_margin_real: float = 0.9
    oc_margin_fake: float = 0.2
    oc_alpha: float = 20.0
    optimizer: str = field(default="adamw", metadata=_choice("adam", "adamw"))
    lr: float = 1e-3
    backbone_lr: float | None = None
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    grad_accum_steps: int = 1
    grad_clip_norm: float | None = None
    # Exponential moving average of the weights (Polyak averaging): null = off, else the decay d in (0, 1),
    # e.g. 0.999. Dev evaluation (so dev-EER early stopping) and checkpoints/best use the averaged weights;
    # checkpoints/last keeps the raw weights and the average in its trainer state (for resume).
    ema_decay: float | None = None
    # Sharpness-aware minimisation: null = off, else the radius rho (SAM ~0.05; with sam_adaptive, ASAM
    # ~0.5-2). Two forward/backward passes per step; needs grad_accum_steps 1 and no fp16 AMP.
    sam_rho: float | None = None
    sam_adaptive: bool = False
    # Mixup of the training batch's waveforms: null = off, else Beta(alpha, alpha)'s parameter (e.g. 0.2)
    mixup_alpha: float | None = None
    amp: str = field(default="auto", metadata=_choice(*AMP_MODES))
    freeze_backbone_epochs: int = 0
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    eval_every_epochs: int = 1
    checkpoint_every_steps: int | None = None
    log_every_steps: int = 10
    progress: bool = True
    tensorboard: bool = True
    deterministic: bool = False


@dataclass(kw_only=True)
class FineTuneConfig:
    """What the fine-tuning jobs (``spoof-train distil`` and ``qat``) share, each field one flag: the data,
    the output checkpoint, the run folder and the options of the training loop they run in
    (:func:`spoof_train.loop.fit`). The jobs' own fields come first and may be positional."""

    manifest: str
    out_dir: str
    train_split: str = "train"
    max_train_files: int | None = None
    batch_size: int = 8
    crop_seconds: float = 2.0
    seed: int = 0
    overwrite: bool = False
    resume: bool = False
    run_dir: str | None = None
    amp: str = "auto"
    ema_decay: float | None = None
    device: str = "auto"

    def run_folder(self) -> Path:
        """The run folder (logs, resumable state): ``run_dir``, else ``OUT.run`` next to the output."""
        out = Path(self.out_dir)
        return Path(self.run_dir) if self.run_dir else out.with_name(out.name + ".run")

    def check_loop_options(self, what: str) -> None:
        """``amp`` and ``ema_decay``, checked before anything is loaded (``what``: the job's name)."""
        if self.amp not in AMP_MODES:
            raise ConfigError(f"{what} amp: expected one of {AMP_MODES}, given {self.amp!r}")
        d = self.ema_decay
        if d is not None and not (isinstance(d, float) and 0.0 < d < 1.0):
            raise ConfigError(f"{what} ema_decay: expected a number in (0, 1), given {d!r}")


@dataclass
class RunConfig:
    """A whole training run; ``output_dir`` receives ``checkpoints/{last,best}``, logs and the config."""

    name: str = "run"
    output_dir: str = "runs/run"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> RunConfig:
        """Cross-field checks that the per-field type checks cannot express; returns self."""
        t, d = self.train, self.data
        positive = {
            "train.epochs": t.epochs,
            "train.grad_accum_steps": t.grad_accum_steps,
            "train.eval_every_epochs": t.eval_every_epochs,
            "train.log_every_steps": t.log_every_steps,
            "data.batch_size": d.batch_size,
            "data.eval_batch_size": d.eval_batch_size,
            "train.scheduler.step_epochs": t.scheduler.step_epochs,
        }
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"{key}: expected an integer >= 1, got {value}")
        for key, opt in {
            "train.max_steps": t.max_steps,
            "train.checkpoint_every_steps": t.checkpoint_every_steps,
        }.items():
            if opt is not None and opt < 1:
                raise ConfigError(f"{key}: expected null or an integer >= 1, got {opt}")
        if t.lr <= 0 or (t.backbone_lr is not None and t.backbone_lr < 0):
            raise ConfigError(
                f"train.lr / train.backbone_lr: expected lr > 0 and backbone_lr >= 0, got "
                f"{t.lr} / {t.backbone_lr}"
            )
        if len(t.betas) != 2 or not all(0.0 <= b < 1.0 for b in t.betas):
            raise ConfigError(f"train.betas: expected two numbers in [0, 1), got {t.betas}")
        if not 0.0 <= t.scheduler.min_lr_ratio <= 1.0:
            raise ConfigError(
                f"train.scheduler.min_lr_ratio: expected a number in [0, 1], got {t.scheduler.min_lr_ratio}"
            )
        if t.scheduler.name == "plateau" and t.scheduler.warmup_steps:
            raise ConfigError(
                "train.scheduler.warmup_steps: warm-up is supported with cosine/step/constant, "
                f"not with plateau (got {t.scheduler.warmup_steps})"
            )
        if t.scheduler.warmup_steps < 0 or t.freeze_backbone_epochs < 0 or t.early_stopping.patience < 0:
            raise ConfigError(
                "train.scheduler.warmup_steps, train.freeze_backbone_epochs and "
                "train.early_stopping.patience must be >= 0"
            )
        if t.ema_decay is not None and not 0.0 < t.ema_decay < 1.0:
            raise ConfigError(
                f"train.ema_decay: expected null or a number in (0, 1), e.g. 0.999; got {t.ema_decay}"
            )
        if t.mixup_alpha is not None and not t.mixup_alpha > 0:
            raise ConfigError(
                f"train.mixup_alpha: expected null or a number > 0, e.g. 0.2; got {t.mixup_alpha}"
            )
        if t.mixup_alpha is not None and t.loss != "ce":
            raise ConfigError(
                f"train.mixup_alpha: mixup trains towards soft labels through loss 'ce', got loss {t.loss!r}"
            )
        if t.sam_rho is not None and not t.sam_rho > 0:
            raise ConfigError(f"train.sam_rho: expected null or a radius > 0, e.g. 0.05; got {t.sam_rho}")
        if t.sam_rho is not None and t.grad_accum_steps != 1:
            raise ConfigError(
                f"train.sam_rho: SAM takes its second gradient on the same batch, so it needs "
                f"grad_accum_steps 1, got {t.grad_accum_steps}"
            )
        if t.grad_clip_norm is not None and t.grad_clip_norm <= 0:
            raise ConfigError(f"train.grad_clip_norm: expected null or > 0, got {t.grad_clip_norm}")
        cw = t.class_weights
        if not (
            cw is None
            or cw == "balanced"
            or (
                isinstance(cw, list)
                and len(cw) == 2
                and all(isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in cw)
            )
        ):
            raise ConfigError(
                f"train.class_weights: expected 'balanced', null or [w_bonafide, w_spoof] with "
                f"positive numbers, got {cw!r}"
            )
        if t.loss == "ocsoftmax" and not (-1.0 <= t.oc_margin_fake < t.oc_margin_real <= 1.0):
            raise ConfigError(
                f"train.oc_margin_real/oc_margin_fake: expected -1 <= fake < real <= 1, got "
                f"{t.oc_margin_real}/{t.oc_margin_fake}"
            )
        if d.crop_seconds is not None and d.crop_seconds <= 0:
            raise ConfigError(f"data.crop_seconds: expected null or seconds > 0, got {d.crop_seconds}")
        ecs = d.eval_chunk_seconds
        if ecs is not None and (ecs != "model" if isinstance(ecs, str) else ecs <= 0):
            raise ConfigError(
                "data.eval_chunk_seconds: expected 'model' (the detector's window and hop, as the SDK "
                f"scores), seconds > 0 or null (whole clips), got {ecs!r}"
            )
        if d.num_workers < 0:
            raise ConfigError(f"data.num_workers: expected >= 0, got {d.num_workers}")
        if d.limit_per_split is not None and d.limit_per_split < 1:
            raise ConfigError(f"data.limit_per_split: expected null or >= 1, got {d.limit_per_split}")
        if t.early_stopping.monitor == "dev_eer" and not d.dev_split:
            raise ConfigError(
                "train.early_stopping.monitor: 'dev_eer' needs data.dev_split; set it or use "
                "monitor 'train_loss' / 'none'"
            )
        if self.device not in {"auto", "cpu"} and not self.device.startswith("cuda"):
            raise ConfigError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.model.preset is None and not self.model.detector and self.model.init_checkpoint is None:
            raise ConfigError(
                "model: expected model.preset, model.detector or model.init_checkpoint; got none"
            )
        return self


# ----------------------------------------------------------------------------------------------------
# Generic dict -> dataclass conversion with key-naming errors


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key}: expected {' | '.join(_type_name(a) for a in args)}, got null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: no accepted type matches {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return _from_dict(tp, value, key)  # type: ignore[arg-type]
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {type(value).__name__} {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
    return value


def _from_dict(cls: type[Any], data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in fields:
            raise ConfigError(f"unknown key {key!r}; expected one of: {', '.join(sorted(fields))}")
        value = _coerce(v, hints[k], key)
        choices = fields[k].metadata.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
        kwargs[k] = value
    return cls(**kwargs)


def run_config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Validate a plain mapping into a :class:`RunConfig` (raises :class:`ConfigError` naming the bad key)."""
    if not isinstance(data, dict):
        raise ConfigError(f"run config: expected a mapping at the top level, got {type(data).__name__}")
    cfg: RunConfig = _from_dict(RunConfig, data)
    return cfg.validate()


def run_config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The plain mapping of a config (round-trips through :func:`run_config_from_dict`)."""
    return dataclasses.asdict(cfg)


# ----------------------------------------------------------------------------------------------------
# YAML and overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-4"`` -> (["train", "lr"], 1e-4). Values are YAML scalars or flow collections."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE with a dotted key, e.g. train.lr=1e-4")
    key, _, raw = text.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"override {text!r}: the key must be dotted names like train.lr, got {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({exc})") from None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value) if any(c in value.lower() for c in "e.") and value.strip() else value
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply dotted ``KEY=VALUE`` overrides to a (nested) mapping, in order; returns a new mapping.

    Keys under a section that does not take free-form mappings are checked later by validation, so a typo
    such as ``train.lrr=1`` fails there with the full dotted key.
    """
    import copy

    out = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {text!r}: {'.'.join(parts[: i + 1])} is a "
                    f"{type(child).__name__}, not a section"
                )
            node = child
        node[parts[-1]] = value
    return out


def load_run_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML recipe (or start from defaults when ``path`` is None), apply overrides, validate."""
    import yaml

    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"run config: expected a YAML file, {str(p)!r} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"run config {str(p)!r}: not valid YAML ({exc})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"run config {str(p)!r}: expected a mapping at the top level, got {type(loaded).__name__}"
            )
        data = loaded
    return run_config_from_dict(apply_overrides(data, list(overrides)))
