"""Bad input through the Python binding: every caller mistake is a typed ValueError with the
native status in .code and a message naming what was expected and what was given."""

from __future__ import annotations

import numpy as np
import pytest

from spoofsdk import InvalidArgumentError, InvalidAudioError, NativeError, _native


@pytest.mark.parametrize("rate", [0, -1, 10**9, 10**12])
def test_bad_rates(rate: int) -> None:
    with pytest.raises(
        InvalidArgumentError, match=rf"input_sample_rate must be in \[1000, 384000\] Hz; got {rate}"
    ):
        _native.Frontend(rate)
    with pytest.raises(InvalidArgumentError, match=rf"model_sample_rate .*got {rate}") as info:
        _native.Frontend(8000, model_sample_rate=rate)
    assert isinstance(info.value, ValueError)
    assert info.value.code == 1


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"window_samples": 0}, r"window_samples must be in \[1, \d+\]; got 0"),
        ({"window_samples": -5}, r"got -5"),
        ({"hop_samples": 0}, r"hop_samples must be in \[1, window_samples = 64000\]; got 0"),
        ({"hop_samples": 64001}, r"hop_samples .*got 64001"),
        (
            {"capacity_samples": 64000},
            r"capacity_samples must be 0 \(default\) or in \[window_samples \+ hop_samples",
        ),
        ({"capacity_samples": -1}, r"capacity_samples .*got -1"),
        ({"overflow": "block"}, r"overflow must be 'error' or 'drop_oldest'; got 'block'"),
        ({"encoding": "pcm8"}, r"encoding must be one of 'pcm16', 'float32', 'mulaw', 'alaw'; got 'pcm8'"),
    ],
)
def test_bad_options(kw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message) as info:
        _native.Frontend(8000, **kw)  # type: ignore[arg-type]
    assert info.value.code == 1


def test_huge_push_is_a_typed_error_not_a_crash() -> None:
    fe = _native.Frontend(8000, encoding="mulaw", overflow="drop_oldest")
    with pytest.raises(
        InvalidArgumentError, match=r"at most 67108864 bytes \(SPOOF_MAX_PUSH_BYTES\); got 67108865"
    ):
        fe.push(bytes(_native.MAX_PUSH_BYTES + 1))
    assert fe.stats().samples_in == 0
    # a large allowed push works: drop_oldest keeps the newest capacity samples and counts the rest
    added = fe.push(bytes(1 << 20))  # 1 Mi mu-law samples -> ~2 Mi at 16 kHz
    s = fe.stats()
    assert s.samples_in == 1 << 20
    assert added == s.samples_out > (1 << 21) - 100
    assert s.samples_dropped == s.samples_out - fe.capacity_samples


def test_wrong_types() -> None:
    fe = _native.Frontend(8000)
    with pytest.raises(InvalidArgumentError, match=r"bytes-like .*got str"):
        fe.push("abc")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"bytes-like .*got int"):
        fe.push(5)  # type: ignore[arg-type]
    with pytest.raises(InvalidAudioError, match=r"floating-point"):
        fe.push_float([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"n must be <= capacity"):
        _native.RingBuffer(4).read(0, 10**12)


def test_error_classes_carry_the_status() -> None:
    assert issubclass(InvalidArgumentError, ValueError)
    assert issubclass(InvalidAudioError, ValueError)
    fe = _native.Frontend(16000, window_samples=10, hop_samples=10, capacity_samples=20, encoding="float32")
    with pytest.raises(NativeError) as info:
        fe.push_float(np.zeros(25, np.float32))
    assert info.value.code == 3
