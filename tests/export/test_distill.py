"""spoof-train distil: student initialisation from the teacher, the three losses, the CLI."""

from __future__ import annotations

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
