"""Detector: loading, backends, score() windows/aggregation/calibration, input validation, threads."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from sdk_models import reference_logits, requires_native, tiny_graph, tiny_manifest

from spoofsdk import Detector
from spoofsdk.errors import BackendUnavailableError, InvalidArgumentError, InvalidAudioError, ModelLoadError
from spoofsdk.results import aggregate_log_odds, sigmoid

pytestmark = requires_native
SR = 16000


def _ref_log_odds(x: np.ndarray, starts: list[int], length: int) -> np.ndarray:
    batch = np.stack([x[s : s + length] for s in starts])
    logits = reference_logits(batch)
    return logits[:, 1] - logits[:, 0]


def test_loads_on_cpu_and_reports_it(detector: Detector, tiny_model: Path) -> None:
    assert detector.backend == "cpu"
    assert detector.manifest.window_samples == 16000
    assert detector.window_samples == 16000
    assert detector.hop_samples == 8000
    assert detector.threshold == 0.5
    assert detector.path == tiny_model
    assert "backend='cpu'" in repr(detector)
    with pytest.raises(AttributeError):
        detector.backend = "cuda"  # type: ignore[misc]
    assert Detector(tiny_model, num_threads=1).backend == "cpu"  # auto resolves to the CPU here
    assert detector.batch_size == 1  # the CPU default: batching buys no speed there, only memory
    assert Detector(tiny_model, batch_size=4).batch_size == 4


def test_batched_score_equals_unbatched(tiny_model: Path, speechlike: np.ndarray) -> None:
    one = Detector(tiny_model, batch_size=1, speech_gate=False).score(speechlike)
    many = Detector(tiny_model, batch_size=8, speech_gate=False).score(speechlike)
    assert len(one.windows) == len(many.windows) > 1
    for a, b in zip(one.windows, many.windows, strict=True):
        assert (a.start_s, a.end_s) == (b.start_s, b.end_s)
        assert a.logit == pytest.approx(b.logit, abs=1e-5)


def test_windows_timestamps_and_scores(detector: Detector, speechlike: np.ndarray) -> None:
    x = speechlike[
        :44000
    ]  # 2.75 s: windows at 0, 0.5, 1.0, 1.5 s and a tail window ending at the last sample
    score = detector.score(x, SR)
    starts = [w.start_s for w in score.windows]
    assert starts == [0.0, 0.5, 1.0, 1.5, 1.75]
    assert [w.is_final for w in score.windows] == [False] * 4 + [True]
    assert all(w.end_s - w.start_s == pytest.approx(1.0) for w in score.windows)
    assert score.duration_s == pytest.approx(44000 / SR)
    ref = _ref_log_odds(x, [0, 8000, 16000, 24000, 28000], 16000)
    np.testing.assert_allclose([w.logit for w in score.windows], ref, rtol=1e-4, atol=1e-4)
    assert score.logit == pytest.approx(float(np.mean([w.logit for w in score.windows])))
    assert score.spoof_prob == pytest.approx(sigmoid(score.logit))
    assert score.is_spoof == (score.spoof_prob >= 0.5)
    assert all(w.spoof_prob == pytest.approx(sigmoid(w.logit)) for w in score.windows)


def test_exact_multiple_has_no_tail_window(detector: Detector, speechlike: np.ndarray) -> None:
    score = detector.score(speechlike[:40000], SR)
    assert [w.start_s for w in score.windows] == [0.0, 0.5, 1.0, 1.5]
    assert not any(w.is_final for w in score.windows)


@pytest.mark.parametrize("aggregate", ["mean", "max", "median", "trimmed"])
def test_aggregates(detector: Detector, speechlike: np.ndarray, aggregate: str) -> None:
    score = detector.score(speechlike, SR, aggregate=aggregate)
    z = [w.logit for w in score.windows]
    expected = {
        "mean": np.mean(z),
        "max": np.max(z),
        "median": np.median(z),
        "trimmed": np.mean(sorted(z)[len(z) // 10 : len(z) - len(z) // 10]),
    }[aggregate]
    assert score.logit == pytest.approx(expected)
    assert score.aggregate == aggregate


def test_trimmed_drops_ten_percent_each_side() -> None:
    values = [100.0, *range(18), -100.0]  # 20 windows: drop 2 each side
    assert aggregate_log_odds(values, "trimmed") == pytest.approx(np.mean(sorted(values)[2:18]))
    assert aggregate_log_odds([1.0, 2.0, 30.0], "trimmed") == pytest.approx(11.0)


def test_calibration_spoof_index_and_threshold(tiny_model_calibrated: Path, speechlike: np.ndarray) -> None:
    det = Detector(tiny_model_calibrated, backend="cpu", num_threads=1, speech_gate=False)
    x = speechlike[:16000]
    logits = reference_logits(x[None, :])[0]
    expected = 0.5 * (logits[0] - logits[1]) - 1.0  # spoof_index 0, scale 0.5, bias -1
    score = det.score(x, SR)
    assert score.logit == pytest.approx(expected, abs=1e-4)
    assert score.threshold == 0.3
    assert score.is_spoof == (sigmoid(expected) >= 0.3)
    over = Detector(tiny_model_calibrated, backend="cpu", num_threads=1, threshold=0.999, speech_gate=False)
    assert over.score(x, SR).threshold == 0.999


def test_dtypes_and_channels_agree(detector: Detector, speechlike: np.ndarray) -> None:
    x16 = np.round(speechlike * 32767).astype(np.int16)
    as_float = x16.astype(np.float32) / 32768
    ref = detector.score(as_float, SR)
    for variant in (x16, as_float.astype(np.float64), np.stack([as_float, as_float], axis=1)):
        got = detector.score(variant, SR)
        np.testing.assert_allclose([w.logit for w in got.windows], [w.logit for w in ref.windows], atol=1e-5)
    stereo = np.stack([as_float, 0.5 * as_float], axis=1)
    down = detector.score((0.75 * as_float).astype(np.float32), SR)
    np.testing.assert_allclose(detector.score(stereo, SR).logit, down.logit, atol=1e-5)
    stereo16 = np.stack([x16, x16], axis=1)
    np.testing.assert_allclose(detector.score(stereo16, SR).logit, ref.logit, atol=1e-5)


def test_short_clip_rule(detector: Detector, speechlike: np.ndarray) -> None:
    score = detector.score(speechlike[:1000], SR)
    assert len(score.windows) == 1
    w = score.windows[0]
    assert (w.start_s, w.end_s, w.is_final) == (0.0, 1000 / SR, True)
    ref = _ref_log_odds(speechlike, [0], 1000)
    assert w.logit == pytest.approx(float(ref[0]), abs=1e-4)
    assert detector.score(speechlike[:400], SR).windows[0].end_s == 400 / SR
    with pytest.raises(InvalidAudioError, match=r"expected at least 400 samples \(0.025 s\).*given 399"):
        detector.score(speechlike[:399], SR)


@pytest.mark.parametrize(
    ("pcm", "match"),
    [
        (
            np.array([0.1, np.nan, 0.2] * 1000, np.float32),
            "expected finite samples, given nan at flat index 1",
        ),
        (np.array([np.inf] * 1000, np.float64), "expected finite samples, given inf"),
        (np.zeros(0, np.float32), "expected at least one sample, given an empty array"),
        (np.zeros(1000, np.int32), "expected dtype int16, float32 or float64, given int32"),
        (np.zeros(1000, np.complex64), "given complex64"),
        (
            np.zeros((2, 3, 1000), np.float32),
            r"expected shape \(frames,\) or \(frames, channels\), given \(2, 3, 1000\)",
        ),
        (
            np.zeros((2, 16000), np.float32),
            r"1..8 channels, given \(2, 16000\) \(channels first\? pass pcm.T\)",
        ),
        (np.full(1000, 1000.0, np.float32), r"expected float samples in \[-1, 1\], given peak 1000"),
        ([0.0] * 1000, "expected a numpy array .* given list"),
        (b"\x00" * 1000, "expected a numpy array .* given bytes"),
    ],
)
def test_bad_audio(detector: Detector, pcm: object, match: str) -> None:
    with pytest.raises(InvalidAudioError, match=match):
        detector.score(pcm, SR)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rate", "match"),
    [
        (0, r"expected 4000..384000 Hz, given 0 Hz"),
        (-16000, "given -16000 Hz"),
        (10**7, "given 10000000 Hz"),
        (16000.5, r"expected an integer number of Hz, given 16000.5 \(float\)"),
        (True, r"given True \(bool\)"),
        ("16000", "given '16000' \\(str\\)"),
    ],
)
def test_bad_sample_rates(detector: Detector, speechlike: np.ndarray, rate: object, match: str) -> None:
    with pytest.raises(InvalidAudioError, match=match):
        detector.score(speechlike, rate)  # type: ignore[arg-type]


def test_resampled_input(detector: Detector, speechlike: np.ndarray) -> None:
    from spoofsdk import _native

    x8 = _native.resample(speechlike, SR, 8000)
    score = detector.score(x8, 8000)
    assert score.duration_s == pytest.approx(x8.size / 8000)
    assert [w.start_s for w in score.windows][:3] == [0.0, 0.5, 1.0]
    # A 16 kHz -> 8 kHz -> 16 kHz round trip keeps the statistics the tiny model looks at close.
    ref = detector.score(speechlike, SR)
    assert abs(score.logit - ref.logit) < 0.5


def test_window_and_hop_overrides(tiny_model: Path, speechlike: np.ndarray) -> None:
    det = Detector(tiny_model, backend="cpu", num_threads=1, window_s=0.5, hop_s=0.25, speech_gate=False)
    assert (det.window_samples, det.hop_samples) == (8000, 4000)
    score = det.score(speechlike[:16000], SR)
    assert [w.start_s for w in score.windows] == [0.0, 0.25, 0.5]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window_s": 0.01}, r"window_s: expected >= 0.025 s \(the model's min_samples 400\), given 0.01 s"),
        ({"hop_s": 2.0}, r"hop_s: expected 0 < hop_s <= window_s \(1.0 s\), given 2.0 s"),
        ({"window_s": -1}, "window_s: expected a positive number of seconds, given -1"),
        ({"hop_s": float("nan")}, "hop_s: expected a positive number of seconds"),
        (
            {"aggregate": "avg"},
            r"aggregate: expected one of \('mean', 'max', 'median', 'trimmed'\), given 'avg'",
        ),
        ({"threshold": 1.0}, r"threshold: expected a spoof probability in \(0, 1\), given 1.0"),
        ({"device_id": -1}, "device_id: expected an integer >= 0, given -1"),
        ({"num_threads": -2}, "num_threads: expected an integer >= 0"),
        ({"batch_size": 0}, "batch_size: expected an integer >= 1, given 0"),
        (
            {"backend": "gpu"},
            r"backend: expected one of \('auto', 'cpu', 'cuda', 'tensorrt', 'triton'\), given 'gpu'",
        ),
        ({"ort_options": {"threads": 2}}, "ort_options: unknown option"),
    ],
)
def test_bad_detector_arguments(tiny_model: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        Detector(tiny_model, **kwargs)  # type: ignore[arg-type]


def _bundled() -> Path:
    from importlib import resources

    return Path(str(resources.files("spoofsdk").joinpath("models/default.onnx")))


def test_default_detector() -> None:
    if _bundled().is_file():
        det = Detector(backend="cpu", num_threads=1)  # the bundled detector loads and scores
        assert det.path == _bundled()
        assert det.score(np.zeros(det.window_samples, np.float32), det.sample_rate).windows
    else:
        with pytest.raises(
            ModelLoadError, match=r"no default detector is bundled .* Detector\('model.onnx'\)"
        ):
            Detector()


def test_model_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model file not found"):
        Detector(tmp_path / "missing.onnx")
    with pytest.raises(InvalidArgumentError, match="path: expected a file path or None, given int"):
        Detector(3)  # type: ignore[arg-type]
    plain = tmp_path / "plain.onnx"
    onnx.save(tiny_graph(), str(plain))
    with pytest.raises(ModelLoadError, match="has no spoofsdk manifest"):
        Detector(plain)


@pytest.mark.parametrize(
    ("graph_kwargs", "match"),
    [
        ({"input_name": "wave"}, r"manifest disagrees with the graph: expected one input named 'audio'"),
        ({"input_rank": 3}, r"expected input 'audio' of rank 2 \[batch, samples\], given rank 3"),
        ({"n_out": 3}, r"expected output 'logits' of shape \[batch, 2\], given \['batch', 3\]"),
    ],
)
def test_manifest_that_disagrees_with_the_graph(
    tmp_path: Path, graph_kwargs: dict[str, object], match: str
) -> None:
    model = tiny_graph(**graph_kwargs)  # type: ignore[arg-type]
    for key, value in tiny_manifest().to_metadata().items():  # bypass the writer's own graph check
        e = model.metadata_props.add()
        e.key, e.value = key, value
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match=match):
        Detector(path, backend="cpu")


def test_corrupt_model_with_a_valid_manifest(tmp_path: Path, tiny_model: Path) -> None:
    """A file whose metadata parses but whose graph ORT rejects: ModelLoadError, not an ORT exception."""
    model = onnx.load(str(tiny_model))
    model.graph.node[0].op_type = "NoSuchOp"
    path = tmp_path / "corrupt.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match="ONNX Runtime cannot load the model"):
        Detector(path, backend="cpu")


def test_explicit_cuda_is_unavailable_here(tiny_model: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available here")
    with pytest.raises(BackendUnavailableError, match="available backends"):
        Detector(tiny_model, backend="cuda")


def test_eight_threads_give_the_same_scores_as_one(detector: Detector, speechlike: np.ndarray) -> None:
    rng = np.random.default_rng(7)
    clips = [
        (speechlike[: int(rng.integers(500, speechlike.size))] * rng.uniform(0.2, 1.0)).astype(np.float32)
        for _ in range(16)
    ]
    expected = [detector.score(c, SR) for c in clips]
    got: dict[tuple[int, int], object] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for rep in range(3):
                for k in range(len(clips)):
                    i = (k + t) % len(clips)  # every thread scores every clip, in its own order
                    got[(t * 100 + rep, i)] = detector.score(clips[i], SR)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert len(got) == 8 * 3 * len(clips)
    for (_, i), score in got.items():
        assert score == expected[i]  # bit-identical: same windows, same batches, same numbers


def test_big_endian_input_is_accepted(detector: Detector, speechlike: np.ndarray) -> None:
    ref = detector.score(speechlike, SR)
    assert detector.score(speechlike.astype(">f4"), SR) == ref
    x16 = np.round(speechlike * 32767).astype(np.int16)
    assert detector.score(x16.astype(">i2"), SR) == detector.score(x16, SR)


def test_closed_detector(tiny_model: Path, speechlike: np.ndarray) -> None:
    from spoofsdk.errors import SessionClosedError

    with Detector(tiny_model, backend="cpu", num_threads=1, speech_gate=False) as det:
        det.score(speechlike, SR)
    with pytest.raises(SessionClosedError, match="the detector was closed"):
        det.score(speechlike, SR)


@requires_native
def test_an_uncalibrated_model_is_warned_about_once(
    tmp_path: Path,
    tiny_model_calibrated: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Detector (and so spoof-score and the call-centre servers, which load models through it) logs one
    WARNING per uncalibrated model and process, naming the fix; a calibrated model is never warned about."""
    import spoofsdk.detector as detector_mod
    from spoofsdk.manifest import Calibration

    monkeypatch.setattr(detector_mod, "_UNCALIBRATED_WARNED", set())
    path = tmp_path / "uncal.onnx"
    from sdk_models import save_tiny_detector

    save_tiny_detector(path, tiny_manifest(calibration=Calibration(calibrated=False)))

    def warnings_about(p: Path) -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "spoofsdk" and r.levelname == "WARNING" and "uncalibrated" in r.getMessage()
            and str(p) in r.getMessage()
        ]  # fmt: skip

    with caplog.at_level("WARNING", logger="spoofsdk"):
        first = Detector(path, backend="cpu", num_threads=1, speech_gate=False)
        Detector(path, backend="cpu", num_threads=1, speech_gate=False)
        calibrated = Detector(tiny_model_calibrated, backend="cpu", num_threads=1, speech_gate=False)
    assert first.calibrated is False
    assert calibrated.calibrated is True
    (msg,) = warnings_about(path)
    assert f"spoof-export calibrate {path} --dev MANIFEST" in msg
    assert warnings_about(tiny_model_calibrated) == []


def test_the_uncalibrated_warning_for_a_remote_model_names_the_served_file(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spoofsdk.detector as detector_mod

    monkeypatch.setattr(detector_mod, "_UNCALIBRATED_WARNED", set())
    with caplog.at_level("WARNING", logger="spoofsdk"):
        detector_mod._warn_if_uncalibrated(tiny_manifest(), "grpc://triton:8001/spoof")
        detector_mod._warn_if_uncalibrated(tiny_manifest(), "grpc://triton:8001/spoof")
    (msg,) = [r.getMessage() for r in caplog.records if "is uncalibrated" in r.getMessage()]
    assert "spoof-export calibrate MODEL --dev MANIFEST" in msg
    assert "the model file the server loads" in msg
