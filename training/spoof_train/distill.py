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

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spoof_train.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

__all__ = [
    "DistilConfig",
    "add_distil_parser",
    "cmd_distil",
    "distil",
    "init_student",
    "parse_layer_map",
    "student_config",
]

log = logging.getLogger("spoof_train")


@dataclass
class DistilConfig:
    """Everything ``spoof-train distil`` needs; each field is one CLI flag."""

    teacher: str
    manifest: str
    out_dir: str
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
    batch_size: int = 8
    lr: float = 5e-5
    head_lr: float = 1e-3
    crop_seconds: float = 2.0
    train_split: str = "train"
    dev_split: str | None = "dev"
    max_train_files: int | None = None
    max_dev_files: int | None = None
    seed: int = 0
    overwrite: bool = False
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


def _masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(a.dtype).unsqueeze(-1)
    return ((a - b) ** 2 * m).sum() / (m.sum() * a.shape[-1]).clamp_min(1.0)


def distil(cfg: DistilConfig) -> Path:
    """Distil ``cfg.teacher`` into a ``cfg.layers``-layer student; returns the student checkpoint dir."""
    import torch
    import torch.nn.functional as F

    from spoof_train.checkpoint import checkpoint_sha256, load_checkpoint, save_checkpoint
    from spoof_train.models import build_detector

    cfg.validate()
    out = Path(cfg.out_dir)
    if out.exists() and not cfg.overwrite:
        raise ConfigError(f"distil out_dir {out} already exists: expected a new directory (or overwrite)")
    torch.manual_seed(cfg.seed)
    teacher, tconfig, tinfo = load_checkpoint(cfg.teacher)
    teacher.eval().requires_grad_(False)
    sconfig = student_config(tconfig, cfg)
    t_layers = int(tconfig.kept_layers)
    pairs = parse_layer_map(cfg.layer_map, cfg.layers, t_layers)
    student = build_detector(sconfig, seed=cfg.seed)
    init_counts = init_student(teacher, student, teacher_layers=t_layers, student_layers=cfg.layers)
    log.info(
        "student %d layers initialised from the teacher: %s; layer map %s", cfg.layers, init_counts, pairs
    )

    t_width = int(tconfig.backbone["config"]["hidden_size"])
    s_width = int(sconfig.backbone["config"]["hidden_size"])
    proj = torch.nn.ModuleList(
        [torch.nn.Identity() if s_width == t_width else torch.nn.Linear(s_width, t_width) for _ in pairs]
    )

    sr = int(sconfig.sample_rate)
    loader = crop_train_loader(
        cfg.manifest,
        cfg.train_split,
        sample_rate=sr,
        crop_seconds=cfg.crop_seconds,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        max_files=cfg.max_train_files,
    )
    groups = [
        {"params": student.backbone_parameters(), "lr": cfg.lr},
        {"params": [*student.head_parameters(), *proj.parameters()], "lr": cfg.head_lr},
    ]
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    steps_per_epoch = len(loader)
    total_steps = (
        cfg.epochs * steps_per_epoch
        if cfg.max_steps is None
        else min(cfg.max_steps, cfg.epochs * steps_per_epoch)
    )
    step = 0
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    student.train()
    temp = cfg.temperature
    for _epoch in range(cfg.epochs):
        for batch in loader:
            if step >= total_steps:
                break
            if len(batch["label"]) == 0:
                continue
            wave, lengths, labels = batch["wave"], batch["lengths"], batch["label"]
            with torch.no_grad():
                t_hidden, t_mask = teacher.backbone(wave, lengths)
                t_logits = teacher.backend(t_hidden, t_mask)
            s_hidden, s_mask = student.backbone(wave, lengths)
            s_logits = student.backend(s_hidden, s_mask)
            ce = F.cross_entropy(s_logits, labels)
            kd = (
                F.kl_div(
                    F.log_softmax(s_logits / temp, -1),
                    F.log_softmax(t_logits / temp, -1),
                    reduction="batchmean",
                    log_target=True,
                )
                * temp**2
            )
            hid = torch.stack(
                [
                    _masked_mse(p(s_hidden[:, si]), t_hidden[:, ti], s_mask)
                    for p, (si, ti) in zip(proj, pairs, strict=True)
                ]
            ).mean()
            loss = cfg.alpha_ce * ce + cfg.alpha_kd * kd + cfg.alpha_hidden * hid
            if not torch.isfinite(loss):
                raise ConfigError(
                    f"distil: non-finite loss at step {step} (ce {ce}, kd {kd}, hidden {hid}); lower lr"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 5.0)
            opt.step()
            step += 1
            rec = {
                "step": step,
                **{
                    k: float(v.detach()) for k, v in (("loss", loss), ("ce", ce), ("kd", kd), ("hidden", hid))
                },
            }
            history.append(rec)
            if step % 10 == 0 or step == 1:
                log.info("distil step %d/%d: %s", step, total_steps, {k: round(v, 4) for k, v in rec.items()})
    student.eval()
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
        "steps": step,
        "seconds": round(time.perf_counter() - t0, 1),
        "final_losses": history[-1] if history else None,
        "loss_history_every_10": history[::10],
        "train_files": len(loader.dataset),  # type: ignore[arg-type]
    }
    for key in ("calibration",):
        if key in tinfo:
            info[f"teacher_{key}"] = tinfo[key]  # not valid for the student: recalibrate on dev
    path = save_checkpoint(out, student, sconfig, info)
    if cfg.dev_split:
        from spoof_train.train import evaluate

        res = {}
        for name, ck in (("student", path), ("teacher", Path(cfg.teacher))):
            r = evaluate(ck, cfg.manifest, cfg.dev_split, progress=False, limit=cfg.max_dev_files)
            res[name] = {"eer": r.get("eer"), "eer_threshold": r.get("eer_threshold")}
        info["dev"] = {"split": cfg.dev_split, "limit": cfg.max_dev_files, **res}
        if res["student"]["eer"] is not None and res["teacher"]["eer"] is not None:
            info["dev"]["eer_delta_points"] = round(100 * (res["student"]["eer"] - res["teacher"]["eer"]), 3)
        (path / "training.json").write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def add_distil_parser(sub: Any) -> None:
    """Register ``spoof-train distil`` on the CLI's subparsers."""
    p = sub.add_parser("distil", help="distil a trained SSL detector into a student with fewer layers")
    p.add_argument("--teacher", required=True, help="teacher checkpoint directory (contract A)")
    p.add_argument("--manifest", required=True, help="TSV manifest with the training (and dev) split")
    p.add_argument("-o", "--out", dest="out_dir", required=True, help="student checkpoint directory to write")
    p.add_argument(
        "--layers", type=int, required=True, help="student transformer layers (from the teacher's first N)"
    )
    p.add_argument(
        "--hidden-size", type=int, default=None, help="narrower student width (default: teacher's)"
    )
    p.add_argument("--intermediate-size", type=int, default=None)
    p.add_argument("--attention-heads", type=int, default=None)
    p.add_argument("--layer-map", default="uniform", help="uniform | first | pairs like 0:0,3:6,6:12")
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha-ce", type=float, default=1.0)
    p.add_argument("--alpha-kd", type=float, default=1.0)
    p.add_argument("--alpha-hidden", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-5, help="backbone learning rate")
    p.add_argument("--head-lr", type=float, default=1e-3, help="back-end / projection learning rate")
    p.add_argument("--crop-seconds", type=float, default=2.0)
    p.add_argument("--train-split", default="train")
    p.add_argument("--dev-split", default="dev", help="score student and teacher EER here ('' = skip)")
    p.add_argument("--max-train-files", type=int, default=None)
    p.add_argument("--max-dev-files", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json", action="store_true", help="print the student's training.json")
    p.set_defaults(func=cmd_distil)


def cmd_distil(args: argparse.Namespace) -> int:
    keys = {f for f in DistilConfig.__dataclass_fields__ if f != "extra"}
    cfg = DistilConfig(**{k: v for k, v in vars(args).items() if k in keys})
    if cfg.dev_split == "":
        cfg.dev_split = None
    path = distil(cfg)
    info = json.loads((path / "training.json").read_text(encoding="utf-8"))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        dev = info.get("dev", {})
        print(
            f"student: {path} ({info['student_layers']} layers, {info['steps']} steps, {info['seconds']} s)"
        )
        if dev:
            print(f"dev EER: student {dev['student']['eer']:.4f}  teacher {dev['teacher']['eer']:.4f}")
    return 0


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
    """Seeded loader of random crops of a manifest split (at most ``max_files`` rows, a seeded subset),
    shared by distillation and quantisation-aware fine-tuning."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from spoof_train.data import AudioDataset, collate_pad, read_manifest

    rows = read_manifest(manifest, splits=[split])
    if max_files is not None and len(rows) > max_files:
        idx = np.random.default_rng(seed).permutation(len(rows))[:max_files]
        rows = [rows[i] for i in sorted(idx)]
    data = AudioDataset(
        rows, sample_rate=sample_rate, crop_samples=int(crop_seconds * sample_rate), train=True, seed=seed
    )
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=True,
        collate_fn=collate_pad,
        generator=torch.Generator().manual_seed(seed),
    )
