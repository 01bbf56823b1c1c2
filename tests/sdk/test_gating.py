"""Speech gating: windows without speech are marked, not scored; no speech at all is ``undetermined``."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spoofsdk import Detector
from spoofsdk.audio import resample
from spoofsdk.errors import InvalidArgumentError
from spoofsdk.gating import FRAME, PRIME_FRAMES, SileroGate
from spoofsdk.scheduler import BatchScheduler

from .gating_cases import non_speech

REAL = Path(__file__).resolve().parents[2] / "examples" / "audio" / "real"


@pytest.fixture(scope="module")
def det() -> Detector:
    return Detector(backend="cpu", num_threads=1)  # the bundled detector, gated (the default)


def _real(name: str = "it-carlo-agent-incorrect.wav") -> tuple[np.ndarray, int]:
    x, sr = sf.read(REAL / name, dtype="float32")
    return x, int(sr)


def test_one_call_equals_stepping_the_graph_frame_by_frame() -> None:
    gate = SileroGate()
    x, sr = _real()
    x16 = resample(x, sr, 16000)[:64000]
    probs = gate.frame_probs(x16)
    # the same graph, one 32 ms frame per call, the LSTM state carried by hand
    padded = np.concatenate(
        [np.zeros(64 + PRIME_FRAMES * FRAME, np.float32), x16[: len(x16) // FRAME * FRAME]]
    )
    h = c = np.zeros((1, 1, 128), np.float32)
    stepped = []
    for k in range(PRIME_FRAMES + len(x16) // FRAME):
        row = padded[k * FRAME : k * FRAME + FRAME + 64][None]
        p, h, c = gate._session.run(None, {"input": row, "h": h, "c": c})
        stepped.append(float(p[0]))
    np.testing.assert_allclose(probs, np.array(stepped[PRIME_FRAMES:], np.float32), atol=1e-6)
    assert probs.max() > 0.9  # Carlo's prompt is speech
    assert len(probs) == 125


@pytest.mark.parametrize("case", sorted(non_speech(1.0)))
def test_non_speech_is_never_flagged(det: Detector, case: str) -> None:
    x = non_speech(8.0)[case]
    score = det.score(x, 16000)
    assert score.verdict == "undetermined", [w.speech for w in score.windows]
    assert not score.is_spoof
    assert math.isnan(score.spoof_prob)
    assert score.windows
    assert all(w.state == "no_speech" for w in score.windows)
    assert not [w for w in score.windows if w.spoof_prob > 0.9]  # the docs' alert pattern stays quiet
    assert all(w.speech is not None and w.speech < det.min_speech for w in score.windows)
    json.dumps(score.to_dict(), allow_nan=False)  # valid JSON: NaN becomes null
    assert score.to_dict()["verdict"] == "undetermined"
    assert score.to_dict()["spoof_prob"] is None


def test_the_same_cases_ungated_are_judged_by_the_model(det: Detector) -> None:
    ungated = Detector(backend="cpu", num_threads=1, speech_gate=False)
    score = ungated.score(np.zeros(48000, np.float32), 16000)
    assert score.verdict in ("spoof", "bonafide")
    assert all(w.scored and w.speech is None for w in score.windows)


def test_speech_is_scored_and_trailing_silence_is_left_out(det: Detector) -> None:
    x, sr = _real()
    speech = det.score(x, sr)
    assert speech.verdict in ("spoof", "bonafide")
    assert speech.speech_windows == len(speech.windows)
    padded = np.concatenate([x, np.zeros(6 * sr, np.float32)])  # a muted line after the prompt
    score = det.score(padded, sr)
    states = [w.state for w in score.windows]
    assert states[-1] == "no_speech"
    assert "scored" in states
    scored = [w.logit for w in score.windows if w.scored]
    assert score.logit == pytest.approx(float(np.mean(scored)))
    assert score.verdict == ("spoof" if score.is_spoof else "bonafide")


def test_streaming_equals_offline_with_gating(det: Detector) -> None:
    x, sr = _real("it-carlo-demo-thanks.wav")
    x = np.concatenate([x, np.zeros(5 * sr, np.float32), x])
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    offline = det.score(np.frombuffer(pcm, dtype="<i2"), sr)  # the same int16 samples
    with det.stream(sample_rate=sr, encoding="pcm16") as call:
        for k in range(0, len(pcm), 320):  # 20 ms packets at 8 kHz
            call.push(pcm[k : k + 320])
        final = call.flush()
    assert [w.state for w in final.windows] == [w.state for w in offline.windows]
    assert "no_speech" in [w.state for w in final.windows]
    for a, b in zip(final.windows, offline.windows, strict=True):
        assert a.speech == b.speech
        assert (math.isnan(a.logit) and math.isnan(b.logit)) or a.logit == pytest.approx(b.logit, abs=1e-5)
    assert final.logit == pytest.approx(offline.logit, abs=1e-5)


def test_scheduler_receives_only_speech_windows(det: Detector) -> None:
    x, sr = _real()
    silent = np.zeros(5 * sr, np.float32)
    with BatchScheduler(det, max_batch=8, max_wait_ms=1) as sched:
        with (
            det.stream(sample_rate=sr, scheduler=sched) as a,
            det.stream(sample_rate=sr, scheduler=sched) as b,
        ):
            a.push(x)
            b.push(silent)
            fa, fb = a.flush(), b.flush()
        stats = sched.stats()
    assert fb.verdict == "undetermined"
    assert fa.verdict in ("spoof", "bonafide")
    assert stats.windows == fa.speech_windows


def test_min_speech_and_bad_arguments(det: Detector) -> None:
    everything = Detector(backend="cpu", num_threads=1, min_speech=0.0)
    score = everything.score(np.zeros(48000, np.float32), 16000)
    assert all(w.scored and w.speech == 0.0 for w in score.windows)  # 0 scores every window, speech reported
    with pytest.raises(
        InvalidArgumentError, match=r"min_speech: expected a share of speech frames in \[0, 1\]"
    ):
        Detector(backend="cpu", min_speech=1.5)
    with pytest.raises(InvalidArgumentError, match="speech_gate: expected True or False, given 'yes'"):
        Detector(backend="cpu", speech_gate="yes")  # type: ignore[arg-type]


def test_cli_reports_undetermined(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from spoofsdk.cli import main

    sf.write(tmp_path / "hold.wav", non_speech(6.0)["hold music (-20 dBFS)"], 16000)
    x, sr = _real()
    sf.write(tmp_path / "real.wav", x, sr)
    assert main([str(tmp_path), "--format", "json", "--windows", "--threads", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {Path(r["path"]).name: r for r in out["results"]}
    assert rows["hold.wav"]["verdict"] == "undetermined"
    assert rows["hold.wav"]["spoof_prob"] is None
    assert {w["state"] for w in rows["hold.wav"]["windows"]} == {"no_speech"}
    assert rows["real.wav"]["verdict"] in ("spoof", "bonafide")
    assert main([str(tmp_path / "hold.wav"), "--format", "csv"]) == 0
    # the CSV is the output schema's since schema_version 1 (it was "path,duration_s,spoof_prob,label,...")
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert (row["kind"], row["verdict"], row["duration_s"], row["spoof_prob"], row["logit"]) == (
        "file", "undetermined", "6.0", "", "",
    )  # fmt: skip
    counts = (row["n_windows"], row["n_speech_windows"], row["n_flagged_windows"], row["error"])
    assert counts == ("5", "0", "0", "")
