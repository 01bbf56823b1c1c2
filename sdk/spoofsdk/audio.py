"""Audio helpers over the native front end (libspoof): decoding and offline resampling.

Both run in C++ with the GIL released and raise the typed errors of :mod:`spoofsdk.errors`
(``InvalidArgumentError`` / ``InvalidAudioError``, both ``ValueError``, for bad input).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from spoofsdk import _native
from spoofsdk.errors import InvalidArgumentError, InvalidAudioError

__all__ = ["ENCODINGS", "Encoding", "decode", "resample", "resample_output_length"]

Encoding = Literal["pcm16", "float32", "mulaw", "alaw"]
ENCODINGS: tuple[str, ...] = tuple(_native.ENCODINGS)


def decode(data: bytes | bytearray | memoryview, encoding: str) -> npt.NDArray[np.float32]:
    """Decode raw sample bytes into float32 in [-1, 1].

    Parameters
    ----------
    data:
        The encoded samples: a whole number of samples (2 bytes each for ``"pcm16"``,
        4 for ``"float32"``, 1 for ``"mulaw"`` / ``"alaw"``), little-endian.
    encoding:
        ``"pcm16"`` (signed 16-bit, value / 32768), ``"float32"`` (IEEE-754, must be finite),
        ``"mulaw"`` or ``"alaw"`` (ITU-T G.711, decoded exactly as libsndfile does).

    Returns
    -------
    numpy.ndarray
        1-D float32 array, one value per sample.

    Raises
    ------
    InvalidArgumentError
        Unknown encoding, non-bytes input, or a byte count that is not a whole number of samples.
    InvalidAudioError
        ``"float32"`` data containing NaN or Inf.
    """
    if encoding not in ENCODINGS:
        raise _argument_error(f"encoding must be one of {', '.join(map(repr, ENCODINGS))}; got {encoding!r}")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _argument_error(f"data must be bytes, bytearray or memoryview; got {type(data).__name__}")
    return _native.decode(data, encoding)


def resample(x: npt.ArrayLike, orig_sr: int, target_sr: int) -> npt.NDArray[np.float32]:
    """Resample a whole signal from ``orig_sr`` to ``target_sr`` Hz (offline, no start-up delay).

    Output sample ``k`` is aligned with input time ``k / target_sr``; the output has
    ``ceil(len(x) * target_sr / orig_sr)`` samples. The filter is a Kaiser-windowed sinc
    (passband to 0.45 x the lower rate, >= 70 dB stopband from 0.5 x the lower rate),
    identical to the streaming resampler of :class:`spoofsdk._native.Frontend` fed the
    same samples, so offline and streaming results are bit-identical. Equal rates return
    an exact copy.

    Parameters
    ----------
    x:
        1-D floating-point samples (float64 etc. are converted to float32); finite.
    orig_sr, target_sr:
        Sample rates in Hz, integers in [1000, 384000]; any rational ratio.

    Raises
    ------
    InvalidAudioError
        ``x`` is not 1-D, not floating point, or contains NaN/Inf.
    InvalidArgumentError
        A rate outside [1000, 384000] or not an integer.
    """
    for name, rate in (("orig_sr", orig_sr), ("target_sr", target_sr)):
        if isinstance(rate, bool) or not isinstance(rate, int | np.integer):
            raise _argument_error(f"{name} must be an integer sample rate in Hz; got {rate!r}")
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise _audio_error(f"x must be a floating-point array (float32 in [-1, 1]); got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise _audio_error(f"x must be 1-D (mono); got shape {arr.shape}")
    return _native.resample(arr, int(orig_sr), int(target_sr))


def resample_output_length(n_in: int, orig_sr: int, target_sr: int) -> int:
    """Length of :func:`resample`'s output for ``n_in`` samples: ``ceil(n_in * target_sr / orig_sr)``."""
    return _native.resample_output_length(int(n_in), int(orig_sr), int(target_sr))


def _argument_error(message: str) -> InvalidArgumentError:
    err = InvalidArgumentError(message)
    err.code = 1  # SPOOF_ERR_INVALID_ARGUMENT
    return err


def _audio_error(message: str) -> InvalidAudioError:
    err = InvalidAudioError(message)
    err.code = 2  # SPOOF_ERR_INVALID_AUDIO
    return err
