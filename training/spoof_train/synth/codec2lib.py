"""ctypes bindings to Debian's ``libcodec2`` (``libcodec2-1.0``): the Codec 2 speech codec and the LPCNet
neural vocoder compiled into it (the lpcnet191005 weights, built into the library).

Debian ships no header for LPCNet's feature and synthesis calls; their signatures were read from the
library's own callers (``lpcnet_enc`` hands ``lpcnet_dump`` 160 floats at 16-bit scale and a 55-float feature
vector; ``lpcnet_dec`` calls ``lpcnet_synthesize(state, short *out, float *features, int n, int logmag=0)``
with the features' 18 cepstral-delta slots zeroed), and checked by the tests (output length, spectral
likeness to the input). LPCNet draws its analysis dither from the C library's ``rand()`` and its sampling
noise from a private generator; :func:`seed_c_rand` seeds both, so a clip is reproducible.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spoof_train.synth.base import GeneratorUnavailableError

__all__ = [
    "CODEC2_MODES",
    "INSTALL",
    "LPCNET_FRAME",
    "codec2_round_trip",
    "libcodec2",
    "lpcnet_codec_round_trip",
    "lpcnet_resynthesis",
    "seed_c_rand",
    "seedable",
]

INSTALL = "sudo apt-get install libcodec2-1.0 (Debian 12 / Ubuntu 22.04 or later)"
#: LPCNet's frame: 10 ms at 16 kHz.
LPCNET_FRAME = 160
_FEATURES = 55
#: Codec 2 modes by bit rate (codec2.h).
CODEC2_MODES = {3200: 0, 2400: 1, 1600: 2, 1400: 3, 1300: 4, 1200: 5}

_f32p = ctypes.POINTER(ctypes.c_float)
_i16p = ctypes.POINTER(ctypes.c_short)
_u8p = ctypes.POINTER(ctypes.c_ubyte)


@functools.lru_cache(maxsize=1)
def _load() -> ctypes.CDLL | None:
    for name in (ctypes.util.find_library("codec2"), "libcodec2.so.1.0", "libcodec2.so.1.2", "libcodec2.so"):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def libcodec2(generator: str, *, lpcnet: bool = False) -> ctypes.CDLL:
    """The loaded library with argument types set; :class:`GeneratorUnavailableError` when it is absent or
    (``lpcnet=True``) built without LPCNet (codec2 >= 1.1 dropped it)."""
    lib = _load()
    if lib is None:
        raise GeneratorUnavailableError(generator, "the shared library libcodec2", INSTALL)
    if lpcnet and not hasattr(lib, "lpcnet_dump"):
        raise GeneratorUnavailableError(
            generator,
            "a libcodec2 with LPCNet (codec2 1.0.x; later releases removed it)",
            INSTALL,
        )
    if not getattr(lib, "_spoof_typed", False):
        lib.codec2_create.restype = ctypes.c_void_p
        lib.codec2_create.argtypes = [ctypes.c_int]
        lib.codec2_destroy.argtypes = [ctypes.c_void_p]
        lib.codec2_encode.argtypes = [ctypes.c_void_p, _u8p, _i16p]
        lib.codec2_decode.argtypes = [ctypes.c_void_p, _i16p, _u8p]
        lib.codec2_samples_per_frame.argtypes = [ctypes.c_void_p]
        lib.codec2_bits_per_frame.argtypes = [ctypes.c_void_p]
        if hasattr(lib, "lpcnet_dump"):
            lib.lpcnet_dump_create.restype = ctypes.c_void_p
            lib.lpcnet_dump_destroy.argtypes = [ctypes.c_void_p]
            lib.lpcnet_dump.argtypes = [ctypes.c_void_p, _f32p, _f32p]
            lib.lpcnet_create.restype = ctypes.c_void_p
            lib.lpcnet_destroy.argtypes = [ctypes.c_void_p]
            lib.lpcnet_synthesize.argtypes = [ctypes.c_void_p, _i16p, _f32p, ctypes.c_int, ctypes.c_int]
            lib.lpcnet_freedv_create.restype = ctypes.c_void_p
            lib.lpcnet_freedv_create.argtypes = [ctypes.c_int]
            lib.lpcnet_freedv_destroy.argtypes = [ctypes.c_void_p]
            lib.lpcnet_enc.argtypes = [ctypes.c_void_p, _i16p, ctypes.c_char_p]
            lib.lpcnet_dec.argtypes = [ctypes.c_void_p, ctypes.c_char_p, _i16p]
            lib.lpcnet_samples_per_frame.argtypes = [ctypes.c_void_p]
            lib.lpcnet_bits_per_frame.argtypes = [ctypes.c_void_p]
        lib._spoof_typed = True  # type: ignore[attr-defined]
    return lib


#: The private LCG states of libcodec2 1.0.5 (Debian 12): LPCNet's sampling draws from ``nnet_rand()``
#: (a 32-bit static 4 bytes after the exported ``direct_split_indopt_num_stages``) and Codec 2's decoder
#: from ``codec2_rand()`` (a 64-bit static 0x12c8 bytes after ``newamp2_energy_cb``). Both are
#: ``s = s * 1103515245 + 12345; return (s >> 16) & 0x7fff``. They are found from the disassembly of that
#: build and verified by reading before anything is written (:func:`_lcg_state`); another build leaves
#: them alone and the output is then not reproducible.
_LCG_STATES = (
    ("nnet_rand", "direct_split_indopt_num_stages", 4, ctypes.c_uint32),
    ("codec2_rand", "newamp2_energy_cb", 0x12C8, ctypes.c_uint64),
)


def _lcg_state(lib: ctypes.CDLL, fn_name: str, anchor: str, offset: int, ctype: Any) -> Any | None:
    """The static state of ``fn_name`` when it sits where :data:`_LCG_STATES` says: checked by calling the
    function once and comparing its result and the new state with the LCG step from the old state."""
    try:
        base = ctypes.addressof(ctypes.c_char.in_dll(lib, anchor))
        fn = getattr(lib, fn_name)
    except (ValueError, AttributeError):
        return None
    fn.restype, fn.argtypes = ctypes.c_int, []
    state = ctype.from_address(base + offset)
    bits = 8 * ctypes.sizeof(ctype)
    before = int(state.value)
    out = int(fn())
    after = (before * 1103515245 + 12345) % (1 << bits)
    return state if int(state.value) == after and out == (after >> 16) & 0x7FFF else None


@functools.lru_cache(maxsize=1)
def _states() -> tuple[Any, ...]:
    lib = _load()
    if lib is None:
        return ()
    found = [_lcg_state(lib, *entry) for entry in _LCG_STATES]
    return tuple(found) if all(s is not None for s in found) else ()


def seedable() -> bool:
    """Whether this libcodec2's private generators were found (outputs then reproduce from the seed)."""
    return bool(_states())


def seed_c_rand(seed: int) -> None:
    """Seed every random source of LPCNet and Codec 2 in this process: the C library's ``rand()`` (LPCNet's
    analysis dither) and the two private generators of :data:`_LCG_STATES` (LPCNet's sampling, Codec 2's
    phase and post-filter noise), where found."""
    libc = ctypes.CDLL(None)
    libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))
    for state in _states():
        state.value = seed & 0xFFFFFFFF


def _to_pcm16(x: NDArray[np.floating]) -> NDArray[np.int16]:
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def _padded(x: NDArray[np.floating], frame: int, extra: int) -> NDArray[np.int16]:
    n = -(-(len(x) + extra) // frame) * frame
    out = np.zeros(n, dtype=np.int16)
    out[: len(x)] = _to_pcm16(x)
    return out


#: Delay of LPCNet re-synthesis (analysis look-ahead + synthesis), in samples at 16 kHz: the lag at which the
#: output's frame-energy envelope best matches the input's (measured on speech, see the tests).
LPCNET_DELAY = 430
#: Delay of the quantised LPCNet codec round trip (``lpcnet_enc`` -> ``lpcnet_dec``), measured the same way.
LPCNET_CODEC_DELAY = 960
#: Delay of a Codec 2 round trip at 8 kHz, measured the same way (165-185 samples across the modes).
CODEC2_DELAY = 175


def _frame_round_trip(
    x: NDArray[np.floating],
    frame: int,
    delay: int,
    step: Callable[[NDArray[np.int16], NDArray[np.int16]], None],
) -> NDArray[np.float64]:
    """Feed ``x`` (as 16-bit PCM, zero-padded by ``delay`` + one frame) to ``step(chunk, out)`` one
    ``frame`` at a time; ``step`` fills ``out`` (the same buffer every call). Returns the output shifted back
    by ``delay`` at the input's length, as floats."""
    pcm = _padded(x, frame, delay + frame)
    out = np.zeros(len(pcm), dtype=np.int16)
    chunk = np.zeros(frame, dtype=np.int16)
    o = np.zeros(frame, dtype=np.int16)
    for i in range(0, len(pcm), frame):
        chunk[:] = pcm[i : i + frame]
        step(chunk, o)
        out[i : i + frame] = o
    return out[delay : delay + len(x)].astype(np.float64) / 32768.0


def lpcnet_resynthesis(lib: ctypes.CDLL, x16k: NDArray[np.floating]) -> NDArray[np.float64]:
    """LPCNet analysis (``lpcnet_dump``: 18 Bark cepstra, Codec 2 pitch, LPC) and neural synthesis of
    every 10 ms frame, unquantised; the output is aligned to the input and has its length."""
    frame = np.zeros(LPCNET_FRAME, dtype=np.float32)
    features = np.zeros(_FEATURES, dtype=np.float32)
    fp, featp = frame.ctypes.data_as(_f32p), features.ctypes.data_as(_f32p)
    dump = lib.lpcnet_dump_create()
    net = lib.lpcnet_create()

    def step(chunk: NDArray[np.int16], out: NDArray[np.int16]) -> None:
        frame[:] = chunk
        lib.lpcnet_dump(dump, fp, featp)
        features[18:36] = 0.0  # as lpcnet_dec: the synthesis network reads no cepstral deltas
        lib.lpcnet_synthesize(net, out.ctypes.data_as(_i16p), featp, LPCNET_FRAME, 0)

    try:
        return _frame_round_trip(x16k, LPCNET_FRAME, LPCNET_DELAY, step)
    finally:
        lib.lpcnet_destroy(net)
        lib.lpcnet_dump_destroy(dump)


def lpcnet_codec_round_trip(
    lib: ctypes.CDLL, x16k: NDArray[np.floating], vq_type: int = 1
) -> NDArray[np.float64]:
    """The FreeDV 2020 LPCNet codec (``lpcnet_freedv_create(vq_type)``; 1 = direct-split VQ, 1733 bit/s):
    quantised features, then the same neural synthesis. Aligned to the input, same length."""
    lf = lib.lpcnet_freedv_create(vq_type)
    if not lf:
        raise MemoryError("lpcnet_freedv_create returned NULL")
    bits = ctypes.create_string_buffer(max(lib.lpcnet_bits_per_frame(lf), 1))

    def step(chunk: NDArray[np.int16], out: NDArray[np.int16]) -> None:
        lib.lpcnet_enc(lf, chunk.ctypes.data_as(_i16p), bits)
        lib.lpcnet_dec(lf, bits, out.ctypes.data_as(_i16p))

    try:
        return _frame_round_trip(x16k, lib.lpcnet_samples_per_frame(lf), LPCNET_CODEC_DELAY, step)
    finally:
        lib.lpcnet_freedv_destroy(lf)


def codec2_round_trip(lib: ctypes.CDLL, x8k: NDArray[np.floating], bitrate: int) -> NDArray[np.float64]:
    """Codec 2 encode + decode at ``bitrate`` (a key of :data:`CODEC2_MODES`) of 8 kHz audio; same length."""
    state = lib.codec2_create(CODEC2_MODES[bitrate])
    if not state:
        raise MemoryError(f"codec2_create({bitrate} bit/s) returned NULL")
    bits = np.zeros((lib.codec2_bits_per_frame(state) + 7) // 8, dtype=np.uint8)
    bp = bits.ctypes.data_as(_u8p)

    def step(chunk: NDArray[np.int16], out: NDArray[np.int16]) -> None:
        lib.codec2_encode(state, bp, chunk.ctypes.data_as(_i16p))
        lib.codec2_decode(state, out.ctypes.data_as(_i16p), bp)

    try:
        return _frame_round_trip(x8k, lib.codec2_samples_per_frame(state), CODEC2_DELAY, step)
    finally:
        lib.codec2_destroy(state)
