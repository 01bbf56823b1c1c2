"""StreamingSession: chunking invariance vs score(), lifecycle, errors, latency figures."""

from __future__ import annotations

import numpy as np
import pytest
from sdk_models import requires_native

from spoofsdk import Detector, StreamingSession
from spoofsdk.errors import (
    InvalidArgumentError,
    InvalidAudioError,
    NativeStateError,
    SessionClosedError,
)

pytestmark = requires_native
SR = 16000


def _assert_same(a: tuple, b: tuple) -> None:  # type: ignore[type-arg]
    assert [(w.start_s, w.end_s, w.is_final) for w in a] == [(w.start_s, w.end_s, w.is_final) for w in b]
    np.testing.assert_allclose([w.logit for w in a], [w.logit for w in b], rtol=0, atol=1e-5)


@pytest.mark.parametrize("n", [399 + 1, 1000, 16000, 40000, 44321, 52800])
def test_20ms_frames_equal_score(detector: Detector, speechlike: np.ndarray, n: int) -> None:
    x = speechlike[:n]
    offline = detector.score(x, SR)
    frame = SR // 50
    with detector.stream(SR, encoding="float32") as sess:
        pushed = []
        for k in range(0, n, frame):
            pushed += sess.push(x[k : k + frame])
        final = sess.flush()
    _assert_same(final.windows, offline.windows)
    assert final.logit == pytest.approx(offline.logit, abs=1e-5)
    assert final.is_spoof == offline.is_spoof
    assert final.duration_s == pytest.approx(offline.duration_s)
    assert tuple(pushed) == final.windows[: len(pushed)]  # pushes return windows as they complete
    assert all(not w.is_final for w in pushed)


def test_random_byte_chunking_pcm16(detector: Detector, speechlike: np.ndarray) -> None:
    x16 = np.round(speechlike * 32767).astype("<i2")
    offline = detector.score(x16, SR)
    data = x16.tobytes()
    rng = np.random.default_rng(3)
    for _ in range(3):
        cuts = np.sort(rng.choice(np.arange(1, len(data)), size=200, replace=False))
        with detector.stream(SR, encoding="pcm16") as sess:
            for chunk in np.split(np.frombuffer(data, np.uint8), cuts):  # splits mid-sample too
                sess.push(chunk.tobytes())
            _assert_same(sess.flush().windows, offline.windows)


def test_one_huge_push_equals_small_pushes(detector: Detector, speechlike: np.ndarray) -> None:
    x = np.tile(speechlike, 4)  # 13 s: larger than the ring buffer's 4 windows in one push
    offline = detector.score(x, SR)
    with detector.stream(SR, encoding="float32") as sess:
        got = sess.push(x)
        final = sess.flush()
    assert len(got) == len(offline.windows) - 1
    _assert_same(final.windows, offline.windows)


@pytest.mark.parametrize("encoding", ["mulaw", "alaw"])
def test_g711_bytes_equal_score_of_decoded(detector: Detector, speechlike: np.ndarray, encoding: str) -> None:
    from spoofsdk import _native

    data = np.random.default_rng(5).integers(0, 256, 30000, dtype=np.uint8).tobytes()
    offline = detector.score(_native.decode(data, encoding), SR)
    with detector.stream(SR, encoding=encoding) as sess:
        for k in range(0, len(data), 160):
            sess.push(data[k : k + 160])
        _assert_same(sess.flush().windows, offline.windows)


def test_8khz_mulaw_call_equals_score(detector: Detector, speechlike: np.ndarray) -> None:
    """The telephony case: 8 kHz G.711 in 20 ms RTP frames, resampled natively to 16 kHz."""
    from spoofsdk import _native

    data = np.random.default_rng(9).integers(0, 256, 8000 * 3 + 77, dtype=np.uint8).tobytes()
    offline = detector.score(_native.decode(data, "mulaw"), 8000)
    for frame in (160, 33, 1000):
        with detector.stream(8000, encoding="mulaw") as sess:
            for k in range(0, len(data), frame):
                sess.push(data[k : k + frame])
            _assert_same(sess.flush().windows, offline.windows)


def test_lifecycle(detector: Detector, speechlike: np.ndarray) -> None:
    x = speechlike[:20000]
    sess = detector.stream(SR, encoding="float32")
    assert isinstance(sess, StreamingSession)
    sess.push(x)
    first = sess.flush()
    assert sess.flush() is first  # idempotent
    assert sess.flushed
    with pytest.raises(NativeStateError, match=r"session was flushed .* call reset\(\)"):
        sess.push(x)
    sess.reset()
    assert sess.windows == ()
    sess.push(x)
    again = sess.flush()
    assert again == first  # a reset session is a fresh call: same audio, same scores
    sess.close()
    sess.close()  # idempotent
    assert sess.closed
    for op in (lambda: sess.push(x), sess.flush, sess.reset, sess.stats):
        with pytest.raises(SessionClosedError, match="the streaming session is closed"):
            op()
    with detector.stream(SR) as s2:
        pass
    with pytest.raises(SessionClosedError):
        s2.push(b"\x00\x00")


def test_bad_pushes_do_not_corrupt_the_session(detector: Detector, speechlike: np.ndarray) -> None:
    x = speechlike[:24000]
    clean = detector.score(x, SR)
    with detector.stream(SR, encoding="float32") as sess:
        sess.push(x[:10000])
        for bad, match in [
            (np.array([0.0, np.nan], np.float32), "push: expected finite samples"),
            ([0.0] * 10, "push: expected bytes, bytearray, memoryview or a numpy array, given list"),
            (np.zeros(5, np.int64), "push: expected dtype int16, float32 or float64, given int64"),
            (np.zeros(0, np.float32), "push: expected at least one sample"),
        ]:
            with pytest.raises(InvalidAudioError, match=match):
                sess.push(bad)  # type: ignore[arg-type]
        sess.push(x[10000:])
        _assert_same(sess.flush().windows, clean.windows)


def test_flush_without_enough_audio(detector: Detector) -> None:
    with detector.stream(SR) as sess, pytest.raises(InvalidAudioError, match="expected at least 400 samples"):
        sess.flush()
    with detector.stream(SR) as sess:
        sess.push(b"\x01\x00" * 100)
        with pytest.raises(InvalidAudioError, match="given 100"):
            sess.flush()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"encoding": "opus"},
            r"encoding: expected one of \('pcm16', 'mulaw', 'alaw', 'float32'\), given 'opus'",
        ),
        ({"overflow": "grow"}, "overflow: expected 'error' or 'drop_oldest', given 'grow'"),
        ({"buffer_s": 0.5}, r"buffer_s: expected >= window \+ hop = 1.5 s, given 0.5 s"),
        ({"buffer_s": -1}, "buffer_s: expected a positive number of seconds"),
        ({"aggregate": "sum"}, "aggregate: expected one of"),
    ],
)
def test_bad_stream_arguments(detector: Detector, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        detector.stream(SR, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidAudioError, match=r"expected 4000\.\.384000 Hz, given 100 Hz"):
        detector.stream(100)


def test_stats_and_latency(detector: Detector, speechlike: np.ndarray) -> None:
    with detector.stream(SR, encoding="float32", buffer_s=3.0) as sess:
        for k in range(0, speechlike.size, 320):
            sess.push(speechlike[k : k + 320])
        score = sess.flush()
        st = sess.stats()
    _assert_same(score.windows, detector.score(speechlike, SR).windows)  # the logits are offline scoring's
    assert st.windows == len(score.windows)
    assert st.pushes == -(-speechlike.size // 320)
    assert st.duration_s == pytest.approx(speechlike.size / SR)
    assert st.samples_dropped == 0
    assert st.inference.count == st.push_to_result.count == st.windows
    assert 0 < st.inference.p50_ms <= st.inference.max_ms
    assert st.push_to_result.p50_ms >= st.inference.p50_ms * 0.5


def test_score_so_far(detector: Detector, speechlike: np.ndarray) -> None:
    with detector.stream(SR, encoding="float32") as sess:
        assert sess.score_so_far() is None
        sess.push(speechlike[:24000])  # windows [0, 1) s and [0.5, 1.5) s are complete
        partial = sess.score_so_far()
        assert partial is not None
        assert len(partial.windows) == 2
        # the two windows' logits are offline scoring's of the same 1.5 s, and so is their aggregate
        offline = detector.score(speechlike[:24000], SR)
        assert [(w.start_s, w.end_s) for w in partial.windows] == [
            (w.start_s, w.end_s) for w in offline.windows
        ]
        np.testing.assert_allclose(
            [w.logit for w in partial.windows], [w.logit for w in offline.windows], rtol=0, atol=1e-5
        )
        assert partial.logit == pytest.approx(offline.logit, abs=1e-5)
        assert partial.is_spoof == offline.is_spoof
        # and they differ from window to window: a constant or stale logit would not match
        assert abs(partial.windows[0].logit - partial.windows[1].logit) > 1e-3
        sess.push(speechlike[24000:])
        final = sess.flush()
        assert [w.logit for w in final.windows[:2]] == [w.logit for w in partial.windows]


def test_non_contiguous_buffer(detector: Detector) -> None:
    strided = memoryview(np.zeros(100, np.int16))[::2]
    with (
        detector.stream(SR) as sess,
        pytest.raises(InvalidAudioError, match="expected a contiguous bytes-like"),
    ):
        sess.push(strided)
