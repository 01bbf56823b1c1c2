"""The streaming front end through _native.Frontend: framing, tail rule, overflow
policies, state errors, stats, and a producer/consumer pair of Python threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from spoofsdk import BufferOverflowError, InvalidArgumentError, InvalidAudioError, NativeStateError, _native


def _frontend(**kw: object) -> _native.Frontend:
    opts: dict[str, object] = {"window_samples": 1000, "hop_samples": 400, "encoding": "float32"}
    opts.update(kw)
    rate = int(opts.pop("input_sample_rate", 16000))  # type: ignore[call-overload]
    return _native.Frontend(rate, **opts)  # type: ignore[arg-type]


def _ramp(n: int) -> np.ndarray:
    return (np.arange(n) % 1000 / 1000).astype(np.float32)


def test_defaults_and_properties() -> None:
    fe = _native.Frontend(8000)
    assert (fe.input_sample_rate, fe.model_sample_rate) == (8000, 16000)
    assert (fe.window_samples, fe.hop_samples) == (64000, 32000)
    assert fe.capacity_samples == 4 * 64000
    assert (fe.encoding, fe.overflow, fe.flushed) == ("pcm16", "error", False)


def test_windows_carry_absolute_start_indices() -> None:
    fe = _frontend()
    x = _ramp(3000)
    for i in range(0, 3000, 70):
        fe.push_float(x[i : i + 70])
    windows = fe.windows()
    assert [w.start_index for w in windows] == [0, 400, 800, 1200, 1600, 2000]
    for w in windows:
        np.testing.assert_array_equal(w.samples, x[w.start_index : w.start_index + 1000])
        assert not w.is_final
    assert fe.next_window() is None


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, []),  # nothing: nothing
        (500, [(0, 500, True)]),  # shorter than a window: all of it
        (1000, [(0, 1000, False)]),  # exactly one window
        (1800, [(0, 1000, False), (400, 1000, False), (800, 1000, False)]),  # last window ends at the end
        (
            1900,
            [(0, 1000, False), (400, 1000, False), (800, 1000, False), (900, 1000, True)],
        ),  # right-aligned
    ],
)
def test_flush_tail_rule(n: int, expected: list[tuple[int, int, bool]]) -> None:
    fe = _frontend()
    x = _ramp(n)
    fe.push_float(x)
    fe.flush()
    assert fe.flushed
    got = fe.windows()
    assert [(w.start_index, w.samples.size, w.is_final) for w in got] == expected
    for w in got:
        np.testing.assert_array_equal(w.samples, x[w.start_index : w.start_index + w.samples.size])
    fe.flush()  # idempotent
    assert fe.windows() == []


def test_push_after_flush_is_a_state_error_until_reset() -> None:
    fe = _frontend(encoding="pcm16")
    fe.push(b"\x00\x01")
    fe.flush()
    with pytest.raises(NativeStateError, match=r"push after flush: call reset\(\)") as info:
        fe.push(b"\x00\x01")
    assert info.value.code == 5
    with pytest.raises(NativeStateError, match=r"after flush"):
        fe.push_float(np.zeros(3, np.float32))
    fe.reset()
    assert not fe.flushed
    assert fe.push(b"\x00\x01") == 1
    s = fe.stats()
    assert (s.samples_in, s.samples_out, s.windows_emitted) == (1, 1, 0)


def test_error_policy_overflow_writes_nothing_and_loses_nothing() -> None:
    fe = _frontend(capacity_samples=1400)
    x = _ramp(5000)
    with pytest.raises(
        BufferOverflowError, match=r"would add 1500 samples .*only 1400 of 1400 are free"
    ) as info:
        fe.push_float(x[:1500])
    assert info.value.code == 3
    assert fe.stats().samples_in == 0
    # The same audio in chunks, draining windows as we go, gives every window of a one-shot run.
    pos, got = 0, []
    while pos < len(x):
        try:
            fe.push_float(x[pos : pos + 300])
            pos += 300
        except BufferOverflowError:
            got += fe.windows()
    fe.flush()
    got += fe.windows()
    ref = _frontend(capacity_samples=10000)
    ref.push_float(x)
    ref.flush()
    want = ref.windows()
    assert [(w.start_index, w.is_final) for w in got] == [(w.start_index, w.is_final) for w in want]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a.samples, b.samples)
    assert fe.stats().samples_dropped == 0


def test_flush_that_does_not_fit_can_be_repeated() -> None:
    # 8 kHz -> 16 kHz holds back 2 K output samples (K = half the filter span) until flush.
    fe = _native.Frontend(8000, window_samples=100, hop_samples=100, capacity_samples=200, encoding="float32")
    held = 220 - fe.push_float(np.full(110, 0.25, np.float32))
    assert 20 < held < 100
    with pytest.raises(
        BufferOverflowError, match=rf"during flush: 20 of the resampler's last {held} samples"
    ):
        fe.flush()
    assert not fe.flushed
    with pytest.raises(NativeStateError):
        fe.push_float(np.zeros(1, np.float32))
    assert [w.start_index for w in fe.windows()] == [0, 100]
    fe.flush()
    assert fe.flushed
    assert fe.stats().samples_out == 220
    assert [(w.start_index, w.is_final) for w in fe.windows()] == [(120, True)]


def test_error_policy_pushes_up_to_capacity_minus_window_always_fit() -> None:
    """Draining releases all history but what the next and the final window need."""
    fe = _frontend(capacity_samples=1400)  # window 1000, hop 400: pushes of 400 always fit
    x = _ramp(10000)
    for i in range(0, len(x), 400):
        fe.push_float(x[i : i + 400])
        fe.windows()
    fe.flush()
    final = fe.windows()
    assert fe.stats().samples_dropped == 0
    assert [(w.start_index, w.is_final) for w in final] == [(9000, True)]  # regular windows end at 9800


def test_drop_oldest_skips_windows_and_counts_samples() -> None:
    fe = _frontend(overflow="drop_oldest", capacity_samples=1400)
    x = _ramp(5000)
    assert fe.push_float(x) == 5000
    s = fe.stats()
    assert s.samples_dropped == 5000 - 1400
    windows = fe.windows()
    # the ring holds [3600, 5000): windows on the hop grid from 3600
    assert [w.start_index for w in windows] == [3600, 4000]
    for w in windows:
        np.testing.assert_array_equal(w.samples, x[w.start_index : w.start_index + 1000])


def test_encoding_rules() -> None:
    fe = _frontend(encoding="pcm16")
    fe.push(b"\x01")  # half a sample
    assert fe.stats().pending_bytes == 1
    with pytest.raises(
        InvalidArgumentError, match=r"encoding mulaw differs from the pcm16 encoding of the 1 pending"
    ):
        fe.push(b"\x01", "mulaw")
    with pytest.raises(InvalidArgumentError, match=r"cannot push float samples while 1 byte"):
        fe.push_float(np.zeros(2, np.float32))
    with pytest.raises(InvalidArgumentError, match=r"encoding must be one of .*got 'u-law'"):
        fe.push(b"\x01", "u-law")
    fe.push(b"\x40")
    assert fe.stats().pending_bytes == 0
    fe.push(b"\x01")
    fe.flush()  # the incomplete final sample is discarded and counted
    assert fe.stats().discarded_bytes == 1
    fe.reset()
    assert fe.push(b"\xff\x7f\x00", "mulaw") == 3


def test_float_pushes_are_validated() -> None:
    fe = _frontend()
    with pytest.raises(InvalidAudioError, match=r"sample 3 is not"):
        fe.push_float(np.array([0, 0, 0, np.nan], np.float32))
    with pytest.raises(InvalidAudioError, match=r"float32 audio must be finite; sample 1 is -Inf"):
        fe.push(np.array([0, -np.inf], "<f4").tobytes())
    assert fe.stats().samples_in == 0  # nothing from the failed pushes
    with pytest.raises(InvalidAudioError, match=r"1-D floating-point array .*got dtype int16"):
        fe.push_float(np.zeros(3, np.int16))
    with pytest.raises(InvalidAudioError, match=r"must be 1-D \(mono\); got 2 dimensions"):
        fe.push_float(np.zeros((2, 3), np.float32))
    assert fe.push_float(np.zeros(5, np.float64)) == 5  # other float dtypes are converted


def test_producer_and_consumer_threads() -> None:
    """A producer thread and a consumer thread on one Frontend (the GIL is released inside)."""
    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, 8000 * 10, dtype=np.uint8).tobytes()
    kw = {"window_samples": 4000, "hop_samples": 1000, "encoding": "mulaw"}
    ref = _native.Frontend(8000, capacity_samples=200000, **kw)  # type: ignore[arg-type]
    ref.push(data)
    ref.flush()
    want = ref.windows()
    fe = _native.Frontend(8000, capacity_samples=6000, **kw)  # type: ignore[arg-type]
    got: list[_native.Window] = []
    done = threading.Event()

    def produce() -> None:
        pos = 0
        while pos < len(data):
            try:
                fe.push(data[pos : pos + 160])
                pos += 160
            except BufferOverflowError:
                done.wait(0.0005)
        while True:
            try:
                fe.flush()
                break
            except BufferOverflowError:
                done.wait(0.0005)
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    while not done.is_set() or (w := fe.next_window()) is not None:
        if not done.is_set():
            w = fe.next_window()
            if w is None:
                continue
        got.append(w)
    producer.join()
    got += fe.windows()
    assert [(w.start_index, w.is_final) for w in got] == [(w.start_index, w.is_final) for w in want]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a.samples, b.samples)


def test_drop_oldest_threads_give_untorn_windows() -> None:
    """Under drop_oldest a fast producer thread overwrites unread audio; every window the
    consumer thread gets is still bit-identical to the one-shot window at its start index."""
    rng = np.random.default_rng(8)
    data = rng.integers(0, 256, 8000 * 8, dtype=np.uint8).tobytes()
    kw = {"window_samples": 800, "hop_samples": 400, "encoding": "alaw"}
    ref = _native.Frontend(8000, capacity_samples=200000, **kw)  # type: ignore[arg-type]
    ref.push(data)
    ref.flush()
    want = {w.start_index: w.samples for w in ref.windows() if not w.is_final}
    fe = _native.Frontend(8000, capacity_samples=1300, overflow="drop_oldest", **kw)  # type: ignore[arg-type]
    done = threading.Event()

    def produce() -> None:
        for pos in range(0, len(data), 96):
            fe.push(data[pos : pos + 96])
        fe.flush()
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    got: list[_native.Window] = []
    while not done.is_set():
        got += fe.windows()
    producer.join()
    got += fe.windows()
    starts = [w.start_index for w in got if not w.is_final]
    assert starts == sorted(set(starts))
    for w in got:
        if not w.is_final:
            np.testing.assert_array_equal(w.samples, want[w.start_index])
    s = fe.stats()
    assert s.samples_out == ref.stats().samples_out
    assert s.samples_dropped >= 0
