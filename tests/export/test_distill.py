"""spoof-train distil: student initialisation from the teacher, the three losses, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from spoof_train.distill import DistilConfig, init_student, parse_layer_map, student_config
from spoof_train.errors import ConfigError


def _teacher(tiny_checkpoint: Path):
    from spoof_train.checkpoint import load_checkpoint

    return load_checkpoint(tiny_checkpoint)


def test_layer_maps():
    assert parse_layer_map("uniform", 2, 4) == [(0, 0), (1, 2), (2, 4)]
    assert parse_layer_map("first", 2, 4) == [(0, 0), (1, 1), (2, 2)]
    assert parse_layer_map("0:0, 2:3", 2, 4) == [(0, 0), (2, 3)]
    with pytest.raises(ConfigError, match=r"student index 0\.\.2 and teacher index 0\.\.4"):
        parse_layer_map("3:1", 2, 4)
    with pytest.raises(ConfigError, match="expected 'uniform', 'first' or pairs"):
        parse_layer_map("deep", 2, 4)


def test_student_starts_as_the_teachers_first_layers(tiny_checkpoint):
    from spoof_train.models import build_detector

    teacher, tconfig, _ = _teacher(tiny_checkpoint)
    cfg = DistilConfig(teacher=str(tiny_checkpoint), manifest="-", out_dir="-", layers=1)
    sconfig = student_config(tconfig, cfg)
    student = build_detector(sconfig, seed=123)
    counts = init_student(teacher, student, teacher_layers=2, student_layers=1)
    assert counts["kept_random"] == 0
    student.eval()  # no layerdrop
    wave = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        t_hidden, _ = teacher.backbone(wave)
        s_hidden, _ = student.backbone(wave)
    assert s_hidden.shape[1] == 2  # CNN features + 1 layer
    torch.testing.assert_close(s_hidden, t_hidden[:, :2])  # exactly the teacher's first layer


def test_narrower_student_is_sliced_from_the_teacher(tiny_checkpoint):
    from spoof_train.models import build_detector

    teacher, tconfig, _ = _teacher(tiny_checkpoint)
    cfg = DistilConfig(
        teacher=str(tiny_checkpoint),
        manifest="-",
        out_dir="-",
        layers=1,
        hidden_size=16,
        intermediate_size=32,
    )
    student = build_detector(student_config(tconfig, cfg), seed=0)
    counts = init_student(teacher, student, teacher_layers=2, student_layers=1)
    assert counts["sliced"] > 0
    assert counts["kept_random"] == 0
    ts, ss = teacher.state_dict(), student.state_dict()
    key = next(k for k in ss if k.endswith("feed_forward.intermediate_dense.weight"))
    torch.testing.assert_close(ss[key], ts[key][:32, :16])
    with pytest.raises(ConfigError, match="expected a multiple of the 2 attention heads"):
        student_config(
            tconfig, DistilConfig(teacher="-", manifest="-", out_dir="-", layers=1, hidden_size=15)
        )
    with pytest.raises(
        ConfigError, match=r"distil layers: expected 1\.\.2 \(the teacher's layers\), given 3"
    ):
        student_config(tconfig, DistilConfig(teacher="-", manifest="-", out_dir="-", layers=3))


def test_distil_cli_trains_saves_and_scores_student_and_teacher(
    tiny_checkpoint, labelled_dir, tmp_path, capsys
):
    from spoof_train import cli
    from spoof_train.checkpoint import load_checkpoint

    out = tmp_path / "student"
    code = cli.main(
        [
            "distil",
            "--teacher",
            str(tiny_checkpoint),
            "--manifest",
            str(labelled_dir / "MANIFEST.tsv"),
            "-o",
            str(out),
            "--layers",
            "1",
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--crop-seconds",
            "1",
        ]
    )
    assert code == 0
    assert "dev EER: student" in capsys.readouterr().out
    model, config, info = load_checkpoint(out)
    assert config.kept_layers == 1
    assert info["origin"] == "distil"
    assert info["steps"] == 2
    assert info["layer_map"] == [[0, 0], [1, 2]]
    assert set(info["final_losses"]) == {"step", "loss", "ce", "kd", "hidden"}
    assert all(v >= 0 for v in info["final_losses"].values())
    assert 0.0 <= info["dev"]["student"]["eer"] <= 1.0
    assert 0.0 <= info["dev"]["teacher"]["eer"] <= 1.0
    assert json.loads((out / "training.json").read_text())["dev"]["split"] == "dev"
    assert model(torch.zeros(1, 16000)).shape == (1, 2)


def _kd_by_hand(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> float:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch, in float64 numpy."""
    import numpy as np

    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z / temperature
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    lt = log_softmax(teacher_logits.double().numpy())
    ls = log_softmax(student_logits.double().numpy())
    return temperature**2 * float((np.exp(lt) * (lt - ls)).sum(axis=1).mean())


def test_kd_by_hand_on_numbers():
    # the reference itself, on numbers worked on paper: T = 2, teacher [0, 2] -> p_t = softmax([0, 1]),
    # student [0, 0] -> p_s = [0.5, 0.5]; p_t = [0.26894, 0.73106],
    # KL = 0.26894 ln(0.53788) + 0.73106 ln(1.46212) = -0.16685 + 0.27779 = 0.11094; T^2 KL = 0.44378
    assert _kd_by_hand(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 2.0]]), 2.0) == pytest.approx(
        0.44378, abs=1e-5
    )


def test_pure_kd_distillation_halves_the_kd_loss(labelled_dir, tmp_path):
    """Pure KD (alpha_ce = alpha_hidden = 0) into a narrower student of a teacher whose logits depend on the
    input: the logged KD term of step 1 equals T^2 * KL computed by hand on the replayed first batch, and the
    KD loss falls by >= 50 % on the crops of the first epoch and in the run's own step log. (Distillation
    trains in fit, which draws new crops every epoch, so the run is 80 steps.)"""
    import dataclasses

    from spoof_train.checkpoint import load_checkpoint, save_checkpoint
    from spoof_train.distill import crop_train_loader, distil
    from spoof_train.models import build_detector
    from spoof_train.presets import get_preset

    torch.set_num_threads(1)
    # no dropout anywhere, so the student's training-mode forward of step 1 can be replayed exactly
    tconfig = dataclasses.replace(
        get_preset("wavlm-tiny", backend_config={"dropout": 0.0}), window_samples=16000, hop_samples=8000
    )
    model = build_detector(tconfig, seed=0)
    with torch.no_grad():  # a fresh head outputs zero logits: give the teacher something to teach
        last = model.backend.mlp[-1]
        last.weight.copy_(torch.randn(last.weight.shape, generator=torch.Generator().manual_seed(1)))
    teacher_dir = save_checkpoint(tmp_path / "teacher", model, tconfig, {"origin": "tests/export"})
    manifest = labelled_dir / "MANIFEST.tsv"
    cfg = DistilConfig(
        teacher=str(teacher_dir),
        manifest=str(manifest),
        out_dir=str(tmp_path / "student"),
        layers=1,
        hidden_size=16,
        alpha_ce=0.0,
        alpha_kd=1.0,
        alpha_hidden=0.0,
        temperature=2.0,
        epochs=100,
        max_steps=80,
        batch_size=4,
        crop_seconds=0.5,
        dev_split=None,
    )
    out = distil(cfg)
    info = json.loads((out / "training.json").read_text())
    history = info["loss_history_every_10"]
    assert [h["step"] for h in history] == [1, 11, 21, 31, 41, 51, 61, 71]
    assert all(h["loss"] == pytest.approx(h["kd"]) for h in history)  # pure KD: the loss is the KD term

    # step 1, replayed: the same seeded first epoch of crops, the same student initialisation
    teacher, _, _ = load_checkpoint(teacher_dir)
    teacher.eval()
    student0 = build_detector(student_config(tconfig, cfg), seed=cfg.seed)
    init_student(teacher, student0, teacher_layers=2, student_layers=1)
    student0.train()  # as in step 1 (no dropout, no layerdrop: the same function as eval)
    student1, _, _ = load_checkpoint(out)
    student1.eval()
    loader = crop_train_loader(manifest, "train", sample_rate=16000, crop_seconds=0.5, batch_size=4, seed=0)
    before, after = [], []
    with torch.no_grad():
        for batch in loader:
            t_logits = teacher(batch["wave"], batch["lengths"])
            before.append(_kd_by_hand(student0(batch["wave"], batch["lengths"]), t_logits, 2.0))
            after.append(_kd_by_hand(student1(batch["wave"], batch["lengths"]), t_logits, 2.0))
    assert history[0]["kd"] == pytest.approx(before[0], rel=1e-5)  # measured agreement: 3e-9
    assert sum(before) / len(before) > 0.1  # the student starts far from the teacher (measured 0.139)
    # the KD loss on the same crops, before and after: mean per batch 0.139 -> 0.031 (a fall of 78 %)
    assert sum(after) <= 0.5 * sum(before), (before, after)
    # and the logged training KD of every step (new crops every epoch): the mean of the last 8 steps against
    # the first 8 (measured 0.134 -> 0.041)
    with (Path(info["run_dir"]) / "steps.csv").open() as f:
        kd = [float(row["kd"]) for row in csv.DictReader(f)]
    assert len(kd) == 80
    assert sum(kd[-8:]) <= 0.5 * sum(kd[:8]), kd


def test_distil_rejects_bad_settings(tiny_checkpoint, tmp_path):
    from spoof_train.distill import distil

    with pytest.raises(ConfigError, match="all loss weights are 0"):
        distil(
            DistilConfig(
                teacher=str(tiny_checkpoint),
                manifest="-",
                out_dir=str(tmp_path / "s"),
                layers=1,
                alpha_ce=0,
                alpha_kd=0,
                alpha_hidden=0,
            )
        )
    with pytest.raises(ConfigError, match="distil temperature: expected a number > 0, given -1"):
        distil(
            DistilConfig(
                teacher=str(tiny_checkpoint),
                manifest="-",
                out_dir=str(tmp_path / "s"),
                layers=1,
                temperature=-1,
            )
        )


def test_distil_killed_and_resumed_equals_the_uninterrupted_run(
    tiny_checkpoint, labelled_dir, tmp_path, monkeypatch, crash_at
):
    """Distillation trains in fit: a narrower student (its hidden-state projections live in the objective
    and ride in the trainer state) killed in epoch 2 and resumed with --resume ends bit-identical to the
    run that was never interrupted, with the same step log."""
    from spoof_train.distill import distil

    torch.set_num_threads(1)
    base = {
        "teacher": str(tiny_checkpoint),
        "manifest": str(labelled_dir / "MANIFEST.tsv"),
        "layers": 1,
        "hidden_size": 16,
        "epochs": 3,
        "max_steps": 8,
        "batch_size": 4,
        "crop_seconds": 0.5,
        "dev_split": None,
    }
    full = distil(DistilConfig(out_dir=str(tmp_path / "full"), **base))
    crash_at(6)
    with pytest.raises(KeyboardInterrupt):
        distil(DistilConfig(out_dir=str(tmp_path / "cut"), **base))
    monkeypatch.undo()
    assert not (tmp_path / "cut").exists()
    assert (tmp_path / "cut.run" / "checkpoints" / "last").is_dir()
    with pytest.raises(ConfigError, match=r"run folder .* already exists"):
        distil(DistilConfig(out_dir=str(tmp_path / "cut"), **base))
    cut = distil(DistilConfig(out_dir=str(tmp_path / "cut"), resume=True, **base))

    from spoof_train.checkpoint import load_checkpoint

    a, _, info_a = load_checkpoint(full)
    b, _, info_b = load_checkpoint(cut)
    for key, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[key]), key
    assert info_a["steps"] == info_b["steps"] == 8
    assert info_a["final_losses"] == info_b["final_losses"]

    def losses(run: Path) -> list[list[str]]:  # every column but the time-dependent items_per_s
        return [line.split(",")[:-1] for line in (run / "steps.csv").read_text().splitlines()]

    assert len(losses(tmp_path / "cut.run")) == 9
    assert losses(tmp_path / "cut.run") == losses(tmp_path / "full.run")
    assert "resumed from" in (tmp_path / "cut.run" / "train.log").read_text()


@pytest.mark.slow
def test_distil_under_torchrun_shards_the_data_across_two_ranks(tiny_checkpoint, labelled_dir, tmp_path):
    """``torchrun -m spoof_train.cli distil`` on 2 CPU ranks (gloo): the narrower student's projections are
    all-reduced with the student (DDP wraps model + objective), each rank draws half of the 16 crops, so an
    epoch is 2 steps of 2 x 4 instead of 4 steps; rank 0 alone writes the student and the run folder."""
    import os
    import subprocess
    import sys

    from spoof_train.checkpoint import load_checkpoint
    from spoof_train.distributed import find_free_port

    out = tmp_path / "student"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={find_free_port()}",
        "-m",
        "spoof_train.cli",
        "distil",
        "--teacher",
        str(tiny_checkpoint),
        "--manifest",
        str(labelled_dir / "MANIFEST.tsv"),
        "-o",
        str(out),
        "--layers",
        "1",
        "--hidden-size",
        "16",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--crop-seconds",
        "0.5",
        "--dev-split",
        "",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    _, config, info = load_checkpoint(out)
    assert config.kept_layers == 1
    assert info["steps"] == 4  # 2 epochs x 2 steps: each rank took half of every epoch
    with (tmp_path / "student.run" / "steps.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]
    assert proc.stdout.count("student: ") == 1  # rank 0 reports; rank 1 stays quiet
