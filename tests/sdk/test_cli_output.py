"""spoof-score's output schema (docs/sdk.md, "Output schema"): the same fields and values in JSON and CSV,
windows in CSV, the model's identity, the sign of ``logit``, the summary line on stderr, ``--version``."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from sdk_models import reference_logits, requires_native, save_tiny_detector, tiny_manifest

import spoofsdk
from spoofsdk import Detector
from spoofsdk.cli import (
    CSV_COLUMNS,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    FILE_FIELDS,
    MODEL_FIELDS,
    SCHEMA_VERSION,
    WINDOW_FIELDS,
    main,
)

pytestmark = requires_native
SR = 16000
SUMMARY = re.compile(
    r"^spoof-score: (\d+) files: (\d+) flagged spoof, (\d+) bonafide, (\d+) undetermined, (\d+) errors? "
    r"in \d+\.\d s(; results in (.+))?$"
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, speechlike: np.ndarray) -> Path:
    root = tmp_path_factory.mktemp("audio")
    sf.write(root / "a.wav", speechlike, SR, subtype="FLOAT")
    sf.write(root / "b.flac", speechlike[:20000] * 0.5, SR)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return root


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _cell(text: str) -> Any:
    """A CSV cell read back as the JSON value it stands for (what pandas.read_csv makes of it)."""
    if text == "":
        return None
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def test_json_and_csv_have_the_same_fields_and_values(
    files: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(files), "--model", str(tiny_model), "--no-speech-gate", "--windows", "--threads", "1"]
    code, out, _ = _run(capsys, *args, "--format", "json")
    assert code == EXIT_FAILED  # broken.wav
    doc = json.loads(out)
    code, out, _ = _run(capsys, *args, "--format", "csv")
    assert code == EXIT_FAILED
    reader = csv.DictReader(io.StringIO(out))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    rows = list(reader)

    # every result has every field, errors included; windows hold every window field but the path
    assert [Path(r["path"]).name for r in doc["results"]] == ["a.wav", "b.flac", "broken.wav"]
    for r in doc["results"]:
        assert list(r) == [*FILE_FIELDS, "windows"]  # "windows": [] for a failed file
        for w in r["windows"]:
            assert list(w) == [f for f in WINDOW_FIELDS if f != "path"]
    assert set(CSV_COLUMNS) == {"kind", *FILE_FIELDS, *WINDOW_FIELDS, *MODEL_FIELDS}

    # CSV = the JSON flattened: a "file" row per result, then a "window" row per window, same values
    expected: list[dict[str, Any]] = []
    identity = {k: doc[k] for k in MODEL_FIELDS}
    for r in doc["results"]:
        expected.append({"kind": "file", **{k: v for k, v in r.items() if k != "windows"}, **identity})
        for w in r["windows"]:
            expected.append({"kind": "window", "path": r["path"], **w, **identity})
    assert len(rows) == len(expected) == 3 + sum(r["n_windows"] or 0 for r in doc["results"])
    for row, exp in zip(rows, expected, strict=True):
        got = {k: _cell(v) for k, v in row.items() if k in exp and k != "elapsed_s"}  # two runs: times differ
        assert got == {k: exp[k] for k in got}, row["path"]
        assert all(v == "" for k, v in row.items() if k not in exp), row  # other kinds' cells are empty
    assert [r["kind"] for r in rows][:3] == ["file", "window", "window"]

    broken = next(r for r in doc["results"] if not r["ok"])
    assert (broken["verdict"], broken["spoof_prob"], broken["error_type"]) == (None, None, "AudioFileError")
    assert broken["windows"] == []


def test_csv_windows_are_the_detectors_windows(
    files: Path, tiny_model: Path, detector: Detector, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = str(files / "a.wav")
    code, out, _ = _run(capsys, wav, "--model", str(tiny_model), "--no-speech-gate", "--format", "csv")
    assert code == EXIT_OK
    assert [r["kind"] for r in csv.DictReader(io.StringIO(out))] == ["file"]  # no --windows: files only
    code, out, _ = _run(
        capsys, wav, "--model", str(tiny_model), "--no-speech-gate", "--format", "csv", "--windows"
    )
    assert code == EXIT_OK
    rows = list(csv.DictReader(io.StringIO(out)))
    x, _ = sf.read(files / "a.wav", dtype="float32")
    ref = detector.score(x, SR)
    wins = [r for r in rows if r["kind"] == "window"]
    assert int(rows[0]["n_windows"]) == len(wins) == len(ref.windows) > 2
    assert [int(r["window"]) for r in wins] == list(range(len(ref.windows)))
    assert [float(r["start_s"]) for r in wins] == [w.start_s for w in ref.windows]
    assert [float(r["end_s"]) for r in wins] == [w.end_s for w in ref.windows]
    np.testing.assert_allclose([float(r["logit"]) for r in wins], [w.logit for w in ref.windows], atol=1e-6)
    assert [r["is_final"] for r in wins] == ["true" if w.is_final else "false" for w in ref.windows]
    assert float(rows[0]["logit"]) == pytest.approx(ref.logit, abs=1e-6)


def test_model_identity_and_schema_version(
    tmp_path: Path, files: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = hashlib.sha256(b"the checkpoint").hexdigest()
    model = save_tiny_detector(tmp_path / "m.onnx", tiny_manifest(source_sha256=source, precision="fp16"))
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    wav = str(files / "a.wav")
    code, out, _ = _run(capsys, wav, "--model", str(model), "--no-speech-gate", "--format", "json")
    assert code == EXIT_OK
    doc = json.loads(out)
    assert SCHEMA_VERSION == 1
    assert {k: doc[k] for k in MODEL_FIELDS} == {
        "schema_version": 1,
        "model_path": str(model.resolve()),
        "model_sha256": digest,
        "model_source_sha256": source,
        "model_precision": "fp16",
    }
    assert doc["model"] == str(model)  # --model as given
    assert doc["spoofsdk_version"] == spoofsdk.__version__
    assert doc["settings"] == {
        "window_s": 1.0, "hop_s": 0.5, "aggregate": "mean", "threshold": 0.5, "speech_gate": False,
        "min_speech": 0.1, "sample_rate": 16000,
    }  # fmt: skip
    code, out, _ = _run(
        capsys, wav, "--model", str(model), "--no-speech-gate", "--format", "csv", "--windows"
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) > 1
    for row in rows:  # repeated on every row, windows included
        assert (row["schema_version"], row["model_sha256"], row["model_source_sha256"]) == (
            "1",
            digest,
            source,
        )
        assert (row["model_path"], row["model_precision"]) == (str(model.resolve()), "fp16")
    # a manifest without a source hash: null in JSON (never ""), an empty cell in CSV; overrides are recorded
    code, out, _ = _run(capsys, wav, "--model", str(tiny_model), "--format", "json", "--no-speech-gate",
                        "--threshold", "0.9", "--window-s", "0.5")  # fmt: skip
    doc = json.loads(out)
    assert (doc["model_source_sha256"], doc["model_precision"]) == (None, "fp32")
    assert (doc["settings"]["threshold"], doc["settings"]["window_s"]) == (0.9, 0.5)
    assert doc["results"][0]["threshold"] == 0.9


@pytest.mark.parametrize("calibrated", [False, True])
def test_logit_is_spoof_log_odds_the_negated_training_score(
    tmp_path: Path, tiny_model: Path, tiny_model_calibrated: Path, speechlike: np.ndarray,
    calibrated: bool, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """docs/sdk.md: ``logit`` = spoof log-odds (> 0 leans spoof); spoof-train's score = logit[bonafide] -
    logit[spoof] (> 0 leans bona fide): with the identity calibration one is the negation of the other."""
    x = speechlike[:SR]  # exactly one window at the model rate: no resampling, no tail window
    sf.write(tmp_path / "one.wav", x, SR, subtype="FLOAT")
    model = tiny_model_calibrated if calibrated else tiny_model
    code, out, _ = _run(capsys, str(tmp_path / "one.wav"), "--model", str(model), "--no-speech-gate",
                        "--format", "json", "--windows")  # fmt: skip
    assert code == EXIT_OK
    (r,) = json.loads(out)["results"]
    raw = reference_logits(x[None, :].astype(np.float32))[0]
    if calibrated:  # label_order (spoof, bonafide), scale 0.5, bias -1.0, threshold 0.3
        train_score = raw[1] - raw[0]
        expected = 0.5 * (raw[0] - raw[1]) - 1.0
    else:  # label_order (bonafide, spoof), identity calibration
        train_score = raw[0] - raw[1]
        expected = -train_score
    assert r["n_windows"] == 1
    assert r["logit"] == pytest.approx(expected, abs=1e-5)
    assert r["windows"][0]["logit"] == pytest.approx(expected, abs=1e-5)
    if not calibrated:
        assert r["logit"] == pytest.approx(-train_score, abs=1e-5)
    assert r["spoof_prob"] == pytest.approx(1.0 / (1.0 + math.exp(-r["logit"])), abs=1e-9)
    assert r["is_spoof"] == (r["spoof_prob"] >= r["threshold"])
    assert r["threshold"] == (0.3 if calibrated else 0.5)


def test_summary_line_on_stderr_also_with_output_file(
    tmp_path: Path, files: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sf.write(tmp_path / "zeros.wav", np.zeros(2 * SR, np.float32), SR)
    inputs = [str(files), str(tmp_path / "zeros.wav")]
    # gated: zeros hold no speech (undetermined); a low threshold flags what is scored
    target = tmp_path / "out.json"
    code, out, err = _run(capsys, *inputs, "--model", str(tiny_model), "--threshold", "0.01",
                          "--format", "json", "-o", str(target))  # fmt: skip
    assert code == EXIT_FAILED
    assert out == ""
    last = err.rstrip("\n").splitlines()[-1]
    m = SUMMARY.match(last)
    assert m, last
    doc = json.loads(target.read_text())
    verdicts = [r["verdict"] for r in doc["results"]]
    counts = {
        "files": len(verdicts), "flagged": verdicts.count("spoof"), "bonafide": verdicts.count("bonafide"),
        "undetermined": verdicts.count("undetermined"), "errors": verdicts.count(None),
    }  # fmt: skip
    assert (counts["files"], counts["errors"]) == (4, 1)
    assert counts["undetermined"] >= 1
    assert counts["flagged"] + counts["bonafide"] + counts["undetermined"] == 3
    assert [int(g) for g in m.groups()[:5]] == list(counts.values())
    assert m.group(7) == str(target)
    assert {k: doc["summary"][k] for k in counts} == counts
    assert doc["summary"]["elapsed_s"] > 0
    # ungated, to stdout, in every format: every scored file flagged at threshold 0.01
    for fmt in ("table", "csv", "json"):
        code, out, err = _run(capsys, str(files), "--model", str(tiny_model), "--no-speech-gate",
                              "--threshold", "0.01", "--format", fmt)  # fmt: skip
        m = SUMMARY.match(err.rstrip("\n").splitlines()[-1])
        assert m, err
        assert [int(g) for g in m.groups()[:5]] == [3, 2, 0, 0, 1]
        assert m.group(6) is None
        assert "spoof-score: 3 files" not in out


def test_table_windows(files: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, str(files / "a.wav"), "--model", str(tiny_model), "--no-speech-gate",
                        "--windows")  # fmt: skip
    assert code == EXIT_OK
    lines = out.splitlines()
    n_windows = int(lines[1].split()[4].split("/")[1])
    assert len(lines) == 2 + n_windows
    assert lines[2].split()[:3] == ["[0]", "0.00-1.00", "s"]


def test_bad_output_path_is_a_usage_error_before_scoring(
    tmp_path: Path, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = str(files / "a.wav")
    missing = tmp_path / "nope" / "out.csv"
    # no --model: without a bundled model this would be a model error (3) if the check came later
    code, _, err = _run(capsys, wav, "--format", "csv", "-o", str(missing))
    assert code == EXIT_USAGE
    assert f"-o: expected a file in an existing folder, given {missing}" in err
    code, _, err = _run(capsys, wav, "-o", str(tmp_path))
    assert code == EXIT_USAGE
    assert f"-o: expected a file path, given the folder {tmp_path}" in err
    assert not missing.parent.exists()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--version")
    assert (code, err) == (EXIT_OK, "")
    assert out == f"spoof-score {spoofsdk.__version__} (output schema_version {SCHEMA_VERSION})\n"
    code, out, _ = _run(capsys, "some.wav", "--version")  # before any file is read
    assert code == EXIT_OK
    assert out.startswith("spoof-score ")
