"""Knowledge distillation: a trained SSL detector (teacher) -> a student with fewer (and optionally
narrower) transformer layers (``spoof-train distil``).

Student initialisation
    The student is the teacher's architecture with ``layers=N`` (and, optionally, a smaller
    ``hidden_size`` / ``intermediate_size`` / head count). Every student parameter whose shape matches the
    teacher's is copied (the convolutional feature encoder, transformer layers ``0..N-1``, the back-end);
    a narrower parameter is initialised with the leading slice of the teacher's (weight truncation), and a
    back-end parameter sized by the layer count (e.g. per-layer mixing weights) with its first entries.

Loss (per batch of labelled training crops)
    ``alpha_ce * CE(student, label)``
    ``+ alpha_kd * T^2 * KL(softmax(teacher / T) || softmax(student / T))``
    ``+ alpha_hidden * mean_k MSE(P_k(student_state[s_k]), teacher_state[t_k])`` over valid frames,
    where ``layer_map`` pairs student hidden states ``s_k`` with teacher states ``t_k`` (index 0 = CNN
    features before the first layer, i = output of layer i). ``P_k`` is the identity for a student of
    the teacher's width and a learned linear map otherwise (used only during distillation). The default
    ``"uniform"`` map asks student state ``i`` for teacher state ``round(i * L_teacher / N)``, so the last
    student layer learns what the teacher's last layer computes; ``"first"`` maps ``i -> i``.

The result is a contract-A checkpoint whose ``training.json`` records the teacher, the map, the losses
and (when a dev split is scored) student and teacher EER on the same trials.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spoof_train.config import FineTuneConfig
from spoof_train.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

__all__ = [
    "DistilConfig",
    "distil",
    "init_student",
    "parse_layer_map",
    "student_config",
]

log = logging.getLogger("spoof_train")


@dataclass
class DistilConfig(FineTuneConfig):
    """Everything ``spoof-train distil`` needs; each field is one CLI flag (the shared ones, data, output,
    run folder and loop options, come from :class:`~spoof_train.config.FineTuneConfig`, keyword-only)."""

    teacher: str
    layers: int
    hidden_size: int | None = None
    intermediate_size: int | None = None
    attention_heads: int | None = None
    layer_map: str = "uniform"
    temperature: float = 2.0
    alpha_ce: float = 1.0
    alpha_kd: float = 1.0
    alpha_hidden: float = 1.0
    epochs: int = 1
    max_steps: int | None = None
    lr: float = 5e-5
    head_lr: float = 1e-3
    dev_split: str | None = "dev"
    max_dev_files: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        def positive(name: str) -> None:
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0):
                raise ConfigError(f"distil {name}: expected a number > 0, given {v!r}")

        for name in (
            "layers",
            "hidden_size",
            "intermediate_size",
            "attention_heads",
            "temperature",
            "epochs",
            "max_steps",
            "batch_size",
            "lr",
            "head_lr",
            "crop_seconds",
            "max_train_files",
            "max_dev_files",
        ):
            positive(name)
        for name in ("alpha_ce", "alpha_kd", "alpha_hidden"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"distil {name}: expected a finite weight >= 0, given {v!r}")
        if self.alpha_ce + self.alpha_kd + self.alpha_hidden <= 0:
            raise ConfigError(
                "distil: all loss weights are 0; expected at least one of alpha_ce/kd/hidden > 0"
            )
        self.check_loop_options("distil")


def parse_layer_map(spec: str, student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """``"uniform"``, ``"first"``, or explicit ``"s:t,s:t"`` pairs of hidden-state indices."""
    if spec == "uniform":
        return [(i, round(i * teacher_layers / student_layers)) for i in range(student_layers + 1)]
    if spec == "first":
        return [(i, i) for i in range(student_layers + 1)]
    pairs = []
    for part in spec.split(","):
        s, sep, t = part.strip().partition(":")
        if not sep or not s.strip().isdigit() or not t.strip().isdigit():
            raise ConfigError(
                f"layer_map: expected 'uniform', 'first' or pairs like '0:0,3:6,6:12', given {spec!r}"
            )
        si, ti = int(s), int(t)
        if not (0 <= si <= student_layers and 0 <= ti <= teacher_layers):
            raise ConfigError(
                f"layer_map pair {si}:{ti}: expected student index 0..{student_layers} and teacher index "
                f"0..{teacher_layers}"
            )
        pairs.append((si, ti))
    if not pairs:
        raise ConfigError(f"layer_map: no pairs in {spec!r}")
    return pairs


def student_config(teacher_config: Any, cfg: DistilConfig) -> Any:
    """The teacher's DetectorConfig with ``layers`` and, when given, a narrower transformer."""
    import copy
    import dataclasses

    if teacher_config.kind != "ssl" or teacher_config.backbone is None:
        raise ConfigError(f"distil: the teacher must be an SSL detector, given kind {teacher_config.kind!r}")
    total = int(teacher_config.kept_layers)
    if not 1 <= cfg.layers <= total:
        raise ConfigError(f"distil layers: expected 1..{total} (the teacher's layers), given {cfg.layers}")
    backbone = copy.deepcopy(teacher_config.backbone)
    hf = backbone["config"]
    hf["num_hidden_layers"] = total  # the student's 'unpruned' backbone is the teacher's kept stack
    if cfg.hidden_size is not None:
        if cfg.hidden_size > int(hf["hidden_size"]):
            raise ConfigError(
                f"distil hidden_size: expected <= the teacher's {hf['hidden_size']}, given {cfg.hidden_size}"
            )
        heads = cfg.attention_heads or int(hf["num_attention_heads"])
        if cfg.hidden_size % heads:
            raise ConfigError(
                f"distil hidden_size {cfg.hidden_size}: expected a multiple of the {heads} attention heads"
            )
        hf["hidden_size"] = cfg.hidden_size
        hf["num_attention_heads"] = heads
        hf["output_hidden_size"] = cfg.hidden_size
        if "num_conv_pos_embedding_groups" in hf and cfg.hidden_size % int(
            hf["num_conv_pos_embedding_groups"]
        ):
            raise ConfigError(
                f"distil hidden_size {cfg.hidden_size}: expected a multiple of num_conv_pos_embedding_groups "
                f"({hf['num_conv_pos_embedding_groups']})"
            )
    if cfg.intermediate_size is not None:
        hf["intermediate_size"] = cfg.intermediate_size
    return dataclasses.replace(teacher_config, backbone=backbone, layers=cfg.layers)


def init_student(
    teacher: torch.nn.Module, student: torch.nn.Module, *, teacher_layers: int, student_layers: int
) -> dict[str, int]:
    """Copy / slice the teacher's weights into ``student`` (see the module docstring); returns counts."""
    import torch

    src = teacher.state_dict()
    counts = {"copied": 0, "sliced": 0, "layer_sliced": 0, "kept_random": 0}
    new_state = {}
    cut = teacher_layers - student_layers
    for key, dst in student.state_dict().items():
        t = src.get(key)
        if t is None:
            counts["kept_random"] += 1
            new_state[key] = dst
            continue
        if t.shape == dst.shape:
            new_state[key] = t.clone()
            counts["copied"] += 1
        elif t.ndim == dst.ndim and t.shape[1:] == dst.shape[1:] and t.shape[0] - dst.shape[0] == cut:
            new_state[key] = t[: dst.shape[0]].clone()  # sized by the layer count
            counts["layer_sliced"] += 1
        elif t.ndim == dst.ndim and all(a >= b for a, b in zip(t.shape, dst.shape, strict=True)):
            new_state[key] = t[tuple(slice(0, n) for n in dst.shape)].clone().to(dst.dtype)
            counts["sliced"] += 1
        else:
            new_state[key] = dst
            counts["kept_random"] += 1
    with torch.no_grad():
        student.load_state_dict(new_state, strict=True)
    return counts


def distil(cfg: DistilConfig) -> Path:
    """Distil ``cfg.teacher`` into a ``cfg.layers``-layer student; returns the student checkpoint dir.

    The student trains in :func:`spoof_train.loop.fit` with a
    :class:`~spoof_train.losses.DistillationObjective` (so DDP under torchrun, AMP, EMA and ``resume``
    work as for ``spoof-train train``); the run folder is :meth:`DistilConfig.run_folder`.
    """
    import torch

    from spoof_train.checkpoint import checkpoint_sha256, load_checkpoint
    from spoof_train.losses import DistillationObjective
    from spoof_train.models import build_detector
    from spoof_train.train import crop_train_set, fine_tune_run_config, prepare_run_dir, run_fine_tune

    cfg.validate()
    out, run_dir = Path(cfg.out_dir), cfg.run_folder()
    if out.exists() and not cfg.overwrite:
        raise ConfigError(f"distil out_dir {out} already exists: expected a new directory (or overwrite)")
    torch.manual_seed(cfg.seed)
    teacher, tconfig, tinfo = load_checkpoint(cfg.teacher)
    sconfig = student_config(tconfig, cfg)  # checks that the teacher is an SSL detector with a backbone
    if tconfig.backbone is None or sconfig.backbone is None or tconfig.kept_layers is None:
        raise ConfigError(f"distil: the teacher {cfg.teacher!r} has no SSL backbone to distil")
    t_layers = int(tconfig.kept_layers)
    pairs = parse_layer_map(cfg.layer_map, cfg.layers, t_layers)
    student = build_detector(sconfig, seed=cfg.seed)
    init_counts = init_student(teacher, student, teacher_layers=t_layers, student_layers=cfg.layers)
    log.info(
        "student %d layers initialised from the teacher: %s; layer map %s", cfg.layers, init_counts, pairs
    )
    t_width = int(tconfig.backbone["config"]["hidden_size"])
    s_width = int(sconfig.backbone["config"]["hidden_size"])
    objective = DistillationObjective(
        teacher,
        temperature=cfg.temperature,
        alpha_ce=cfg.alpha_ce,
        alpha_kd=cfg.alpha_kd,
        alpha_hidden=cfg.alpha_hidden,
        layer_pairs=pairs,
        student_width=s_width,
        teacher_width=t_width,
    )
    train_set = crop_train_set(
        cfg.manifest,
        cfg.train_split,
        sample_rate=int(sconfig.sample_rate),
        crop_seconds=cfg.crop_seconds,
        seed=cfg.seed,
        max_files=cfg.max_train_files,
    )
    prepare_run_dir(run_dir, resume=cfg.resume, overwrite=cfg.overwrite, what="distil")
    run_cfg = fine_tune_run_config(
        "distil",
        cfg,
        model={"detector": sconfig.to_dict()},
        epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        weight_decay=0.01,
    )
    info: dict[str, Any] = {
        "origin": "distil",
        "teacher": str(cfg.teacher),
        "teacher_sha256": checkpoint_sha256(cfg.teacher),
        "teacher_layers": t_layers,
        "student_layers": cfg.layers,
        "student_hidden_size": s_width,
        "layer_map": pairs,
        "init": init_counts,
        "distil": {k: v for k, v in asdict(cfg).items() if k != "extra"},
        "train_files": len(train_set),
    }
    for key in ("calibration",):
        if key in tinfo:
            info[f"teacher_{key}"] = tinfo[key]  # not valid for the student: recalibrate on dev
    path = run_fine_tune(
        student,
        sconfig,
        train_set,
        run_cfg,
        objective=objective,
        hooks=[],
        out=out,
        info=info,
        resume=cfg.resume,
    )
    if path is not None and cfg.dev_split:
        _score_student_and_teacher(cfg, path, info)
    return out


def _score_student_and_teacher(cfg: DistilConfig, path: Path, info: dict[str, Any]) -> None:
    """Dev EER of the student and the teacher on the same trials, added to the student's training.json."""
    from spoof_train.evaluation import evaluate

    res = {}
    for name, ck in (("student", path), ("teacher", Path(cfg.teacher))):
        r = evaluate(ck, cfg.manifest, str(cfg.dev_split), progress=False, limit=cfg.max_dev_files)
        res[name] = {"eer": r.get("eer"), "eer_threshold": r.get("eer_threshold")}
    info["dev"] = {"split": cfg.dev_split, "limit": cfg.max_dev_files, **res}
    if res["student"]["eer"] is not None and res["teacher"]["eer"] is not None:
        info["dev"]["eer_delta_points"] = round(100 * (res["student"]["eer"] - res["teacher"]["eer"]), 3)
    (path / "training.json").write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")


def crop_train_loader(
    manifest: str | Path,
    split: str,
    *,
    sample_rate: int,
    crop_seconds: float,
    batch_size: int,
    seed: int,
    max_files: int | None = None,
) -> DataLoader[Any]:
    """The first epoch of random crops of a manifest split exactly as :func:`distil` and ``qat`` train on
    it (same rows, crops, order and batches as :func:`~spoof_train.loop.fit` draws in one process): to
    replay or inspect a fine-tuning run."""
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    from spoof_train.data import collate_pad
    from spoof_train.train import crop_train_set

    data = crop_train_set(
        manifest, split, sample_rate=sample_rate, crop_seconds=crop_seconds, seed=seed, max_files=max_files
    )
    data.set_epoch(0)
    sampler: DistributedSampler[Any] = DistributedSampler(
        data, num_replicas=1, rank=0, shuffle=True, seed=seed
    )
    sampler.set_epoch(0)
    return DataLoader(
        data,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_pad,
        generator=torch.Generator().manual_seed(seed * 100003),
    )
