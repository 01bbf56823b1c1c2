"""Codec round trips: G.711 mu-law / A-law, GSM 06.10, MP3, Opus and Vorbis.

Every codec resamples to its own rate, encodes, decodes and resamples back to the input rate; the output has
the input's length (trimmed or zero-padded at the end). G.711 is encoded by the SDK's encoder
(:func:`spoofsdk.audio.g711_encode`: ITU-T G.711 segment formulas, no ``audioop``) and decoded through the
SDK's native decoder when it is built (the same decoder the runtime uses for call audio), else with the
formulas here. GSM 06.10, MP3 (MPEG-1/2 layer III), Opus and
Vorbis go through libsndfile (``soundfile``); whether this libsndfile build encodes each is probed once by
:func:`codec_availability` (libsndfile >= 1.1 has MP3 and Opus when built with LAME/mpg123/libopus).
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from spoof_train.errors import ConfigError

__all__ = [
    "CODECS",
    "Codec",
    "codec_availability",
    "g711_decode",
    "g711_encode",
]

logger = logging.getLogger("spoof_train")

# ------------------------------------------------------------------------------------------------------
# G.711


_MU_BIAS = 0x84  # of the fallback decoder below (the encoder is the SDK's)


def g711_encode(x: NDArray[np.floating], law: str) -> NDArray[np.uint8]:
    """Float samples in [-1, 1] -> G.711 code bytes (``law`` = "mulaw" or "alaw"), as ITU-T G.711 specifies
    (mu-law: bias 132, clip 32635, bits inverted; A-law: 13-bit magnitude, even bits inverted with 0x55).
    The encoder is :func:`spoofsdk.audio.g711_encode` (the project's one G.711 encoder)."""
    if law not in ("mulaw", "alaw"):
        raise ConfigError(f"G.711 law must be 'mulaw' or 'alaw', got {law!r}")
    from spoofsdk.audio import g711_encode as sdk_g711_encode

    return sdk_g711_encode(np.asarray(x, dtype=np.float64), law)


def g711_decode(codes: NDArray[np.uint8], law: str) -> NDArray[np.float32]:
    """G.711 code bytes -> float32 samples in [-1, 1] (the standard expansion, value / 32768)."""
    c = np.asarray(codes, dtype=np.int32) & 0xFF
    if law == "mulaw":
        c = ~c & 0xFF
        sign, exponent, mantissa = c & 0x80, (c >> 4) & 0x07, c & 0x0F
        mag = (((mantissa << 3) + _MU_BIAS) << exponent) - _MU_BIAS
        pcm = np.where(sign != 0, -mag, mag)
    elif law == "alaw":
        c = c ^ 0x55
        sign, seg, mantissa = c & 0x80, (c >> 4) & 0x07, c & 0x0F
        mag = np.where(seg == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(seg - 1, 0))
        pcm = np.where(sign != 0, mag, -mag)
    else:
        raise ConfigError(f"G.711 law must be 'mulaw' or 'alaw', got {law!r}")
    return (pcm / 32768.0).astype(np.float32)


# ------------------------------------------------------------------------------------------------------
# libsndfile codecs

# name -> (container format, subtype, codec sample rate or None = keep (after clamping to allowed rates))
_SF_CODECS: dict[str, tuple[str, str, tuple[int, ...]]] = {
    "gsm": ("RAW", "GSM610", (8000,)),
    "mp3": ("MP3", "MPEG_LAYER_III", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),
    "opus": ("OGG", "OPUS", (8000, 12000, 16000, 24000, 48000)),
    "vorbis": ("OGG", "VORBIS", (8000, 11025, 16000, 22050, 32000, 44100, 48000)),
}
CODECS: tuple[str, ...] = ("mulaw", "alaw", *_SF_CODECS)


def _sf_roundtrip(x: NDArray[np.float32], sr: int, name: str, quality: float | None) -> NDArray[np.float32]:
    import soundfile as sf

    fmt, subtype, _ = _SF_CODECS[name]
    buf = io.BytesIO()
    kwargs = {}
    if quality is not None and fmt in ("MP3", "OGG"):
        kwargs["compression_level"] = float(quality)  # 0 = highest quality / bit rate, 1 = lowest
    sf.write(buf, np.clip(x, -1.0, 1.0), sr, format=fmt, subtype=subtype, **kwargs)
    buf.seek(0)
    if fmt == "RAW":
        y, _ = sf.read(buf, samplerate=sr, channels=1, format=fmt, subtype=subtype, dtype="float32")
    else:
        y, _ = sf.read(buf, dtype="float32")
    return np.asarray(y, dtype=np.float32).reshape(-1)


@functools.lru_cache(maxsize=1)
def codec_availability() -> dict[str, bool]:
    """Which codecs encode and decode here: G.711 always; the libsndfile ones probed with a short tone."""
    out = {"mulaw": True, "alaw": True}
    tone = (0.3 * np.sin(np.arange(4000) / 5.0)).astype(np.float32)
    for name, (_, _, rates) in _SF_CODECS.items():
        try:
            y = _sf_roundtrip(tone, 16000 if 16000 in rates else rates[0], name, 0.5)
            out[name] = y.size > 0 and bool(np.isfinite(y).all())
        except Exception as exc:  # any failure means "not available in this build"
            logger.info("codec %s unavailable in this libsndfile build: %s", name, exc)
            out[name] = False
    return out


def _fit_length(y: NDArray[np.float32], n: int) -> NDArray[np.float32]:
    if y.shape[0] >= n:
        return y[:n]
    return np.concatenate((y, np.zeros(n - y.shape[0], dtype=np.float32)))


def _nearest_rate(sr: int, rates: Sequence[int]) -> int:
    """``sr`` when the codec supports it, else the lowest supported rate above it (else the highest)."""
    if sr in rates:
        return sr
    above = [r for r in rates if r > sr]
    return min(above) if above else max(rates)


class Codec:
    """Round trip through a randomly chosen codec of ``codecs`` (names from :data:`CODECS`).

    G.711 and GSM run at 8 kHz (narrow-band telephony: the input is resampled to 8 kHz and back); MP3 / Opus /
    Vorbis run at the input rate (or the nearest rate the codec supports) with a compression level drawn from
    ``quality`` (0 = best, 1 = worst). Unavailable codecs raise :class:`ConfigError` at construction unless
    ``skip_unavailable``, which drops them with a log line.
    """

    def __init__(
        self,
        codecs: Sequence[str] | str = ("mulaw", "alaw", "gsm"),
        *,
        quality: tuple[float, float] = (0.0, 1.0),
        skip_unavailable: bool = False,
    ) -> None:
        names = [codecs] if isinstance(codecs, str) else list(codecs)
        unknown = [c for c in names if c not in CODECS]
        if unknown or not names:
            raise ConfigError(f"Codec: unknown codecs {unknown or names}; known: {list(CODECS)}")
        avail = codec_availability()
        missing = [c for c in names if not avail[c]]
        if missing:
            if not skip_unavailable:
                raise ConfigError(
                    f"Codec: not available in this libsndfile build: {missing}; available: "
                    f"{[c for c, ok in avail.items() if ok]}"
                )
            logger.warning("Codec: dropping unavailable codecs %s", missing)
            names = [c for c in names if avail[c]]
            if not names:
                raise ConfigError("Codec: none of the requested codecs is available")
        lo, hi = quality
        if not 0.0 <= lo <= hi <= 1.0:
            raise ConfigError(f"Codec: quality must be a range within [0, 1], got {quality}")
        self.codecs = names
        self.quality = (float(lo), float(hi))

    def __repr__(self) -> str:
        return f"Codec(codecs={self.codecs}, quality={self.quality})"

    def __call__(
        self, wave: NDArray[np.floating], sample_rate: int, rng: np.random.Generator
    ) -> NDArray[np.float32]:
        from spoof_train.data.audio import decode_g711, resample

        name = self.codecs[int(rng.integers(len(self.codecs)))]
        x = np.asarray(wave, dtype=np.float32)
        n = x.shape[0]
        if name in ("mulaw", "alaw"):
            x8 = resample(x, sample_rate, 8000)
            y8 = decode_g711(g711_encode(x8, name).tobytes(), name)
            return _fit_length(resample(y8, 8000, sample_rate), n)
        rates = _SF_CODECS[name][2]
        sr = _nearest_rate(sample_rate, rates)
        quality = float(rng.uniform(*self.quality))
        xs = resample(x, sample_rate, sr)
        ys = _sf_roundtrip(xs, sr, name, quality)
        return _fit_length(resample(ys, sr, sample_rate), n)
