"""spoof-train CLI end to end on a synthetic manifest: train, evaluate, explain, analyse-layers, init,
make-manifest, and the documented exit codes for bad input (issue item 11)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from spoof_train.checkpoint import load_checkpoint
from spoof_train.cli import EXIT_CHECKPOINT, EXIT_CONFIG, EXIT_DATA, main
from spoof_train.data import Utterance, read_manifest, write_manifest


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tone(rng: np.random.Generator, n: int) -> np.ndarray:
    f0 = rng.uniform(150, 250)
    return (0.3 * np.sin(2 * math.pi * f0 * np.arange(n) / 16000) + 0.05 * rng.standard_normal(n)).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train: 12 bona fide tones + 12 noise spoofs (attack A1); dev: 4 + 4 (A1, A2 unseen); some 8 kHz."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    rows = []
    for split, n, attacks in (("train", 12, ["A1"]), ("dev", 4, ["A1", "A2"])):
        for i in range(n):
            for label in ("bonafide", "spoof"):
                sr = 8000 if i % 3 == 0 else 16000
                length = int(sr * (0.25 + 0.05 * (i % 4)))
                wave = _tone(rng, length) if label == "bonafide" else 0.2 * rng.standard_normal(length)
                path = root / split / label / f"{label}_{i}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, wave.astype(np.float32), sr)
                attack = "-" if label == "bonafide" else attacks[i % len(attacks)]
                rows.append(Utterance(str(path), label, attack, f"spk{i % 3}", split))
    write_manifest(root / "manifest.tsv", rows)
    return root


def _recipe(tmp: Path, corpus: Path, **train: Any) -> Path:
    t = {"epochs": 2, "lr": 3e-3, "progress": False, "tensorboard": False, "log_every_steps": 1, **train}
    cfg = {
        "name": "cli-test",
        "output_dir": str(tmp / "run"),
        "seed": 0,
        "device": "cpu",
        "model": {
            "preset": "wavlm-tiny",
            "detector": {
                "backend": {"name": "layer-weighted", "config": {}},
                # a layer-weighted back-end needs every hidden state: no layerdrop, no SpecAugment
                "backbone": {"config": {"layerdrop": 0.0, "apply_spec_augment": False}},
            },
        },
        "data": {
            "manifest": str(corpus / "manifest.tsv"),
            "crop_seconds": 0.25,
            "eval_chunk_seconds": 0.25,
            "batch_size": 8,
            "cache_audio": True,
        },
        "train": t,
    }
    import yaml

    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    tmp = tmp_path_factory.mktemp("trained")
    assert main(["train", str(_recipe(tmp, corpus))]) == 0
    best = tmp / "run" / "checkpoints" / "best"
    assert (best / "model.safetensors").is_file()
    return best


def test_train_prints_the_best_checkpoint(
    tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _recipe(tmp_path, corpus, epochs=1)
    assert main(["train", str(recipe), "--set", "train.lr=1e-3", "--set", "data.batch_size=12"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["best_checkpoint"].endswith("checkpoints/best")
    info = json.loads((Path(out["best_checkpoint"]) / "training.json").read_text())
    assert info["train_attacks"] == ["A1"]
    assert info["data"]["n_train"] == 24
    resolved = (tmp_path / "run" / "run_config.yaml").read_text()
    assert "lr: 0.001" in resolved
    assert "batch_size: 12" in resolved


def test_print_config(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(_recipe(tmp_path, corpus)), "--print-config", "--set", "seed=9"]) == 0
    assert "seed: 9" in capsys.readouterr().out


def _det_by_hand(bona: np.ndarray, spoof: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Miss and false-alarm rates at a threshold below all scores and at every distinct score
    (bona fide when score > threshold)."""
    thresholds = np.concatenate(([-np.inf], np.unique(np.concatenate((bona, spoof)))))
    miss = np.array([np.mean(bona <= t) for t in thresholds])
    fa = np.array([np.mean(spoof > t) for t in thresholds])
    return miss, fa


def _eer_by_hand(bona: np.ndarray, spoof: np.ndarray) -> float:
    miss, fa = _det_by_hand(bona, spoof)
    i = int(np.argmin(np.abs(miss - fa)))
    return float((miss[i] + fa[i]) / 2)


def _min_tdcf_by_hand(bona: np.ndarray, spoof: np.ndarray, asv_lines: list[str], version: str) -> float:
    """min t-DCF with the ASV operating point at the ASV EER threshold (ASVspoof 2019 legacy / 2021 revised
    formulas and cost models: Pspoof 0.05, Ptar 0.9405, Pnon 0.0095, Cmiss 1, Cfa 10)."""
    asv: dict[str, list[float]] = {"target": [], "nontarget": [], "spoof": []}
    for line in asv_lines:
        *_, key, value = line.split()
        asv[key].append(float(value))
    tar, non, spf = (np.array(asv[k]) for k in ("target", "nontarget", "spoof"))
    m_asv, f_asv = _det_by_hand(tar, non)
    thresholds = np.concatenate(([-np.inf], np.unique(np.concatenate((tar, non)))))
    i = int(np.argmin(np.abs(m_asv - f_asv)))
    t_asv = thresholds[i] if np.isfinite(thresholds[i]) else min(tar.min(), non.min()) - 0.001
    pfa, pmiss, pfa_spoof = np.mean(non >= t_asv), np.mean(tar < t_asv), np.mean(spf >= t_asv)
    p_spoof, p_tar, p_non = 0.05, 0.95 * 0.99, 0.95 * 0.01
    miss, fa = _det_by_hand(bona, spoof)
    if version == "2019":
        c1 = p_tar * (1 - pmiss) - p_non * 10 * pfa
        c2 = 10 * p_spoof * pfa_spoof
        return float(min((c1 * miss + c2 * fa) / min(c1, c2)))
    c0 = p_tar * pmiss + p_non * 10 * pfa
    c1 = p_tar - c0
    c2 = p_spoof * 10 * pfa_spoof
    return float(min((c0 + c1 * miss + c2 * fa) / (c0 + min(c1, c2))))


def _check_metrics_by_hand(res: dict[str, Any], rows: list[list[str]], asv_lines: list[str]) -> None:
    """evaluate's metrics recomputed from the rows of its scores.tsv (id, label, attack, score)."""
    bona = np.array([float(r[3]) for r in rows if r[1] == "bonafide"])
    spoof = {a: np.array([float(r[3]) for r in rows if r[1] == "spoof" and r[2] == a]) for a in ("A1", "A2")}
    all_spoof = np.concatenate(list(spoof.values()))
    assert res["eer"] == pytest.approx(_eer_by_hand(bona, all_spoof), abs=1e-9)
    for attack in ("A1", "A2"):
        assert res["per_attack"][attack]["eer"] == pytest.approx(_eer_by_hand(bona, spoof[attack]), abs=1e-9)
    assert res["eer_seen"] == pytest.approx(_eer_by_hand(bona, spoof["A1"]), abs=1e-9)  # A1 was trained on
    assert res["eer_unseen"] == pytest.approx(_eer_by_hand(bona, spoof["A2"]), abs=1e-9)
    miss, fa = _det_by_hand(bona, all_spoof)
    # ASVspoof 5 costs: Pspoof 0.05, Cmiss 1, Cfa 10; normalised by min(0.95, 0.5)
    assert res["min_dcf"] == pytest.approx(min((0.95 * miss + 0.5 * fa) / 0.5), rel=1e-6, abs=1e-12)
    thr = -math.log(0.95 / 0.5)  # the Bayes threshold of the same costs, scores read as LLRs
    act = (0.95 * np.mean(bona < thr) + 0.5 * np.mean(all_spoof >= thr)) / 0.5
    assert res["act_dcf"] == pytest.approx(act, rel=1e-6)
    cllr = (np.mean(np.log2(1 + np.exp(-bona))) + np.mean(np.log2(1 + np.exp(all_spoof)))) / 2
    assert res["cllr"] == pytest.approx(cllr, rel=1e-5)
    # the t-DCF path: the ASV file's target / nontarget / spoof scores reach both t-DCF versions
    for version in ("2019", "2021"):
        want = _min_tdcf_by_hand(bona, all_spoof, asv_lines, version)
        assert res[f"min_tdcf_{version}"] == pytest.approx(want, rel=1e-5, abs=1e-12), version


def test_evaluate_writes_metrics_scores_and_det(
    tmp_path: Path, corpus: Path, trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asv = tmp_path / "asv.txt"
    rng = np.random.default_rng(1)
    lines = [f"spk - target {v:.3f}" for v in rng.normal(3, 1, 20)]
    lines += [f"spk - nontarget {v:.3f}" for v in rng.normal(-3, 1, 20)]
    lines += [f"spk A1 spoof {v:.3f}" for v in rng.normal(1, 1, 20)]
    asv.write_text("\n".join(lines) + "\n")
    m = str(corpus / "manifest.tsv")
    code = main(
        ["evaluate", str(trained), "--manifest", m, "--split", "dev", "--out", str(tmp_path / "ev"),
         "--asv-scores", str(asv), "--chunk-seconds", "0.25", "--json", "--quiet"]
    )  # fmt: skip
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_bonafide"] == 4
    assert res["n_spoof"] == 4
    assert res["per_attack"]["A1"]["seen"] is True
    assert res["per_attack"]["A2"]["seen"] is False
    assert res["n_spoof_seen"] == 2
    assert res["n_spoof_unseen"] == 2
    scores = (tmp_path / "ev" / "scores.tsv").read_text().splitlines()
    assert scores[0] == "id\tlabel\tattack\tscore"
    assert len(scores) == 9
    rows = [line.split("\t") for line in scores[1:]]
    score_of = {r[0]: float(r[3]) for r in rows}
    bona = np.array([float(r[3]) for r in rows if r[1] == "bonafide"])
    spoof = np.array([float(r[3]) for r in rows if r[1] == "spoof"])
    # the score sign: higher = bona fide (the trained model puts every tone above every noise: EER 0)
    assert bona.min() > spoof.max()
    assert res["eer"] == 0.0
    _check_metrics_by_hand(res, rows, lines)
    # each score is the model's mean over 0.25 s windows of logit_bonafide - logit_spoof (16 kHz clips)
    checked = 0
    model, _, _ = load_checkpoint(trained)
    model.eval()
    for path in sorted((corpus / "dev").rglob("*.wav")):
        wave, sr = sf.read(path, dtype="float32")
        if sr != 16000:
            continue
        w = 4000
        starts = sorted({*range(0, wave.size - w + 1, w), wave.size - w})
        with torch.no_grad():
            logits = model(torch.from_numpy(np.stack([wave[s : s + w] for s in starts])))
        key = next(k for k in score_of if Path(k).stem == path.stem and path.parent.name in k)
        assert score_of[key] == pytest.approx(float((logits[:, 0] - logits[:, 1]).mean()), abs=1e-4)
        checked += 1
    assert checked == 4
    # the same trials with one bona fide and one spoof label swapped: overlapping scores, so every metric
    # has a value that a wrong formula, sign or trial split would change
    swapped = [
        dataclasses.replace(
            u,
            label="spoof" if u.label == "bonafide" else "bonafide",
            attack="A2" if u.label == "bonafide" else "-",
        )
        if u.split == "dev" and Path(u.path).stem in ("bonafide_1", "spoof_2")
        else u
        for u in read_manifest(m)
    ]
    write_manifest(tmp_path / "swapped.tsv", swapped)
    code = main(
        ["evaluate", str(trained), "--manifest", str(tmp_path / "swapped.tsv"), "--split", "dev",
         "--out", str(tmp_path / "ev2"), "--asv-scores", str(asv), "--chunk-seconds", "0.25",
         "--json", "--quiet"]
    )  # fmt: skip
    assert code == 0
    res2 = json.loads(capsys.readouterr().out)
    rows2 = [line.split("\t") for line in (tmp_path / "ev2" / "scores.tsv").read_text().splitlines()[1:]]
    assert {r[0]: float(r[3]) for r in rows2} == score_of  # the same scores, other labels
    assert 0.2 <= res2["eer"] <= 0.3  # measured 0.25: one of four trials of each class on the wrong side
    _check_metrics_by_hand(res2, rows2, lines)
    assert (tmp_path / "ev" / "det.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["eer"] == res["eer"]
    log_text = (tmp_path / "ev" / "evaluate.log").read_text()  # the run folder's own log
    assert f"EER {100 * res['eer']:.2f} % over" in log_text
    # human-readable output
    code = main(
        ["evaluate", str(trained), "--manifest", str(corpus / "manifest.tsv"), "--split", "dev", "--quiet"]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "EER" in text
    assert "unseen" in text


def test_explain_png_and_json(tmp_path: Path, corpus: Path, trained: Path) -> None:
    wav = next((corpus / "dev" / "spoof").glob("*.wav"))
    assert (
        main(["explain", str(trained), str(wav), "-o", str(tmp_path), "--steps", "32", "--target", "spoof"])
        == 0
    )
    res = json.loads((tmp_path / "explain.json").read_text())
    assert res["target"] == "spoof"
    assert res["time"]["relative_delta"] < 0.05  # completeness: attributions add up to f(x) - f(baseline)
    assert res["time_frequency"]["relative_delta"] < 0.05
    assert len(res["time"]["frame_attributions"]) == math.ceil(res["seconds_explained"] * 100)
    assert (tmp_path / "explain.png").read_bytes()[:4] == b"\x89PNG"


def test_analyse_layers_from_checkpoints(
    tmp_path: Path, trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init = tmp_path / "init"
    assert main(["init", "--preset", "wavlm-tiny", "--backend", "layer-weighted", "-o", str(init)]) == 0
    capsys.readouterr()
    code = main(["analyse-layers", "--checkpoint", str(trained), "--checkpoint", str(init),
                 "-o", str(tmp_path / "la"), "--coverage", "0.6", "--json"])  # fmt: skip
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["total_layers"] == 2
    assert len(rep["runs"]) == 2
    assert rep["runs"]["init"] == pytest.approx([1 / 3] * 3)  # untrained logits are zero: uniform weights
    assert 1 <= rep["recommended_layers"] <= 2
    assert (tmp_path / "la" / "layer_weights.png").is_file()
    assert (tmp_path / "la" / "layer_weights.md").is_file()


def test_analyse_layers_trains_a_layer_weighted_model(
    tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _recipe(tmp_path, corpus, epochs=1)
    # the back-end and layer count in the recipe are replaced: all layers, layer-weighted
    code = main(["analyse-layers", str(recipe), "--set", "model.detector.backend.name=ffn",
                 "-o", str(tmp_path / "la"), "--json"])  # fmt: skip
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["total_layers"] == 2
    assert sum(rep["weights"]) == pytest.approx(1.0)
    assert (tmp_path / "run" / "checkpoints" / "best" / "model.safetensors").is_file()


def test_analyse_layers_rejects_other_backends(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ffn = tmp_path / "ffn"
    assert main(["init", "--preset", "wavlm-tiny", "--backend", "ffn", "-o", str(ffn)]) == 0
    assert main(["analyse-layers", "--checkpoint", str(ffn), "-o", str(tmp_path / "x")]) == EXIT_CONFIG
    assert "needs a 'layer-weighted' back-end" in capsys.readouterr().err


def test_make_manifest_from_folders(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.tsv"
    assert main(["make-manifest", "folders", "--audio-root", str(corpus), "-o", str(out)]) == 0
    assert "wrote 32 rows" in capsys.readouterr().out
    assert (
        main(["make-manifest", "asvspoof2019-la", "--audio-root", str(corpus), "-o", str(out)]) == EXIT_DATA
    )


# ---- bad input: typed errors, documented exit codes, readable messages


def test_bad_config_key_and_layers_too_large(
    tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = str(_recipe(tmp_path, corpus))
    assert main(["train", recipe, "--set", "train.lrr=1"]) == EXIT_CONFIG
    assert "unknown key 'train.lrr'" in capsys.readouterr().err
    assert main(["train", recipe, "--set", "model.detector.layers=5"]) == EXIT_CONFIG
    assert "layers=5 is larger than the backbone" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "nope.yaml")]) == EXIT_CONFIG


def test_missing_and_corrupt_audio(
    tmp_path: Path, corpus: Path, trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spoof_train.data import read_manifest

    rows = [r for r in read_manifest(corpus / "manifest.tsv") if r.split == "dev"]
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00not audio")
    rows.append(Utterance(str(tmp_path / "missing.wav"), "spoof", "A1", "x", "dev"))
    rows.append(Utterance(str(bad), "bonafide", "-", "x", "dev"))
    m = tmp_path / "bad.tsv"
    write_manifest(m, rows)
    args = [
        "evaluate",
        str(trained),
        "--manifest",
        str(m),
        "--split",
        "dev",
        "--quiet",
        "--chunk-seconds",
        "0.25",
    ]
    assert main(args) == EXIT_DATA
    assert "missing.wav" in capsys.readouterr().err
    assert main([*args, "--on-error", "skip", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_skipped"] == 2  # the missing file and the undecodable one, reported
    assert res["n_bonafide"] + res["n_spoof"] == 8


def test_training_with_a_missing_file_fails_or_skips_by_flag(
    tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spoof_train.data import read_manifest

    rows = read_manifest(corpus / "manifest.tsv")
    rows.append(Utterance(str(tmp_path / "gone.wav"), "spoof", "A1", "x", "train"))
    write_manifest(tmp_path / "m.tsv", rows)
    recipe = str(_recipe(tmp_path, corpus, epochs=1))
    manifest = f"data.manifest={tmp_path / 'm.tsv'}"
    assert main(["train", recipe, "--set", manifest]) == EXIT_DATA
    assert "gone.wav" in capsys.readouterr().err
    assert main(["train", recipe, "--set", manifest, "--set", "data.on_error=skip"]) == 0
    info = json.loads((tmp_path / "run" / "checkpoints" / "best" / "training.json").read_text())
    assert info["train_items"] == 24  # the missing file was left out (and logged)


def test_empty_split_unknown_label_and_missing_manifest(
    tmp_path: Path, corpus: Path, trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = str(corpus / "manifest.tsv")
    assert main(["evaluate", str(trained), "--manifest", m, "--split", "eval", "--quiet"]) == EXIT_DATA
    assert "split 'eval'" in capsys.readouterr().err
    assert (
        main(["evaluate", str(trained), "--manifest", str(tmp_path / "no.tsv"), "--split", "dev"])
        == EXIT_DATA
    )
    text = (corpus / "manifest.tsv").read_text().replace("\tspoof\t", "\tfake\t", 1)
    (tmp_path / "labels.tsv").write_text(text)
    assert (
        main(["evaluate", str(trained), "--manifest", str(tmp_path / "labels.tsv"), "--split", "dev"])
        == EXIT_DATA
    )
    assert "fake" in capsys.readouterr().err


def test_checkpoint_errors(
    tmp_path: Path, corpus: Path, trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    m = str(corpus / "manifest.tsv")
    assert main(["evaluate", str(tmp_path / "none"), "--manifest", m, "--split", "dev"]) == EXIT_CHECKPOINT
    bad = tmp_path / "mismatch"
    shutil.copytree(trained, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["backend"]["config"]["hidden"] = 17  # the weights were trained with another head size
    (bad / "config.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    assert main(["evaluate", str(bad), "--manifest", m, "--split", "dev", "--quiet"]) == EXIT_CHECKPOINT
    assert "does not match" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "ckpt"])  # --manifest and --split are required
    assert exc.value.code == 2
    assert "--manifest" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--version"], ["-v", "--version", "train"]])
def test_version(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlib.metadata import version

    monkeypatch.setenv("COLUMNS", "20")  # one line, whatever the terminal width
    with pytest.raises(SystemExit) as exc:
        main(argv)  # before the required COMMAND is checked
    assert exc.value.code == 0
    out, err = capsys.readouterr()
    assert (out, err) == (f"spoof-train {version('spoofsdk')} (torch {version('torch')})\n", "")
