"""One EER per checkpoint (issue 25, item 2): training's dev evaluation, ``spoof-train evaluate`` and the
export report score the same dev rows the same way by default (the checkpoint's window and hop, the mean
of the window scores, as ``spoofsdk.Detector.score`` does), record that rule, and give the same EER.

A tiny wavlm-tiny detector (1 s windows, 0.5 s hop) is trained for two steps in-process on synthetic
clips; the dev clips are 0.6 s (shorter than a window), 1.0 s (exactly one), 1.3 s (one + a tail window)
and 2.2 s (three on the hop grid + a tail window), so every branch of the SDK's cutting rule is used.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 16000
DEV_SECONDS = (0.6, 1.0, 1.3, 2.2)


def _clip(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A tone in noise whose pitch and noise level do not depend on the label: the two classes overlap, so
    the dev EER is neither 0 nor degenerate and a different scoring rule moves it."""
    n = round(seconds * SR)
    t = np.arange(n) / SR
    tone = rng.uniform(0.05, 0.3) * np.sin(2 * math.pi * rng.uniform(100, 400) * t)
    return (tone + rng.uniform(0.01, 0.2) * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MANIFEST.tsv with 16 train clips (0.5 s) and 16 dev clips of the lengths above, half bona fide."""
    root = tmp_path_factory.mktemp("one_eer")
    rng = np.random.default_rng(7)
    lines = ["path\tlabel\tattack\tspeaker\tsplit"]
    for split, n in (("train", 8), ("dev", 8)):
        for i in range(n):
            for label in ("bonafide", "spoof"):
                seconds = 0.5 if split == "train" else DEV_SECONDS[i % len(DEV_SECONDS)]
                rel = f"{split}/{label}_{i}.wav"
                (root / split).mkdir(exist_ok=True)
                sf.write(root / rel, _clip(rng, seconds), SR)
                attack = "-" if label == "bonafide" else "A1"
                lines.append(f"{rel}\t{label}\t{attack}\tspk{i % 3}\t{split}")
    (root / "MANIFEST.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def three(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Train (CLI), evaluate (CLI) and export (API) with their defaults; returns what each wrote."""
    import torch
    import yaml

    from spoof_export import export
    from spoof_train.cli import main

    tmp = tmp_path_factory.mktemp("runs")
    recipe = {
        "name": "one-eer",
        "output_dir": str(tmp / "run"),
        "seed": 0,
        "device": "cpu",
        "model": {"preset": "wavlm-tiny", "detector": {"window_samples": SR, "hop_samples": SR // 2}},
        "data": {"manifest": str(corpus / "MANIFEST.tsv"), "crop_seconds": 0.5, "batch_size": 8},
        "train": {
            "epochs": 1,
            "max_steps": 2,
            "lr": 1e-3,
            "progress": False,
            "tensorboard": False,
            "early_stopping": {"monitor": "dev_eer"},
        },
    }
    (tmp / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", str(tmp / "recipe.yaml")]) == 0
        best = tmp / "run" / "checkpoints" / "best"
        out = tmp / "eval"
        args = ["evaluate", str(best), "--manifest", str(corpus / "MANIFEST.tsv"), "--split", "dev"]
        assert main([*args, "--out", str(out), "--quiet"]) == 0
        exported = export(
            best, output=tmp / "export" / "tiny", dev=corpus, calibrate=False, latency_repeats=1
        )
    finally:
        torch.set_num_threads(threads)
    return {
        "training": json.loads((best / "training.json").read_text()),
        "evaluate": json.loads((out / "metrics.json").read_text()),
        "scores": out / "scores.tsv",
        "report": exported.report,
        "onnx": exported.paths["onnx"],
    }


RULE = {"window_samples": SR, "hop_samples": SR // 2, "aggregate": "mean", "short_clips": "own length"}


def test_every_metrics_file_records_the_checkpoints_window_hop_and_aggregation(three) -> None:
    training, evaluate, report = three["training"], three["evaluate"], three["report"]
    for where, rule in (
        ("training.json", training["dev_scoring"]),
        ("metrics.json", evaluate["scoring"]),
        ("export report", report["dev_eer"]["scoring"]),
    ):
        assert {k: rule[k] for k in RULE} == RULE, where
        assert (rule["window_s"], rule["hop_s"], rule["source"]) == (1.0, 0.5, "checkpoint"), where


def test_the_same_rows_give_the_same_eer_in_training_evaluate_and_the_export_report(three) -> None:
    training, evaluate, report = three["training"], three["evaluate"], three["report"]
    dev = report["dev_eer"]
    assert (evaluate["n_bonafide"], evaluate["n_spoof"], evaluate["n_skipped"]) == (8, 8, 0)
    assert (dev["clips"], dev["n_bonafide"], dev["n_spoof"]) == (16, 8, 8)
    # 0.6 s: 1 window; 1.0 s: 1; 1.3 s: 0 + tail; 2.2 s: 0, 0.5, 1.0 + tail -> (1 + 1 + 2 + 4) * 4
    assert dev["windows"] == 32
    eer = evaluate["eer"]
    assert 0.0 < eer < 1.0  # scores that overlap: a different scoring rule would move the EER
    assert training["dev_eer"] == pytest.approx(eer, abs=1e-9)
    assert dev["torch"] == pytest.approx(eer, abs=1e-9)
    assert dev["onnx"] == pytest.approx(eer, abs=1e-9)


def test_evaluates_clip_scores_are_the_sdks(three, corpus: Path) -> None:
    """Score by score: ``evaluate``'s clip scores are the SDK's clip log-odds of the exported file with the
    sign flipped (uncalibrated: scale 1, bias 0; speech gate off, as the report's rule says)."""
    from spoofsdk import Detector

    det = Detector(three["onnx"], backend="cpu", speech_gate=False)
    rows = [line.split("\t") for line in Path(three["scores"]).read_text().splitlines()[1:]]
    assert len(rows) == 16
    for rid, _label, _attack, score in rows:
        pcm, sr = sf.read(corpus / "dev" / f"{rid}.wav", dtype="float32")
        assert det.score(pcm, sr).logit == pytest.approx(-float(score), abs=2e-4), rid


def test_an_explicit_window_is_used_and_recorded(three, corpus: Path, tmp_path: Path) -> None:
    from spoof_train.train import evaluate

    best = Path(three["evaluate"]["checkpoint"])
    default = evaluate(best, corpus / "MANIFEST.tsv", "dev", progress=False)  # the API's default is the CLI's
    assert default["scoring"] == three["evaluate"]["scoring"]
    assert default["eer"] == three["evaluate"]["eer"]
    res = evaluate(best, corpus / "MANIFEST.tsv", "dev", chunk_seconds=0.5, progress=False, out_dir=tmp_path)
    rule = json.loads((tmp_path / "metrics.json").read_text())["scoring"]
    assert rule == res["scoring"]
    assert (rule["window_samples"], rule["hop_samples"], rule["short_clips"]) == (
        8000,
        8000,
        "repeat-padded to one window",
    )
    assert rule["source"] == "override: chunk_seconds=0.5"


def test_the_console_summary_is_a_table_in_percent_with_the_number_of_clips(three) -> None:
    from types import SimpleNamespace

    from spoof_export.cli import _summary

    report = three["report"]
    text = _summary(SimpleNamespace(report=report, paths={}))
    assert "{" not in text  # no raw JSON
    assert '"torch"' not in text
    assert "16 clips (8 bona fide, 8 spoof), 1 s windows every 0.5 s, mean per clip" in text
    line = next(x for x in text.splitlines() if "onnx (fp32)" in x)
    assert line.split()[-1] == f"{100 * report['dev_eer']['onnx']:.2f}"
    assert "one clip moves the EER by 12.50 points" in text  # 8 per class: no deltas
    assert report["dev_eer"]["delta_points_vs_fp32"] is None
