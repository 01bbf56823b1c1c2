"""Audio input: the checks every entry point applies, and helpers over the native front end (libspoof).

:func:`check_sample_rate` and :func:`as_mono_float` are the input rules of :meth:`Detector.score
<spoofsdk.detector.Detector.score>` and :meth:`StreamingSession.push <spoofsdk.session.StreamingSession.push>`
(one place, imported by both). :func:`decode` and :func:`resample` run in C++ with the GIL released;
:func:`g711_encode` (numpy) is the project's one G.711 encoder (simulators, examples, training
augmentation). All raise the typed errors of :mod:`spoofsdk.errors` (``InvalidArgumentError`` /
``InvalidAudioError``, both ``ValueError``, for bad input). :func:`read_file` reads an audio file with
python-soundfile and raises :class:`~spoofsdk.errors.AudioFileError` naming the file for any file it
cannot read, never the reader's own errors. The native extension is imported when first
needed, so ``import spoofsdk`` works from a source tree without it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from spoofsdk.errors import AudioFileError, InvalidArgumentError, InvalidAudioError

__all__ = [
    "ENCODINGS",
    "MAX_CHANNELS",
    "MAX_FLOAT_PEAK",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "Encoding",
    "as_mono_float",
    "check_file",
    "check_sample_rate",
    "decode",
    "g711_encode",
    "read_file",
    "resample",
    "resample_output_length",
]

Encoding = Literal["pcm16", "float32", "mulaw", "alaw"]
#: The native decoder's encodings, in ``spoofsdk._native.ENCODINGS``' order (a test checks they agree).
ENCODINGS: tuple[str, ...] = ("pcm16", "float32", "mulaw", "alaw")
#: Input sample rates accepted by score() and stream() (the native resampler's range is wider).
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 384000
#: Float input whose peak exceeds this is rejected: it is almost always int16-scaled audio in a float array.
MAX_FLOAT_PEAK = 2.0
#: 2-D input is (frames, channels) with at most this many channels (python-soundfile's layout).
MAX_CHANNELS = 8
_DTYPES = (np.int16, np.float32, np.float64)


def check_sample_rate(sample_rate: object) -> int:
    """The input sample rate as an int; :class:`InvalidAudioError` unless an integer in 4000..384000 Hz."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise InvalidAudioError(
            f"sample_rate: expected an integer number of Hz, given {sample_rate!r} "
            f"({type(sample_rate).__name__})"
        )
    sr = int(sample_rate)
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise InvalidAudioError(
            f"sample_rate: expected {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, given {sr} Hz"
        )
    return sr


def as_mono_float(pcm: object, *, what: str = "pcm") -> npt.NDArray[np.float32] | npt.NDArray[np.int16]:
    """Validate an audio array and return it mono, C-contiguous, as int16 or float32.

    Rules: dtype int16, float32 or float64; 1-D ``(frames,)`` or 2-D ``(frames, channels)`` with
    1..8 channels, downmixed by the mean of the channels (int16 stereo is decoded natively first);
    non-empty; finite; float peak <= 2.0 (float audio is expected in [-1, 1]).
    """
    if not isinstance(pcm, np.ndarray):
        raise InvalidAudioError(
            f"{what}: expected a numpy array of int16, float32 or float64 samples, given {type(pcm).__name__}"
        )
    if pcm.dtype.kind in "if" and not pcm.dtype.isnative:  # e.g. big-endian data from a file
        pcm = pcm.astype(pcm.dtype.newbyteorder("="))
    if pcm.dtype not in _DTYPES:
        raise InvalidAudioError(f"{what}: expected dtype int16, float32 or float64, given {pcm.dtype}")
    if pcm.ndim == 2:
        frames, channels = pcm.shape
        if not 1 <= channels <= MAX_CHANNELS:
            hint = " (channels first? pass pcm.T)" if frames <= MAX_CHANNELS < channels else ""
            raise InvalidAudioError(
                f"{what}: expected shape (frames,) or (frames, channels) with 1..{MAX_CHANNELS} channels, "
                f"given {pcm.shape}{hint}"
            )
    elif pcm.ndim != 1:
        raise InvalidAudioError(f"{what}: expected shape (frames,) or (frames, channels), given {pcm.shape}")
    if pcm.size == 0:
        raise InvalidAudioError(f"{what}: expected at least one sample, given an empty array {pcm.shape}")
    if pcm.dtype == np.int16:
        if pcm.ndim == 1:
            return np.ascontiguousarray(pcm)
        from spoofsdk import _native

        x = _native.decode(np.ascontiguousarray(pcm).astype("<i2", copy=False).tobytes(), "pcm16")
        return np.ascontiguousarray(x.reshape(pcm.shape).mean(axis=1, dtype=np.float64).astype(np.float32))
    finite = np.isfinite(pcm)
    if not finite.all():
        bad = int(np.flatnonzero(~finite.reshape(-1))[0])
        raise InvalidAudioError(
            f"{what}: expected finite samples, given {pcm.reshape(-1)[bad]} at flat index {bad} "
            f"({int((~finite).sum())} non-finite samples)"
        )
    peak = float(np.abs(pcm).max())
    if peak > MAX_FLOAT_PEAK:
        raise InvalidAudioError(
            f"{what}: expected float samples in [-1, 1], given peak {peak:.4g} "
            "(int16-scaled audio in a float array? divide by 32768 or pass the int16 array)"
        )
    x = pcm if pcm.ndim == 1 else pcm.mean(axis=1, dtype=np.float64)
    return np.ascontiguousarray(x, dtype=np.float32)


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
    from spoofsdk import _native

    return _native.decode(data, encoding)


_MU_BIAS = 0x84
_MU_CLIP = 32635


def g711_encode(x: npt.ArrayLike, law: str) -> npt.NDArray[np.uint8]:
    """Encode linear samples as ITU-T G.711 codes, one ``uint8`` per sample (the inverse of :func:`decode`).

    Parameters
    ----------
    x:
        int16 samples (used as they are), or floating-point samples in [-1, 1] (scaled by 32768, rounded to
        the nearest integer and clipped to int16, as the Sun reference ``g711.c`` does). Any shape.
    law:
        ``"mulaw"`` (bias 132, clip 32635, bits inverted) or ``"alaw"`` (13-bit magnitude, even bits
        inverted with 0x55).

    Returns
    -------
    numpy.ndarray
        uint8 codes of ``x``'s shape (``.tobytes()`` gives the byte stream). Decoding every code and
        encoding it again gives the code back, except mu-law's negative zero 0x7F, which becomes 0xFF.

    Raises
    ------
    InvalidArgumentError
        ``law`` is neither ``"mulaw"`` nor ``"alaw"``.
    InvalidAudioError
        ``x`` is neither int16 nor floating point.
    """
    if law not in ("mulaw", "alaw"):
        raise _argument_error(f"law: expected 'mulaw' or 'alaw', given {law!r}")
    arr = np.asarray(x)
    if arr.dtype == np.int16:
        pcm = arr.astype(np.int32)
    elif arr.dtype.kind == "f":
        pcm = np.clip(np.round(arr.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int32)
    else:
        raise _audio_error(f"x: expected int16 or floating-point samples, given dtype {arr.dtype}")
    if law == "mulaw":
        sign = np.where(pcm < 0, 0x80, 0x00)
        mag = np.minimum(np.abs(pcm), _MU_CLIP) + _MU_BIAS
        exponent = np.clip(np.floor(np.log2(mag)).astype(np.int32) - 7, 0, 7)  # segment of (mag >> 7)
        mantissa = (mag >> (exponent + 3)) & 0x0F
        codes: npt.NDArray[np.uint8] = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
        return codes
    sign = np.where(pcm >= 0, 0x80, 0x00)
    mag = np.minimum(np.where(pcm >= 0, pcm, -pcm - 1) >> 3, 0x0FFF)  # 13-bit magnitude
    seg = np.where(mag < 32, 0, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4)
    seg = np.clip(seg, 0, 7)
    mantissa = np.where(seg == 0, mag >> 1, mag >> seg) & 0x0F
    codes = (((sign | (seg << 4) | mantissa) ^ 0x55) & 0xFF).astype(np.uint8)
    return codes


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
    from spoofsdk import _native

    return _native.resample(arr, int(orig_sr), int(target_sr))


def resample_output_length(n_in: int, orig_sr: int, target_sr: int) -> int:
    """Length of :func:`resample`'s output for ``n_in`` samples: ``ceil(n_in * target_sr / orig_sr)``."""
    from spoofsdk import _native

    return _native.resample_output_length(int(n_in), int(orig_sr), int(target_sr))


def check_file(path: str | os.PathLike[str]) -> int:
    """The size in bytes of the audio file ``path``; :class:`AudioFileError` unless a non-empty readable file.

    A missing path, a directory, a path that cannot be opened and a 0-byte file ("empty file") are each
    reported with the file name; the ``OSError`` behind the first three is the ``__cause__``.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError as exc:
        raise _file_error(f"{p}: no such file") from exc
    except OSError as exc:
        raise _file_error(f"{p}: cannot open: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise _file_error(f"{p}: expected an audio file, given a directory")
    try:
        with p.open("rb"):
            pass
    except OSError as exc:
        raise _file_error(f"{p}: cannot open: {exc.strerror or exc}") from exc
    if st.st_size == 0:
        raise _file_error(f"{p}: empty file (0 bytes)")
    return st.st_size


def read_file(path: str | os.PathLike[str]) -> tuple[npt.NDArray[np.float32], int]:
    """An audio file's samples as float32 ``(frames, channels)`` and its sample rate, via python-soundfile.

    Every failure is an :class:`AudioFileError` whose message starts with the file name: missing, a
    directory, empty (``"empty file"``), truncated, corrupt, or a format libsndfile does not know. The
    reader's own error (``soundfile.LibsndfileError`` and friends) is kept as ``__cause__``. A file with a
    valid header and no frames is returned as a ``(0, channels)`` array: :meth:`Detector.score
    <spoofsdk.detector.Detector.score>` then says it is too short.
    """
    import soundfile as sf

    check_file(path)
    p = Path(path)
    try:
        x, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except (RuntimeError, TypeError, ValueError, EOFError, OSError) as exc:
        # LibsndfileError (a RuntimeError) has the library's own words in error_string.
        why = getattr(exc, "error_string", None) or str(exc) or type(exc).__name__
        raise _file_error(f"{p}: cannot read audio: {why}") from exc
    return np.asarray(x, dtype=np.float32), int(sr)


def _file_error(message: str) -> AudioFileError:
    err = AudioFileError(message)
    err.code = 2  # SPOOF_ERR_INVALID_AUDIO
    return err


def _argument_error(message: str) -> InvalidArgumentError:
    err = InvalidArgumentError(message)
    err.code = 1  # SPOOF_ERR_INVALID_ARGUMENT
    return err


def _audio_error(message: str) -> InvalidAudioError:
    err = InvalidAudioError(message)
    err.code = 2  # SPOOF_ERR_INVALID_AUDIO
    return err
