"""Score calibration as a stage of export: ``spoof-export calibrate MODEL --dev MANIFEST``, export with and
without a dev set, the typed contract-A boundary, and their errors.

The tiny random detector has no idea what a spoof is, so the dev labels are made from its own ranking of
the clips (the upper half spoof, with the two clips at the boundary swapped so the classes overlap): the
logistic fit then has a positive slope and an EER above 0, as a trained model's would. The clips are
synthetic tones, which the SDK's speech gate (Silero VAD) rightly calls non-speech, so the tests score
every window (``--no-speech-gate``) except the one that checks the gate's error message.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spoof_export import cli, export
from spoof_export.errors import CalibrationError, CheckpointLoadError, ExportArgumentError

from .conftest import _tiny_checkpoint, _write_clips


@pytest.fixture(scope="module")
def uncalibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A checkpoint without a calibration in training.json and its FP32 export (no dev set)."""
    d = tmp_path_factory.mktemp("uncal")
    ckpt = _tiny_checkpoint(d / "ckpt")
    result = export(ckpt, output=d / "m", latency_repeats=1)
    return ckpt, result.paths["onnx"]


def _raw_scores(model: Path, paths: list[Path]) -> np.ndarray:
    """Mean window logit difference of each clip, scored by the SDK with the model's window and hop."""
    import soundfile as sf

    from spoofsdk import Detector

    det = Detector(model, backend="cpu", num_threads=1, speech_gate=False)
    cal = det.manifest.calibration
    z = np.array([det.score(*sf.read(p, dtype="float32")).logit for p in paths])
    return (z - cal.bias) / cal.scale


@pytest.fixture(scope="module")
def ranked_dev(uncalibrated: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """14 dev clips (1.0 to 2.3 s: one window up to several) labelled by the model's ranking, 4 train rows,
    and the raw scores of the dev clips."""
    _, model = uncalibrated
    d = tmp_path_factory.mktemp("ranked")
    paths = [
        _write_clips(d / "audio", 1, seconds=1.0 + 0.1 * i, seed=10 + i)[0].rename(
            d / "audio" / f"c{i:02d}.wav"
        )
        for i in range(14)
    ]
    raw = _raw_scores(model, paths)
    order = np.argsort(raw)
    spoof = np.zeros(len(paths), dtype=bool)
    spoof[order[7:]] = True
    spoof[order[6]], spoof[order[7]] = True, False  # overlap at the boundary: EER > 0
    labels = ["spoof" if s else "bonafide" for s in spoof]
    lines = ["path\tlabel\tattack\tspeaker\tsplit"]
    lines += [
        f"audio/{p.name}\t{lb}\t{'A01' if lb == 'spoof' else '-'}\tspk0\tdev"
        for p, lb in zip(paths, labels, strict=True)
    ]
    train = _write_clips(d / "train", 4, seconds=1.2, seed=99)
    lines += [f"train/{p.name}\tbonafide\t-\tspk1\ttrain" for p in train]
    (d / "MANIFEST.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"dir": d, "manifest": d / "MANIFEST.tsv", "paths": paths, "labels": labels, "raw": raw}


def _expected_fit(raw: np.ndarray, labels: list[str]):  # -> spoof_train.metrics.Calibration
    from spoof_train.metrics import calibrate

    lab = np.array(labels)
    return calibrate(-raw[lab == "bonafide"], -raw[lab == "spoof"], threshold="eer", prior_spoof=0.5)


def _copy(model: Path, tmp_path: Path) -> Path:
    out = tmp_path / "model.onnx"
    shutil.copyfile(model, out)
    return out


def test_calibrate_writes_the_dev_fit_into_the_manifest_and_changes_nothing_else(
    uncalibrated, ranked_dev, tmp_path, capsys, caplog
):
    import onnx

    from spoofsdk.manifest import read_manifest

    model = _copy(uncalibrated[1], tmp_path)
    before = read_manifest(model)
    graph_before = onnx.load(str(model)).graph.SerializeToString()
    with caplog.at_level(logging.WARNING, logger="spoofsdk"):
        code = cli.main(
            ["calibrate", str(model), "--dev", str(ranked_dev["manifest"]), "--no-speech-gate", "-q"]
        )
    assert code == 0
    # scoring the model to calibrate it does not draw the SDK's "uncalibrated, run spoof-export calibrate"
    assert not [r for r in caplog.records if "is uncalibrated" in r.getMessage()]
    out = capsys.readouterr().out
    assert "calibration: dev: scale" in out
    after = read_manifest(model)
    want = _expected_fit(ranked_dev["raw"], ranked_dev["labels"])
    assert want.scale > 0
    assert after.calibration.scale == pytest.approx(want.scale, rel=1e-6)
    assert after.calibration.bias == pytest.approx(want.bias, rel=1e-6, abs=1e-9)
    assert after.threshold == pytest.approx(want.threshold, rel=1e-6)
    assert (before.calibration.scale, before.calibration.bias, before.threshold) == (1.0, 0.0, 0.5)
    # the file says whether it was calibrated: the SDK warns about the first, not the second
    assert (before.calibration.calibrated, before.is_calibrated) == (False, False)
    assert (after.calibration.calibrated, after.is_calibrated) == (True, True)
    # only the calibration and the threshold changed; the graph is the same
    assert replace(after, calibration=before.calibration, threshold=before.threshold) == before
    assert onnx.load(str(model)).graph.SerializeToString() == graph_before
    report = json.loads((tmp_path / "model.onnx.calibration.json").read_text())
    cal = report["calibration"]
    assert (cal["n_bonafide"], cal["n_spoof"], cal["rows"]) == (7, 7, 14)  # the dev split only
    assert [r["label"] for r in cal["scores"]] == ranked_dev["labels"]
    assert 0.0 < cal["eer"] < 0.5
    assert cal["speech_gate"] is False
    # the calibration plot lies next to the model and the report names it
    assert cal["plot"] == str(tmp_path / "model.onnx.calibration.png")
    assert (tmp_path / "model.onnx.calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_calibrated_model_decides_at_the_dev_eer_point(uncalibrated, ranked_dev, tmp_path):
    """Scored again through the SDK, the calibrated file gives log-odds scale * d + bias, and its verdicts
    at the manifest threshold flag the bona fide / miss the spoof shares the fit reported (one clip of
    slack: the threshold sits exactly on one clip's score)."""
    import soundfile as sf

    from spoofsdk import Detector

    model = _copy(uncalibrated[1], tmp_path)
    assert (
        cli.main(["calibrate", str(model), "--dev", str(ranked_dev["manifest"]), "--no-speech-gate", "-q"])
        == 0
    )
    cal = json.loads((tmp_path / "model.onnx.calibration.json").read_text())["calibration"]
    det = Detector(model, backend="cpu", num_threads=1, speech_gate=False)
    scores = [det.score(*sf.read(p, dtype="float32")) for p in ranked_dev["paths"]]
    np.testing.assert_allclose(
        [s.logit for s in scores], cal["scale"] * ranked_dev["raw"] + cal["bias"], rtol=1e-5, atol=1e-5
    )
    lab = np.array(ranked_dev["labels"])
    flagged = np.array([s.is_spoof for s in scores])
    assert flagged[lab == "bonafide"].mean() == pytest.approx(cal["frr"], abs=1 / 7 + 1e-9)
    assert (~flagged[lab == "spoof"]).mean() == pytest.approx(cal["far"], abs=1 / 7 + 1e-9)
    assert flagged[lab == "spoof"].mean() > flagged[lab == "bonafide"].mean()


def test_export_with_dev_calibrates_every_artifact_and_leaves_the_checkpoint_alone(
    uncalibrated, ranked_dev, tmp_path
):
    from spoofsdk.manifest import read_manifest

    ckpt, _ = uncalibrated
    files_before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    result = export(
        ckpt,
        output=tmp_path / "c",
        fp16=True,
        dev=ranked_dev["manifest"],
        speech_gate=False,
        latency_repeats=1,
    )
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == files_before
    want = _expected_fit(ranked_dev["raw"], ranked_dev["labels"])
    for key in ("onnx", "fp16"):
        m = read_manifest(result.paths[key])
        assert m.calibration.scale == pytest.approx(want.scale, rel=1e-6), key
        assert m.calibration.bias == pytest.approx(want.bias, rel=1e-6, abs=1e-9), key
        assert m.threshold == pytest.approx(want.threshold, rel=1e-6), key
    report = json.loads(result.paths["report"].read_text())
    cal = report["score_calibration"]
    assert (cal["calibrated"], cal["source"], cal["scored_on"]) == (True, "dev", "c.onnx")
    assert sorted(cal["written_to"]) == ["c.fp16.onnx", "c.onnx"]
    assert [r["path"] for r in cal["scores"]] == [str(p) for p in ranked_dev["paths"]]
    assert report["manifest"]["threshold"] == pytest.approx(want.threshold, rel=1e-6)
    assert [s["name"] for s in report["stage_reports"]] == ["onnx", "calibrate", "fp16", "validate"]
    assert not report["warnings"]
    # the calibration plot is written at the final prefix (not next to the .partial file) and reported
    assert cal["plot"] == str(tmp_path / "c.onnx.calibration.png")
    assert (tmp_path / "c.onnx.calibration.png").is_file()
    assert not list(tmp_path.glob("*partial*"))


def test_export_without_dev_says_loudly_that_the_model_is_uncalibrated(
    uncalibrated, tmp_path, caplog, capsys
):
    from spoofsdk.manifest import read_manifest

    ckpt, _ = uncalibrated
    with caplog.at_level(logging.WARNING, logger="spoof_export"):
        code = cli.main([str(ckpt), "-o", str(tmp_path / "u"), "--latency-repeats", "1"])
    assert code == 0
    assert any("UNCALIBRATED" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert "UNCALIBRATED: threshold 0.5 is not meaningful" in capsys.readouterr().out
    report = json.loads((tmp_path / "u.export_report.json").read_text())
    assert report["score_calibration"]["calibrated"] is False
    assert report["score_calibration"]["source"] == "none"
    assert any("UNCALIBRATED" in w for w in report["warnings"])
    m = read_manifest(tmp_path / "u.onnx")
    assert (m.calibration.scale, m.calibration.bias, m.threshold) == (1.0, 0.0, 0.5)


def test_calibrate_true_refits_a_checkpoint_calibration_and_needs_dev(tiny_checkpoint, ranked_dev, tmp_path):
    from spoofsdk.manifest import read_manifest

    with pytest.raises(
        ExportArgumentError, match=r"calibrate: fitting a score calibration needs labelled dev"
    ):
        export(tiny_checkpoint, output=tmp_path / "x", calibrate=True)
    assert not list(tmp_path.glob("x*"))
    result = export(
        tiny_checkpoint,
        output=tmp_path / "r",
        dev=ranked_dev["manifest"],
        calibrate=True,
        speech_gate=False,
        latency_repeats=1,
    )
    m = read_manifest(result.paths["onnx"])
    assert result.report["score_calibration"]["source"] == "dev"
    # the same weights as the uncalibrated checkpoint (seed 0): the fit on the raw logit differences, with
    # the checkpoint's calibration (2.0, 0.1, 0.6), which the SDK applied while scoring, undone
    want = _expected_fit(ranked_dev["raw"], ranked_dev["labels"])
    assert m.calibration.scale == pytest.approx(want.scale, rel=1e-5)
    assert m.calibration.bias == pytest.approx(want.bias, rel=1e-5, abs=1e-8)
    assert m.threshold == pytest.approx(want.threshold, rel=1e-5)


# ---- errors ----------------------------------------------------------------------------------------------


def _calibrate_error(args: list[str], capsys) -> tuple[int, str]:
    code = cli.main(["calibrate", *args, "-q"])
    return code, capsys.readouterr().err


def test_calibrate_errors_exit_with_their_codes_and_leave_the_model_as_it_was(
    uncalibrated, ranked_dev, clip_dir, tiny_onnx, tmp_path, capsys
):
    model = _copy(uncalibrated[1], tmp_path)
    original = model.read_bytes()
    dev = str(ranked_dev["manifest"])
    code, err = _calibrate_error([str(model), "--dev", str(clip_dir), "--no-speech-gate"], capsys)
    assert code == 6
    assert "calibration needs labelled rows (a manifest with a label column); 20 of 20 rows" in err
    code, err = _calibrate_error([str(model), "--dev", dev, "--split", "train", "--no-speech-gate"], capsys)
    assert code == 6
    assert "expected at least 2 scored clips of each class, given 4 bona fide and 0 spoof" in err
    code, err = _calibrate_error([str(model), "--dev", dev], capsys)  # tones are not speech
    assert code == 6
    assert "given 0 bona fide and 0 spoof; of 14 dev rows, left out: 14 without speech" in err
    assert "--no-speech-gate" in err
    code, err = _calibrate_error([str(model), "--dev", str(tmp_path / "nope.tsv")], capsys)
    assert code == 6
    assert "expected a manifest file or a directory, given a missing path" in err
    code, err = _calibrate_error([str(model), "--dev", dev, "--max-files", "0"], capsys)
    assert code == 2
    assert "max_files: expected an integer > 0, given 0" in err
    code, err = _calibrate_error([str(tmp_path / "missing.onnx"), "--dev", dev], capsys)
    assert code == 5
    assert "ModelFileError: calibrate:" in err
    assert "model file not found" in err
    code, err = _calibrate_error([str(tiny_onnx), "--dev", dev], capsys)  # an ONNX graph without manifest
    assert code == 5
    assert "has no spoofsdk manifest" in err
    other = tmp_path / "other.onnx"
    _retarget(model, other)
    code, err = _calibrate_error([str(model), "--dev", dev, "--also", str(other)], capsys)
    assert code == 2
    assert "is not another precision of" in err
    assert "differs in source_sha256" in err
    assert model.read_bytes() == original
    assert not (tmp_path / "model.onnx.calibration.json").exists()


def test_calibrate_appends_each_run_to_the_models_log(uncalibrated, ranked_dev, tmp_path, capsys):
    """MODEL.calibration.log: one block per run (the command line, the stage's start and end with its
    seconds, the scoring progress, the fit or the error), appended; none beside a missing model."""
    model = _copy(uncalibrated[1], tmp_path)
    dev = str(ranked_dev["manifest"])
    assert cli.main(["calibrate", str(model), "--dev", dev, "--no-speech-gate", "-q"]) == 0
    assert f"            log: {model}.calibration.log" in capsys.readouterr().out
    code, _ = _calibrate_error([str(model), "--dev", dev, "--split", "nope", "--no-speech-gate"], capsys)
    assert code == 6
    text = (tmp_path / "model.onnx.calibration.log").read_text(encoding="utf-8")
    line = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
    assert len(re.findall(line + r"INFO spoof-export calibrate .*model\.onnx --dev ", text, re.M)) == 2
    assert len(re.findall(line + r"INFO stage calibrate: done in \d+\.\d s$", text, re.M)) == 1
    assert "INFO scoring model.onnx: 14/14 clips" in text
    assert "INFO calibrate: scale " in text
    assert re.search(line + r"INFO stage calibrate: failed after \d+\.\d s \(CalibrationError\)$", text, re.M)
    failed = r"ERROR calibrate failed: CalibrationError: .*no rows in split 'nope'"
    assert re.search(line + failed, text, re.M)
    assert not [h for h in logging.getLogger("spoof_export").handlers if isinstance(h, logging.FileHandler)]
    code, _ = _calibrate_error([str(tmp_path / "missing.onnx"), "--dev", dev], capsys)
    assert code == 5
    assert not (tmp_path / "missing.onnx.calibration.log").exists()


def _retarget(model: Path, out: Path) -> None:
    """A copy of ``model`` whose manifest names another source checkpoint."""
    from spoofsdk.manifest import read_manifest, write_onnx_manifest

    write_onnx_manifest(model, replace(read_manifest(model), source_sha256="0" * 64), output=out)


def test_fit_calibration_rejects_other_labels_and_reversed_scores():
    from spoof_export.calibrate import fit_calibration

    raw = np.array([-2.0, -1.0, -1.5, 1.0, 2.0, 0.5])
    labels = ["bonafide"] * 3 + ["spoof"] * 3
    fitted = fit_calibration(raw, labels)
    assert fitted.calibration.scale > 0
    assert fitted.eer == 0.0
    with pytest.raises(
        CalibrationError, match=r"expected labels 'bonafide' and 'spoof', given also \['fake'\]"
    ):
        fit_calibration(raw, ["bonafide"] * 3 + ["fake"] * 3)
    with pytest.raises(CalibrationError, match=r"the fitted scale is -.* \(<= 0\)"):
        fit_calibration(-raw, labels)
    with pytest.raises(CalibrationError, match="6 scores for 5 labels"):
        fit_calibration(raw, labels[:5])


def test_write_calibration_rewrites_an_engine_sidecar_and_keeps_its_engine_block(tmp_path):
    from spoof_export.calibrate import write_calibration
    from spoof_export.contract import ScoreCalibration
    from spoofsdk.manifest import EngineInfo, Manifest, read_manifest, write_engine_manifest

    engine = tmp_path / "m.trt"
    engine.write_bytes(b"serialised engine")
    info = EngineInfo(
        tensorrt_version="10.3.0",
        compute_capability="8.7",
        gpu_name="Orin",
        profile_min=(1, 16000),
        profile_opt=(1, 16000),
        profile_max=(8, 160000),
    )
    write_engine_manifest(
        engine, Manifest(sample_rate=16000, window_samples=16000, hop_samples=8000, min_samples=400), info
    )
    new = write_calibration(
        engine, ScoreCalibration(scale=1.5, bias=-0.25, threshold=0.3, calibrated=True, source="dev")
    )
    m = read_manifest(engine)
    assert (m.calibration.scale, m.calibration.bias, m.threshold) == (1.5, -0.25, 0.3)
    assert m.engine == info
    assert m == new.__class__(**{**new.__dict__, "engine": info})
    assert engine.read_bytes() == b"serialised engine"


# ---- contract A at the boundary --------------------------------------------------------------------------


def _broken_checkpoint(
    src: Path, dst: Path, *, config: dict | None = None, training: dict | None = None
) -> Path:
    shutil.copytree(src, dst)
    if config is not None:
        (dst / "config.json").write_text(json.dumps(config))
    if training is not None:
        (dst / "training.json").write_text(json.dumps(training))
    return dst


def test_a_missing_contract_a_key_is_a_typed_error_not_a_default(tiny_checkpoint, tmp_path, capsys):
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    del cfg["window_samples"]  # DetectorConfig would default it to 64600; the export must not
    bad = _broken_checkpoint(tiny_checkpoint, tmp_path / "nowin", config=cfg)
    code = cli.main([str(bad), "-o", str(tmp_path / "x"), "-q"])
    assert code == 5
    err = capsys.readouterr().err
    assert "CheckpointLoadError" in err
    assert (
        "contract A needs the keys kind, sample_rate, window_samples, hop_samples, label_order; "
        "missing: window_samples" in err
    )
    info = json.loads((tiny_checkpoint / "training.json").read_text())
    info["calibration"] = {"scale": 2.0, "bias": 0.1}  # no threshold: 0.5 would be a guess
    bad = _broken_checkpoint(tiny_checkpoint, tmp_path / "nothr", training=info)
    with pytest.raises(CheckpointLoadError, match=r"training.json: key 'calibration' lacks threshold"):
        export(bad, output=tmp_path / "x")
    info["calibration"] = {"scale": -1.0, "bias": 0.1, "threshold": 0.5}
    bad = _broken_checkpoint(tiny_checkpoint, tmp_path / "negscale", training=info)
    with pytest.raises(
        CheckpointLoadError, match=r"calibration scale: expected a finite number > 0, given -1.0"
    ):
        export(bad, output=tmp_path / "x")
    assert [p.name for p in tmp_path.glob("x*")] == ["x.export.log"]  # no artifact; the log says why
    assert "ERROR export failed after" in (tmp_path / "x.export.log").read_text(encoding="utf-8")


def test_calibration_figure_reliability_histograms_and_threshold():
    """On scores drawn from a calibrated model (p = sigmoid(z), label ~ Bernoulli(p)), the reliability curve
    follows the diagonal; the histograms hold every clip of each class; the threshold line is at its
    log-odds."""
    from spoof_export.calibrate import _calibration_figure
    from spoof_export.contract import ScoreCalibration

    rng = np.random.default_rng(0)
    d = rng.normal(0.0, 2.0, 4000)
    cal = ScoreCalibration(scale=1.5, bias=-0.5, threshold=0.3, calibrated=True, source="dev")
    z = cal.scale * d + cal.bias
    labels = np.where(rng.random(d.size) < 1 / (1 + np.exp(-z)), "spoof", "bonafide")
    n_sp = int((labels == "spoof").sum())
    # weight to the empirical prior: the observed fraction is then the plain one
    fig = _calibration_figure(d, list(labels), cal, prior_spoof=n_sp / d.size)
    rel, hist = fig.axes
    (curve,) = [ln for ln in rel.lines if ln.get_gid() == "reliability"]
    x, y = np.asarray(curve.get_xdata()), np.asarray(curve.get_ydata())
    assert len(x) == 10
    assert np.max(np.abs(x - y)) < 0.06
    texts = [t.get_text() for t in hist.get_legend().get_texts()]
    assert f"bona fide (n={d.size - n_sp})" in texts
    assert f"spoof (n={n_sp})" in texts
    (thr,) = [ln for ln in hist.lines if ln.get_gid() == "threshold"]
    assert thr.get_xdata()[0] == pytest.approx(np.log(0.3 / 0.7))
    # a miscalibrated map (scale 3x too large) bends the curve away from the diagonal: the plot shows it
    bad = ScoreCalibration(scale=4.5, bias=-1.5, threshold=0.3, calibrated=True, source="dev")
    fig = _calibration_figure(d, list(labels), bad, prior_spoof=n_sp / d.size)
    (curve,) = [ln for ln in fig.axes[0].lines if ln.get_gid() == "reliability"]
    assert np.max(np.abs(np.asarray(curve.get_xdata()) - np.asarray(curve.get_ydata()))) > 0.1


def test_calibration_plot_without_matplotlib_is_skipped_with_the_reason(tmp_path, monkeypatch, caplog):
    import sys

    from spoof_export.calibrate import NO_MATPLOTLIB, plot_calibration
    from spoof_export.contract import ScoreCalibration

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    cal = ScoreCalibration(scale=1.0, bias=0.0, threshold=0.5, calibrated=True, source="dev")
    with caplog.at_level(logging.WARNING, logger="spoof_export"):
        out = plot_calibration(tmp_path / "x.png", [0.1, -0.2], ["spoof", "bonafide"], cal)
    assert out is None
    assert not (tmp_path / "x.png").exists()
    assert NO_MATPLOTLIB in caplog.text
    assert "spoofsdk[train]" in NO_MATPLOTLIB


def test_unreadable_dev_clips_are_skipped_with_the_sdks_typed_reason(uncalibrated, ranked_dev, tmp_path):
    """score_clips reads through spoofsdk.audio.read_file: an empty or corrupt clip is an AudioFileError
    naming the file, kept as the clip's reason (skip_unreadable) or raised; the readable clips are scored
    exactly as before."""
    from spoof_export.calibrate import score_clips
    from spoofsdk.errors import AudioFileError

    _, model = uncalibrated
    empty, corrupt = tmp_path / "empty.wav", tmp_path / "corrupt.wav"
    empty.write_bytes(b"")
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    good = ranked_dev["paths"][:2]
    got = score_clips(model, [good[0], empty, corrupt, good[1]], num_threads=1, speech_gate=False)
    assert set(got.reasons) == {1, 2}
    assert got.reasons[1] == f"AudioFileError: {empty}: empty file (0 bytes)"
    assert got.reasons[2].startswith(f"AudioFileError: {corrupt}: cannot read audio")
    assert np.isnan(got.logit[[1, 2]]).all()
    np.testing.assert_allclose(got.raw[[0, 3]], ranked_dev["raw"][:2], atol=1e-6)
    with pytest.raises(AudioFileError, match=r"corrupt\.wav: cannot read audio"):
        score_clips(model, [corrupt], num_threads=1, speech_gate=False, skip_unreadable=False)
