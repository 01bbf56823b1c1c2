"""Audio decoding and resampling for training.

``load_audio`` decodes any file libsndfile reads (WAV, FLAC, OGG/Vorbis/Opus, MP3, ...) to mono float32 at
the model rate. Resampling uses the SDK's native polyphase resampler (``spoofsdk.audio.resample`` or
``spoofsdk._native.resample``) when it is built, so training sees the same resampling as the runtime, and
falls back to soxr (very-high quality) otherwise. :func:`resampler_backend` says which one is active.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from spoof_train.errors import DataError

__all__ = ["decode_g711", "g711_decoder_backend", "load_audio", "resample", "resampler_backend"]

logger = logging.getLogger("spoof_train")

_Resampler = Callable[[NDArray[np.float32], int, int], NDArray[np.float32]]


@functools.lru_cache(maxsize=1)
def _native_resampler() -> tuple[str, _Resampler | None]:
    try:
        from spoofsdk import _native  # spoofsdk.audio imports it lazily: probe it here
        from spoofsdk import audio as sdk_audio

        fn = getattr(sdk_audio, "resample", None)
        if callable(fn):
            return "spoofsdk.audio.resample", fn
    except ImportError:
        pass
    try:
        from spoofsdk import _native

        fn = getattr(_native, "resample", None)
        if callable(fn):
            return "spoofsdk._native.resample", fn
    except ImportError:
        pass
    return "soxr", None


def resampler_backend() -> str:
    """Name of the active resampler: spoofsdk.audio.resample, spoofsdk._native.resample or soxr."""

    return _native_resampler()[0]


def resample(x: NDArray[np.floating], orig_sr: int, target_sr: int) -> NDArray[np.float32]:
    """Resample a 1-D signal from ``orig_sr`` to ``target_sr`` (float32 out; identity when equal)."""
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    if orig_sr == target_sr:
        return x32
    if orig_sr <= 0 or target_sr <= 0:
        raise DataError(f"resample: sample rates must be positive, got {orig_sr} -> {target_sr}")
    name, fn = _native_resampler()
    if fn is not None:
        try:
            return np.asarray(fn(x32, int(orig_sr), int(target_sr)), dtype=np.float32)
        except ValueError as exc:  # a rate the native resampler does not support: soxr handles any ratio
            logger.debug("%s refused %d -> %d Hz (%s); using soxr", name, orig_sr, target_sr, exc)
    import soxr

    return np.asarray(soxr.resample(x32, orig_sr, target_sr, quality="VHQ"), dtype=np.float32)


def load_audio(path: str | Path, *, sample_rate: int = 16000, mono: bool = True) -> NDArray[np.float32]:
    """Decode an audio file to float32 in [-1, 1] at ``sample_rate`` (channels averaged when ``mono``).

    Raises :class:`DataError` naming the file for a missing, unreadable, empty or non-finite file.
    """
    import soundfile as sf

    p = Path(path)
    if not p.is_file():
        raise DataError(f"audio file not found: {p}")
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise DataError(f"cannot decode audio file {p}: {exc}") from exc
    if data.shape[0] == 0:
        raise DataError(f"audio file {p} has 0 samples")
    wave = data.mean(axis=1) if mono else data[:, 0]
    if not np.isfinite(wave).all():
        raise DataError(f"audio file {p} contains non-finite samples (NaN/inf)")
    return resample(wave, int(sr), sample_rate)


def decode_g711(data: bytes, law: str) -> NDArray[np.float32]:
    """Decode G.711 bytes (``law`` = "mulaw" or "alaw") to float32 via the SDK's native decoder when built,
    else with the ITU-T G.711 expansion formulas (identical output)."""
    if law not in ("mulaw", "alaw"):
        raise DataError(f"decode_g711: law must be 'mulaw' or 'alaw', got {law!r}")
    _, fn = _native_decoder()
    if fn is not None:
        return np.asarray(fn(bytes(data), law), dtype=np.float32)
    from spoof_train.augment.codecs import g711_decode

    return g711_decode(np.frombuffer(data, dtype=np.uint8), law)


@functools.lru_cache(maxsize=1)
def _native_decoder() -> tuple[str, Callable[[bytes, str], NDArray[np.float32]] | None]:
    for mod_name in ("spoofsdk.audio", "spoofsdk._native"):
        try:
            __import__("spoofsdk._native")  # spoofsdk.audio imports it lazily: probe it here
            mod = __import__(mod_name, fromlist=["decode"])
        except ImportError:
            continue
        fn = getattr(mod, "decode", None)
        if callable(fn):
            return f"{mod_name}.decode", fn
    return "spoof_train.augment.codecs.g711_decode", None


def g711_decoder_backend() -> str:
    """Name of the G.711 decoder in use (the SDK's native one when built)."""
    return _native_decoder()[0]
