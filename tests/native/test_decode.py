"""spoofsdk.audio.decode and _native.decode: values, split bytes and typed errors."""

from __future__ import annotations

import numpy as np
import pytest

from spoofsdk import InvalidArgumentError, InvalidAudioError, _native
from spoofsdk.audio import decode


def test_pcm16_all_values_exact() -> None:
    values = np.arange(-32768, 32768, dtype=np.int16)
    out = decode(values.astype("<i2").tobytes(), "pcm16")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, values.astype(np.float32) / 32768.0)
    assert out.min() == -1.0
    assert out.max() < 1.0


def test_float32_passthrough_and_bytes_like_inputs() -> None:
    x = np.array([0.0, -1.0, 0.5, 1e-30, 3.0], dtype="<f4")
    for data in (x.tobytes(), bytearray(x.tobytes()), memoryview(x.tobytes())):
        np.testing.assert_array_equal(decode(data, "float32"), x)


def test_empty_input_gives_empty_array() -> None:
    for enc in ("pcm16", "float32", "mulaw", "alaw"):
        out = decode(b"", enc)
        assert out.shape == (0,)
        assert out.dtype == np.float32


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_float32_non_finite_is_invalid_audio(bad: float) -> None:
    data = np.array([0.1, 0.2, bad], dtype="<f4").tobytes()
    with pytest.raises(InvalidAudioError, match=r"sample 2 is") as info:
        decode(data, "float32")
    assert info.value.code == 2
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("encoding", "n_bytes", "unit"), [("pcm16", 3, 2), ("float32", 6, 4)])
def test_partial_samples_are_refused(encoding: str, n_bytes: int, unit: int) -> None:
    with pytest.raises(InvalidArgumentError, match=rf"multiple of {unit} .*got {n_bytes}") as info:
        decode(bytes(n_bytes), encoding)
    assert info.value.code == 1


def test_unknown_encoding_and_wrong_types() -> None:
    with pytest.raises(InvalidArgumentError, match=r"encoding must be one of .*got 'ulaw'"):
        decode(b"\x00", "ulaw")
    with pytest.raises(InvalidArgumentError, match=r"encoding must be one of .*got 'pcm24'") as info:
        _native.decode(b"\x00\x00\x00", "pcm24")
    assert info.value.code == 1
    with pytest.raises(InvalidArgumentError, match=r"data must be bytes.*got str"):
        decode("abc", "mulaw")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"bytes-like.*got str"):
        _native.decode("abc", "mulaw")  # type: ignore[arg-type]


def test_split_bytes_wait_for_their_partner() -> None:
    """PCM16/float32 bytes split at every offset give the same samples as one push."""
    rng = np.random.default_rng(1)
    cases = {
        "pcm16": rng.integers(-32768, 32768, 300, dtype=np.int16).astype("<i2").tobytes(),
        "float32": rng.uniform(-1, 1, 200).astype("<f4").tobytes(),
    }
    for enc, data in cases.items():
        ref = decode(data, enc)
        for split in range(1, 9):
            fe = _native.Frontend(16000, window_samples=len(ref), hop_samples=len(ref), encoding=enc)
            assert fe.push(data[:split]) == split // (2 if enc == "pcm16" else 4)
            assert fe.stats().pending_bytes == split % (2 if enc == "pcm16" else 4)
            fe.push(data[split:])
            (window,) = fe.windows()
            np.testing.assert_array_equal(window.samples, ref)
