"""RawBoost data augmentation (Tak, Kamble, Patino, Todisco, Evans, ICASSP 2022, pp. 6382-6386).

A re-implementation of the reference code (``RawBoost.py`` and ``process_Rawboost_feature`` of
github.com/TakHemlata/SSL_Anti-spoofing, whose argparse defaults are :class:`RawBoostParams`' defaults) that
draws every random number from the ``numpy.random.Generator`` it is given, so the same seed gives the same
output. The three primitives:

1. **LnL convolutive noise** (linear and non-linear): ``y = sum_{i=1..N_f} FIR_i(x^i)``, each ``FIR_i`` a
   cascade of ``nBands`` random notch (band-stop) FIR filters (Hamming window, odd length in
   [minCoeff, maxCoeff], centre frequency in [minF, maxF], width in [minBW, maxBW]) scaled to a random
   gain in [minG, maxG] dB; for the non-linear terms (``i >= 2``) the gain range is lowered by
   [minBiasLinNonLin, maxBiasLinNonLin] dB. The result is mean-removed and scaled down when its peak
   exceeds 1.
2. **ISD additive noise** (impulsive, signal-dependent): a random ``beta`` in [0, P] % of the samples get
   ``x[n] += g_sd * x[n] * u1 * u2`` with ``u1, u2 ~ U(-1, 1)``; scaled down when the peak exceeds 1.
3. **SSI additive noise** (stationary, signal-independent): white Gaussian noise coloured by a random FIR
   cascade as in 1., added at an SNR drawn from [SNRmin, SNRmax] dB.

Algorithms (the reference numbering of ``--algo``): 1, 2, 3 alone; 4 = 1+2+3 in series; 5 = 1+2 in series
(the reference default); 6 = 1+3 in series; 7 = 2+3 in series; 8 = 1 and 2 in parallel (their sum, scaled
down to peak 1 when it exceeds 1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from spoof_train.errors import ConfigError

__all__ = [
    "RawBoost",
    "RawBoostParams",
    "isd_additive_noise",
    "lnl_convolutive_noise",
    "ssi_additive_noise",
]


@dataclass(frozen=True)
class RawBoostParams:
    """RawBoost parameters; defaults are the reference ``main_SSL_LA.py`` / ``main_SSL_DF.py`` defaults."""

    # LnL convolutive noise
    n_bands: int = 5  # nBands: notch/band filters in the cascade
    min_f: float = 20.0  # minF, Hz
    max_f: float = 8000.0  # maxF, Hz (clamped below Nyquist)
    min_bw: float = 100.0  # minBW, Hz
    max_bw: float = 1000.0  # maxBW, Hz
    min_coeff: int = 10  # minCoeff: FIR length
    max_coeff: int = 100  # maxCoeff
    min_g: float = 0.0  # minG, dB
    max_g: float = 0.0  # maxG, dB
    min_bias_lin_nonlin: float = 5.0  # minBiasLinNonLin, dB
    max_bias_lin_nonlin: float = 20.0  # maxBiasLinNonLin, dB
    n_f: int = 5  # N_f: order of the non-linearity (1 = linear only)
    # ISD additive noise
    p: float = 10.0  # P: at most P % of the samples are hit
    g_sd: float = 2.0  # g_sd: gain of the impulses
    # SSI additive noise
    snr_min: float = 10.0  # SNRmin, dB
    snr_max: float = 40.0  # SNRmax, dB

    def validate(self) -> RawBoostParams:
        if self.n_bands < 1 or self.n_f < 1:
            raise ConfigError(f"RawBoost: n_bands and n_f must be >= 1, got {self.n_bands}, {self.n_f}")
        for lo, hi, name in (
            (self.min_f, self.max_f, "min_f/max_f"),
            (self.min_bw, self.max_bw, "min_bw/max_bw"),
            (self.min_coeff, self.max_coeff, "min_coeff/max_coeff"),
            (self.min_g, self.max_g, "min_g/max_g"),
            (self.min_bias_lin_nonlin, self.max_bias_lin_nonlin, "min/max_bias_lin_nonlin"),
            (self.snr_min, self.snr_max, "snr_min/snr_max"),
        ):
            if lo > hi:
                raise ConfigError(f"RawBoost: {name} must satisfy min <= max, got {lo} > {hi}")
        if self.min_coeff < 2 or self.min_f < 0 or self.min_bw <= 0:
            raise ConfigError(
                f"RawBoost: need min_coeff >= 2, min_f >= 0, min_bw > 0; got {self.min_coeff}, {self.min_f}, "
                f"{self.min_bw}"
            )
        if not 0 <= self.p <= 100:
            raise ConfigError(f"RawBoost: p is a percentage in [0, 100], got {self.p}")
        return self


def _norm_peak(x: NDArray[np.floating], always: bool) -> NDArray[np.float64]:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 0 and (always or peak > 1.0):
        return np.asarray(x / peak, dtype=np.float64)
    return np.asarray(x, dtype=np.float64)


def _band_cascade(
    rng: np.random.Generator, prm: RawBoostParams, min_g: float, max_g: float, fs: int
) -> NDArray[np.float64]:
    """Random cascade of ``n_bands`` Hamming band-stop FIRs, peak gain drawn from [min_g, max_g] dB."""
    b = np.ones(1)
    nyq = fs / 2.0
    for _ in range(prm.n_bands):
        fc = rng.uniform(prm.min_f, prm.max_f)
        bw = rng.uniform(prm.min_bw, prm.max_bw)
        taps = int(rng.uniform(prm.min_coeff, prm.max_coeff))
        if taps % 2 == 0:
            taps += 1  # a band-stop FIR needs an odd length (type I)
        f1 = max(fc - bw / 2.0, 1e-3)
        f2 = min(fc + bw / 2.0, nyq - 1e-3)
        if f2 <= f1:  # the band fell above Nyquist at this rate: keep the top of the band
            f1 = max(nyq - bw, 1e-3)
            f2 = nyq - 1e-3
        # two cut-offs with pass_zero=True: a band-STOP (notch) filter, as the reference genNotchCoeffs
        b = np.convolve(signal.firwin(taps, [f1, f2], window="hamming", pass_zero=True, fs=fs), b)
    gain_db = rng.uniform(min_g, max_g)
    _, h = signal.freqz(b, 1, fs=fs)
    return np.asarray(10.0 ** (gain_db / 20.0) * b / np.max(np.abs(h)), dtype=np.float64)


def _fir_same(x: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Filter and compensate the FIR's group delay (len(b) // 2), keeping the input length."""
    # FFT convolution: the same linear convolution as the reference's lfilter, O(n log n) instead of O(n L)
    # for the cascades of up to ~500 taps
    delay = (b.shape[0] - 1) // 2
    y = signal.oaconvolve(x, b) if x.shape[0] > 4 * b.shape[0] else np.convolve(x, b)
    return np.asarray(y[delay : delay + x.shape[0]], dtype=np.float64)


def lnl_convolutive_noise(
    x: NDArray[np.floating], fs: int, rng: np.random.Generator, prm: RawBoostParams = RawBoostParams()
) -> NDArray[np.float64]:
    """RawBoost algorithm 1: linear and non-linear convolutive noise (see the module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.zeros_like(x)
    min_g, max_g = prm.min_g, prm.max_g
    power = np.ones_like(x)
    for i in range(prm.n_f):
        power = power * x  # x^(i+1) by repeated products: np.power with exponents >= 3 is ~40x slower
        if i == 1:  # the non-linear terms are attenuated relative to the linear one (once, as the reference)
            min_g -= prm.min_bias_lin_nonlin
            max_g -= prm.max_bias_lin_nonlin
        b = _band_cascade(rng, prm, min(min_g, max_g), max(min_g, max_g), fs)
        y += _fir_same(power, b)
    y -= np.mean(y)
    return _norm_peak(y, always=False)


def isd_additive_noise(
    x: NDArray[np.floating], rng: np.random.Generator, prm: RawBoostParams = RawBoostParams()
) -> NDArray[np.float64]:
    """RawBoost algorithm 2: impulsive signal-dependent additive noise (see the module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    beta = rng.uniform(0.0, prm.p)
    n = int(x.shape[0] * beta / 100.0)
    idx = rng.permutation(x.shape[0])[:n]
    f_r = (2.0 * rng.random(n) - 1.0) * (2.0 * rng.random(n) - 1.0)
    y = x.copy()
    y[idx] = x[idx] + prm.g_sd * x[idx] * f_r
    return _norm_peak(y, always=False)


def ssi_additive_noise(
    x: NDArray[np.floating], fs: int, rng: np.random.Generator, prm: RawBoostParams = RawBoostParams()
) -> NDArray[np.float64]:
    """RawBoost algorithm 3: stationary signal-independent (coloured) additive noise at a random SNR."""
    x64: NDArray[np.float64] = np.asarray(x, dtype=np.float64)
    white: NDArray[np.float64] = np.asarray(rng.normal(0.0, 1.0, x64.shape[0]), dtype=np.float64)
    b = _band_cascade(rng, prm, prm.min_g, prm.max_g, fs)
    noise = _norm_peak(_fir_same(white, b), always=True)
    snr = rng.uniform(prm.snr_min, prm.snr_max)
    n_norm = float(np.linalg.norm(noise))
    if n_norm == 0.0:
        return x64
    noise = noise / n_norm * np.linalg.norm(x64) / 10.0 ** (0.05 * snr)
    out: NDArray[np.float64] = x64 + noise
    return out


class RawBoost:
    """Callable RawBoost augmentation ``aug(wave, sample_rate, rng)``; ``algo`` in 1..8 (module docstring)."""

    ALGOS: ClassVar[dict[int, str]] = {
        1: "1",
        2: "2",
        3: "3",
        4: "1+2+3",
        5: "1+2",
        6: "1+3",
        7: "2+3",
        8: "1||2",
    }

    def __init__(self, algo: int = 5, **params: float) -> None:
        if algo not in self.ALGOS:
            raise ConfigError(
                f"RawBoost: algo must be one of {sorted(self.ALGOS)} ({self.ALGOS}), got {algo!r}"
            )
        known = {f.name for f in dataclasses.fields(RawBoostParams)}
        unknown = set(params) - known
        if unknown:
            raise ConfigError(f"RawBoost: unknown parameters {sorted(unknown)}; known: {sorted(known)}")
        self.algo = algo
        self.params = RawBoostParams(**params).validate()  # type: ignore[arg-type]

    def __repr__(self) -> str:
        changed = {
            f.name: getattr(self.params, f.name)
            for f in dataclasses.fields(RawBoostParams)
            if getattr(self.params, f.name) != f.default
        }
        extra = "".join(f", {k}={v}" for k, v in changed.items())
        return f"RawBoost(algo={self.algo} [{self.ALGOS[self.algo]}]{extra})"

    def __call__(
        self, wave: NDArray[np.floating], sample_rate: int, rng: np.random.Generator
    ) -> NDArray[np.float32]:
        x = np.asarray(wave, dtype=np.float64)
        p, a = self.params, self.algo
        if a == 8:
            y = _norm_peak(
                lnl_convolutive_noise(x, sample_rate, rng, p) + isd_additive_noise(x, rng, p), False
            )
        else:
            y = x
            if a in (1, 4, 5, 6):
                y = lnl_convolutive_noise(y, sample_rate, rng, p)
            if a in (2, 4, 5, 7):
                y = isd_additive_noise(y, rng, p)
            if a in (3, 4, 6, 7):
                y = ssi_additive_noise(y, sample_rate, rng, p)
        return y.astype(np.float32)
