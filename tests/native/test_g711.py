"""G.711 decoding equals libsndfile's, code for code (all 256 codes of each law); the encoder inverts it."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from spoofsdk import InvalidArgumentError, InvalidAudioError, _native
from spoofsdk.audio import decode, g711_encode

CODES = np.arange(256, dtype=np.uint8)


def _wav_with_codes(subtype: str) -> bytes:
    """A WAV written by libsndfile with `subtype`, whose data chunk then holds codes 0..255."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros(256, dtype=np.int16), 8000, format="WAV", subtype=subtype)
    wav = bytearray(buf.getvalue())
    pos = wav.find(b"data")
    assert pos > 0
    size = int.from_bytes(wav[pos + 4 : pos + 8], "little")
    assert size == 256
    wav[pos + 8 : pos + 8 + 256] = CODES.tobytes()
    return bytes(wav)


@pytest.mark.parametrize(("subtype", "encoding"), [("ULAW", "mulaw"), ("ALAW", "alaw")])
def test_all_256_codes_match_libsndfile(subtype: str, encoding: str) -> None:
    ref, sr = sf.read(io.BytesIO(_wav_with_codes(subtype)), dtype="float32")
    assert sr == 8000
    assert ref.shape == (256,)
    ours = decode(CODES.tobytes(), encoding)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, ref)
    # and the streaming front end (identity rate) gives the same values
    fe = _native.Frontend(
        8000, model_sample_rate=8000, window_samples=256, hop_samples=256, encoding=encoding
    )
    for code in CODES:  # one byte per push
        fe.push(bytes([code]))
    (window,) = fe.windows()
    np.testing.assert_array_equal(window.samples, ref)


@pytest.mark.parametrize(("subtype", "encoding"), [("ULAW", "mulaw"), ("ALAW", "alaw")])
def test_roundtrip_through_libsndfile_encoder(subtype: str, encoding: str) -> None:
    """Linear audio encoded by libsndfile and decoded by us equals libsndfile's own decoding."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(4000) * 0.3).clip(-1, 1).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, 8000, format="RAW", subtype=subtype)
    raw = buf.getvalue()
    ref, _ = sf.read(
        io.BytesIO(raw), format="RAW", subtype=subtype, samplerate=8000, channels=1, dtype="float32"
    )
    np.testing.assert_array_equal(decode(raw, encoding), ref)


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
def test_encoder_inverts_the_decoder(law: str) -> None:
    """Every code decodes and re-encodes to itself (mu-law's -0, 0x7F, becomes +0, 0xFF); every int16
    value encodes to the code whose decoding is nearest it within its segment, and floats scale by 32768."""
    again = g711_encode(decode(CODES.tobytes(), law), law)
    assert again.dtype == np.uint8
    assert again.shape == (256,)
    want = CODES.copy()
    if law == "mulaw":
        want[0x7F] = 0xFF
    np.testing.assert_array_equal(again, want)
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    codes = g711_encode(pcm, law)
    np.testing.assert_array_equal(codes, g711_encode(pcm.astype(np.float64) / 32768.0, law))
    np.testing.assert_array_equal(codes, g711_encode(pcm.astype(np.float32) / 32768.0, law))
    levels = decode(codes.tobytes(), law).astype(np.float64) * 32768.0
    assert np.all(np.diff(levels) >= 0)  # monotonic: a larger sample never gets a smaller level
    # within half a quantisation step: 512 at the top segment (mu-law clips above its largest level 32124),
    # 4 (mu-law) / 8 (A-law) near zero
    p = pcm.astype(np.int32)
    err = np.abs(levels - p)
    assert err[np.abs(p) <= 32124].max() <= 512
    assert err[np.abs(p) < 32].max() <= (4 if law == "mulaw" else 8)
    assert (
        g711_encode(np.array([2.0, -2.0]), law).tolist()
        == g711_encode(np.array([32767, -32768], dtype=np.int16), law).tolist()
    )


def test_encoder_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="law: expected 'mulaw' or 'alaw', given 'ulaw'"):
        g711_encode(np.zeros(4, dtype=np.int16), "ulaw")
    bad = "x: expected int16 or floating-point samples, given dtype int32"
    with pytest.raises(InvalidAudioError, match=bad):
        g711_encode(np.zeros(4, dtype=np.int32), "mulaw")
