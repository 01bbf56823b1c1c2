"""spoof-score: inputs (files, folders, globs, headerless G.711), formats, streaming, exit codes."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sdk_models import requires_native

from spoofsdk import Detector
from spoofsdk.cli import EXIT_FAILED, EXIT_MODEL, EXIT_OK, EXIT_USAGE, main

pytestmark = requires_native
SR = 16000


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory, speechlike: np.ndarray) -> Path:
    root = tmp_path_factory.mktemp("audio")
    (root / "sub").mkdir()
    sf.write(root / "a.wav", speechlike, SR, subtype="PCM_16")
    sf.write(root / "sub" / "b.flac", speechlike[:20000] * 0.5, SR)
    sf.write(root / "stereo.wav", np.stack([speechlike, 0.3 * speechlike], axis=1), SR, subtype="FLOAT")
    (root / "notes.txt").write_text("not audio")
    return root


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--no-speech-gate"])  # synthetic signals; gating has its own tests
    out, err = capsys.readouterr()
    return code, out, err


def test_folder_json_matches_the_api(
    audio_dir: Path, tiny_model: Path, detector: Detector, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, str(audio_dir), "--model", str(tiny_model), "--format", "json", "--windows",
                        "--backend", "cpu", "--threads", "1")  # fmt: skip
    assert code == EXIT_OK
    doc = json.loads(out)
    assert doc["backend"] == "cpu"
    paths = [Path(r["path"]).name for r in doc["results"]]
    assert paths == ["a.wav", "stereo.wav", "b.flac"]  # folder order; .txt skipped
    a = doc["results"][0]
    x, _ = sf.read(audio_dir / "a.wav", dtype="float32")
    ref = detector.score(x, SR)
    assert a["ok"] is True
    assert a["logit"] == pytest.approx(ref.logit, abs=1e-6)
    assert a["n_windows"] == len(a["windows"]) == len(ref.windows)
    assert a["label"] in ("spoof", "bonafide")


def test_table_csv_glob_and_output_file(
    audio_dir: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        capsys, str(audio_dir / "**" / "*.flac"), "--model", str(tiny_model), "--format", "csv"
    )
    assert code == EXIT_OK
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [Path(r["path"]).name for r in rows] == ["b.flac"]
    assert float(rows[0]["duration_s"]) == pytest.approx(1.25)
    code, out, _ = _run(capsys, str(audio_dir / "a.wav"), "--model", str(tiny_model))
    assert code == EXIT_OK
    lines = out.splitlines()
    assert lines[0].split() == ["path", "duration_s", "spoof_prob", "label", "flagged", "logit", "error"]
    flagged, n_windows = lines[1].split()[4].split("/")
    assert 0 <= int(flagged) <= int(n_windows) >= 1
    target = tmp_path / "r.json"
    code, out, _ = _run(capsys, str(audio_dir / "a.wav"), "--model", str(tiny_model), "--format", "json",
                        "-o", str(target))  # fmt: skip
    assert code == EXIT_OK
    assert out == ""
    assert json.loads(target.read_text())["results"][0]["ok"]


def test_stream_mode_equals_offline(
    audio_dir: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(audio_dir / "a.wav"), "--model", str(tiny_model), "--format", "json", "--windows"]
    _, offline, _ = _run(capsys, *args)
    code, streamed, _ = _run(capsys, *args, "--stream", "--chunk-ms", "20")
    assert code == EXIT_OK
    a, b = json.loads(offline)["results"][0], json.loads(streamed)["results"][0]
    assert [w["start_s"] for w in a["windows"]] == [w["start_s"] for w in b["windows"]]
    np.testing.assert_allclose(
        [w["logit"] for w in a["windows"]], [w["logit"] for w in b["windows"]], atol=1e-5
    )


@pytest.mark.parametrize("stream", [False, True])
def test_headerless_mulaw(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str], stream: bool
) -> None:
    from spoofsdk import _native

    data = np.random.default_rng(2).integers(0, 256, 24000, dtype=np.uint8).tobytes()
    (tmp_path / "call.ul").write_bytes(data)
    (tmp_path / "call.bin").write_bytes(data)
    det = Detector(tiny_model, backend="cpu", num_threads=1, speech_gate=False)
    ref = det.score(_native.decode(data, "mulaw"), 8000)
    extra = ["--stream"] if stream else []
    code, out, _ = _run(capsys, str(tmp_path / "call.ul"), "--sample-rate", "8000",
                        "--model", str(tiny_model), "--format", "json", *extra)  # fmt: skip
    assert code == EXIT_OK
    assert json.loads(out)["results"][0]["logit"] == pytest.approx(ref.logit, abs=1e-5)
    code, out, _ = _run(capsys, str(tmp_path / "call.bin"), "--encoding", "mulaw", "--sample-rate", "8000",
                        "--model", str(tiny_model), "--format", "json", *extra)  # fmt: skip
    assert code == EXIT_OK
    assert json.loads(out)["results"][0]["logit"] == pytest.approx(ref.logit, abs=1e-5)


def test_bad_files_are_reported_and_the_batch_goes_on(
    audio_dir: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    sf.write(tmp_path / "tiny.wav", np.zeros(10, np.float32), SR)
    sf.write(tmp_path / "nan.wav", np.full(2000, np.nan, np.float32), SR, subtype="FLOAT")
    names = ["broken.wav", "a.wav", "tiny.wav", "missing.wav", "nan.wav"]
    files = [str((audio_dir if n == "a.wav" else tmp_path) / n) for n in names]
    code, out, err = _run(capsys, *files, "--model", str(tiny_model), "--format", "json")
    assert code == EXIT_FAILED
    results = {Path(r["path"]).name: r for r in json.loads(out)["results"]}
    assert results["a.wav"]["ok"]
    assert results["broken.wav"]["error_type"] == "AudioFileError"
    assert results["tiny.wav"]["error_type"] == "InvalidAudioError"
    assert "expected at least 400 samples" in results["tiny.wav"]["error"]
    assert results["missing.wav"]["error_type"] == "AudioFileError"
    assert results["nan.wav"]["error_type"] == "InvalidAudioError"
    assert "broken.wav" in err


@pytest.mark.parametrize("stream", [False, True])
def test_unreadable_files_are_typed_errors_naming_the_file(
    audio_dir: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], stream: bool
) -> None:
    """Corrupt, empty, truncated, missing: an AudioFileError naming the file, never libsndfile's error."""
    good = (audio_dir / "a.wav").read_bytes()
    (tmp_path / "corrupt.wav").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "empty.ul").write_bytes(b"")
    (tmp_path / "truncated.wav").write_bytes(good[:30])
    (tmp_path / "folder.wav").mkdir()
    names = ["corrupt.wav", "empty.wav", "empty.ul", "truncated.wav", "missing.wav"]
    files = [str(tmp_path / n) for n in names]
    extra = ["--stream"] if stream else []
    code, out, err = _run(capsys, *files, str(audio_dir / "a.wav"), "--model", str(tiny_model),
                          "--format", "json", "--sample-rate", "16000", *extra)  # fmt: skip
    assert code == EXIT_FAILED
    results = {Path(r["path"]).name: r for r in json.loads(out)["results"]}
    assert results["a.wav"]["ok"]
    for name in names:
        r = results[name]
        assert (r["ok"], r["error_type"]) == (False, "AudioFileError"), r
        assert r["error"].startswith(str(tmp_path / name) + ": "), r
        assert "Libsndfile" not in err
        assert f"{tmp_path / name}: AudioFileError: {r['error']}" in err
    assert results["empty.wav"]["error"].endswith("empty file (0 bytes)")
    assert results["empty.ul"]["error"].endswith("empty file (0 bytes)")
    assert results["missing.wav"]["error"].endswith("no such file")
    assert "cannot read audio" in results["corrupt.wav"]["error"]
    assert "cannot read audio" in results["truncated.wav"]["error"]
    assert "Traceback" not in err
    # a folder named like a file is a folder (searched, not read): no audio in it is a usage error
    code, _, err = _run(capsys, str(tmp_path / "folder.wav"), "--model", str(tiny_model))
    assert code == EXIT_USAGE
    assert "no input audio file found" in err


def test_usage_and_model_exit_codes(audio_dir: Path, tiny_model: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    wav = str(audio_dir / "a.wav")
    assert _run(capsys, str(tmp_path / "*.wav"), "--model", str(tiny_model))[0] == EXIT_USAGE
    code, _, err = _run(capsys, wav, "--encoding", "mulaw", "--model", str(tiny_model))
    assert (code, "--encoding needs --sample-rate" in err) == (EXIT_USAGE, True)
    assert _run(capsys, wav, "--format", "xml")[0] == EXIT_USAGE
    assert _run(capsys, wav, "--model", str(tiny_model), "--chunk-ms", "0")[0] == EXIT_USAGE
    assert _run(capsys, wav, "--model", str(tiny_model), "--hop-s", "5")[0] == EXIT_USAGE
    code, _, err = _run(capsys, wav, "--model", str(tmp_path / "missing.onnx"))
    assert (code, "model file not found" in err) == (EXIT_MODEL, True)
    from importlib import resources

    if not Path(str(resources.files("spoofsdk").joinpath("models/default.onnx"))).is_file():
        code, _, err = _run(capsys, wav)
        assert (code, "no default detector is bundled" in err) == (EXIT_MODEL, True)
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        code, _, err = _run(capsys, wav, "--model", str(tiny_model), "--backend", "cuda")
        assert (code, "available backends" in err) == (EXIT_MODEL, True)
    assert _run(capsys, "--help")[0] == EXIT_OK


def test_progress_bar(audio_dir: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, str(audio_dir), "--model", str(tiny_model), "--progress")
    assert code == EXIT_OK
    assert "3/3" in err
    assert "[" + "#" * 30 + "]" in err


def test_console_script_entry_point(audio_dir: Path, tiny_model: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "spoofsdk.cli", str(audio_dir / "a.wav"), "--model", str(tiny_model),
         "--format", "csv"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == EXIT_OK, out.stderr
    # the CSV header is the output schema's (docs/sdk.md, "Output schema"; it was "path,duration_s,...")
    assert out.stdout.startswith("kind,path,window,start_s,end_s,ok,verdict,label,is_spoof,flagged,")
    assert out.stderr.splitlines()[-1].startswith("spoof-score: 1 files: ")


def test_headerless_file_without_rate_is_a_per_file_error(
    audio_dir: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "call.ul").write_bytes(b"\xff" * 8000)
    files = [str(tmp_path / "call.ul"), str(audio_dir / "a.wav")]
    code, out, _ = _run(capsys, *files, "--model", str(tiny_model), "--format", "json")
    assert code == EXIT_FAILED
    r = {Path(x["path"]).name: x for x in json.loads(out)["results"]}
    assert r["a.wav"]["ok"]
    assert r["call.ul"]["error_type"] == "InvalidArgumentError"
    assert "headerless mulaw audio needs --sample-rate" in r["call.ul"]["error"]


@requires_native
def test_spoof_score_warns_once_about_an_uncalibrated_model(
    audio_dir: Path,
    tiny_model: Path,
    tiny_model_calibrated: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """tiny_model predates the calibrated flag and carries the exporter's placeholders (scale 1, bias 0,
    threshold 0.5): three files scored, one warning naming the fix; none for the calibrated model."""
    import spoofsdk.detector as detector_mod

    monkeypatch.setattr(detector_mod, "_UNCALIBRATED_WARNED", set())
    with caplog.at_level("WARNING", logger="spoofsdk"):
        code, out, _ = _run(capsys, str(audio_dir), "--model", str(tiny_model), "--format", "json")
        _run(capsys, str(audio_dir), "--model", str(tiny_model_calibrated), "--format", "json")
    assert code == EXIT_OK
    assert out.count('"path"') >= 3  # several files, one Detector
    warned = [r.getMessage() for r in caplog.records if "is uncalibrated" in r.getMessage()]
    assert len(warned) == 1
    assert f"spoof-export calibrate {tiny_model} --dev MANIFEST" in warned[0]
