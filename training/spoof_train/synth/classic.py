"""Classic spoof generation and corpus-v1's conditioning, shared by ``spoof-train synth`` and the data
recipes: Griffin-Lim and WORLD re-synthesis (corpus-v1's ``griffinlim`` / ``world`` attacks) and the
conditioning every corpus-v1 / corpus-v2 clip went through (trim, length cap, level, noise floor, telephony
channel), identical for both classes.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from spoof_train.errors import DataError

__all__ = ["condition", "griffin_lim_resynthesis", "trim_silence", "world_resynthesis"]


# -------------------------------------------------------------------------------------------- re-synthesis


def griffin_lim_resynthesis(
    x: NDArray[np.floating], sample_rate: int, rng: np.random.Generator, *, iterations: int = 32
) -> NDArray[np.float64]:
    """corpus-v1's ``griffinlim`` attack: the STFT magnitude (32 ms Hann, 75 % overlap) re-phased by fast
    Griffin-Lim (Perraudin et al. 2013, momentum 0.99 as librosa) from a random initial phase."""
    from scipy.signal import ShortTimeFFT

    x = np.asarray(x, dtype=np.float64)
    n = round(0.032 * sample_rate)
    hop = n // 4
    tf = ShortTimeFFT(np.hanning(n + 2)[1:-1], hop, 1.0)
    mag = np.abs(tf.stft(x))
    angles = np.exp(2j * np.pi * rng.random(mag.shape))
    rebuilt = np.zeros_like(angles)
    alpha = 0.99 / 1.99
    for _ in range(iterations):
        previous = rebuilt
        inverse = tf.istft(mag * angles, k1=len(x))
        rebuilt = tf.stft(inverse)
        angles = rebuilt - alpha * previous
        angles /= np.abs(angles) + 1e-16
    return np.asarray(tf.istft(mag * angles, k1=len(x)), dtype=np.float64)


def world_resynthesis(x: NDArray[np.floating], sample_rate: int) -> NDArray[np.float64]:
    """corpus-v1's ``world`` attack: WORLD analysis / synthesis (DIO + StoneMask F0, CheapTrick, D4C, 5 ms
    frames) through pyworld (``pip install pyworld-prebuilt``)."""
    try:
        import pyworld
    except ImportError as exc:
        raise DataError("WORLD re-synthesis needs pyworld: pip install pyworld-prebuilt") from exc
    x = np.ascontiguousarray(x, dtype=np.float64)
    f0, t = pyworld.dio(x, sample_rate, frame_period=5.0)
    f0 = pyworld.stonemask(x, f0, t, sample_rate)
    sp = pyworld.cheaptrick(x, f0, t, sample_rate)
    ap = pyworld.d4c(x, f0, t, sample_rate)
    y = pyworld.synthesize(f0, sp, ap, sample_rate, 5.0)
    return np.asarray(y[: len(x)], dtype=np.float64)


# -------------------------------------------------------------------------------------------- conditioning


def _frame_db(x: NDArray[np.float64], sample_rate: int) -> NDArray[np.float64]:
    n, hop = int(0.02 * sample_rate), int(0.01 * sample_rate)
    if len(x) < n:
        return np.array([10 * np.log10(np.mean(x**2) + 1e-20)])
    idx = np.arange(n)[None, :] + hop * np.arange(1 + (len(x) - n) // hop)[:, None]
    return np.asarray(10 * np.log10(np.mean(x[idx] ** 2, axis=1) + 1e-20), dtype=np.float64)


def trim_silence(x: NDArray[np.floating], sample_rate: int) -> NDArray[np.float64]:
    """corpus-v1's trim: 20 ms frames every 10 ms are active at >= max(peak - 35, min(floor + 10, peak - 20))
    dB (floor = 10th percentile); keep the first to the last active frame, 5 ms raised-cosine fades."""
    x64: NDArray[np.float64] = np.asarray(x, dtype=np.float64)
    db = _frame_db(x64, sample_rate)
    peak, floor = db.max(), np.percentile(db, 10)
    active = np.flatnonzero(db >= max(peak - 35.0, min(floor + 10.0, peak - 20.0)))
    n, hop = int(0.02 * sample_rate), int(0.01 * sample_rate)
    y = x64[active[0] * hop : min(len(x64), active[-1] * hop + n)].copy()
    fade = min(int(0.005 * sample_rate), len(y) // 2)
    if fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)
        y[:fade] *= ramp
        y[-fade:] *= ramp[::-1]
    return y


def _cap_length(x: NDArray[np.float64], sample_rate: int, cap: float = 12.0) -> NDArray[np.float64]:
    if len(x) <= cap * sample_rate:
        return x
    db = _frame_db(x, sample_rate)
    hop, lo, hi = int(0.01 * sample_rate), int(6.0 / 0.01), int((cap - 0.05) / 0.01)
    window = np.convolve(10 ** (db / 10), np.ones(5), mode="valid")  # 50 ms of 10 ms hops
    cut = (lo + int(np.argmin(window[lo : min(hi, len(window))]))) * hop
    return trim_silence(x[:cut], sample_rate)


def condition(
    x: NDArray[np.floating], sample_rate: int, rng: np.random.Generator, *, p_channel: float = 0.3
) -> tuple[NDArray[np.float32], str] | None:
    """The corpus-v1 README's conditioning, identical for both classes: trim, 12 s cap, RMS -26 dBFS +-6 dB,
    white noise floor 40-52 dB below it, with ``p_channel`` a G.711 mu/A-law or GSM round trip at 8 kHz (RMS
    restored), peak guard 0.999. Returns ``(audio, channel)`` or ``None`` for clips under 0.15 s."""
    y = _cap_length(trim_silence(x, sample_rate), sample_rate)
    if len(y) < 0.15 * sample_rate or not np.any(y):
        return None
    target = 10 ** ((-26.0 + rng.uniform(-6.0, 6.0)) / 20)
    y = y * (target / np.sqrt(np.mean(y**2)))
    y = y + rng.standard_normal(len(y)) * target * 10 ** (-rng.uniform(40.0, 52.0) / 20)
    channel = "clean"
    if rng.random() < p_channel:
        from spoof_train.augment import Codec

        channel = str(rng.choice(["mulaw", "alaw", "gsm"]))
        y = np.asarray(Codec((channel,))(y.astype(np.float32), sample_rate, rng), dtype=np.float64)
        y = y * (target / max(np.sqrt(np.mean(y**2)), 1e-12))
    peak = np.max(np.abs(y))
    if peak > 0.999:
        y = y * (0.999 / peak)
    return y.astype(np.float32), channel
