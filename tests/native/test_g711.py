"""G.711 decoding equals libsndfile's, code for code (all 256 codes of each law)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from spoofsdk import _native
from spoofsdk.audio import decode

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
