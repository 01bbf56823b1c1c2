"""Channel effects: telephony band-limit, sample-rate round trips, additive noise at an SNR, reverberation,
microphone colouration, short-segment crops (what a short clip looks like after repeat-padding), and speed
perturbation.

All are callables ``aug(wave, sample_rate, rng) -> wave`` (float32) whose random parameters come from the
given ``numpy.random.Generator``. All keep the input's length except :class:`Speed`, which changes it and so
runs on the whole clip before the training crop (``data.clip_augment``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from spoof_train.errors import ConfigError

__all__ = [
    "AddNoise",
    "BandLimit",
    "Microphone",
    "ResampleRoundTrip",
    "Reverb",
    "ShortCrop",
    "Speed",
    "colored_noise",
    "peak_biquad",
    "shelf_biquad",
]

logger = logging.getLogger("spoof_train")


def _range(value: float | Sequence[float], name: str) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return float(value), float(value)
    lo, hi = (float(v) for v in value)
    if lo > hi:
        raise ConfigError(f"{name}: expected (min, max) with min <= max, got {value}")
    return lo, hi


class BandLimit:
    """Telephony band-limit: a Butterworth band-pass (default 300-3400 Hz, the ITU-T G.712 voice band, order 4
    per edge) applied causally like a channel would, optionally followed by an 8 kHz round trip
    (``resample_8k=True``: resample to 8 kHz and back, dropping everything above 4 kHz)."""

    def __init__(
        self, low_hz: float = 300.0, high_hz: float = 3400.0, *, order: int = 4, resample_8k: bool = False
    ) -> None:
        if not 0 < low_hz < high_hz:
            raise ConfigError(f"BandLimit: need 0 < low_hz < high_hz, got {low_hz}, {high_hz}")
        if order < 1:
            raise ConfigError(f"BandLimit: order must be >= 1, got {order}")
        self.low_hz, self.high_hz, self.order, self.resample_8k = low_hz, high_hz, order, resample_8k

    def __repr__(self) -> str:
        return (
            f"BandLimit({self.low_hz}-{self.high_hz} Hz, order={self.order}, resample_8k={self.resample_8k})"
        )

    def __call__(
        self, wave: NDArray[np.floating], sample_rate: int, rng: np.random.Generator
    ) -> NDArray[np.float32]:
        from spoof_train.data.audio import resample

        x = np.asarray(wave, dtype=np.float64)
        high = min(self.high_hz, 0.49 * sample_rate)
        sos = signal.butter(self.order, [self.low_hz, high], btype="bandpass", fs=sample_rate, output="sos")
        y = signal.sosfilt(sos, x).astype(np.float32)
        if self.resample_8k and sample_rate != 8000:
            y = resample(resample(y, sample_rate, 8000), 8000, sample_rate)
            y = y[: x.shape[0]] if y.shape[0] >= x.shape[0] else np.pad(y, (0, x.shape[0] - y.shape[0]))
        out: NDArray[np.float32] = y.astype(np.float32)
        return out


class ResampleRoundTrip:
    """Resample to ``rate`` (default 8 kHz, narrow-band telephony) and back to the input rate."""

    def __init__(self, rate: int = 8000) -> None:
        if rate <= 0:
            raise ConfigError(f"ResampleRoundTrip: rate must be positive, got {rate}")
        self.rate = int(rate)

    def __repr__(self) -> str:
        return f"ResampleRoundTrip(rate={self.rate})"

    def __call__(
        self, wave: NDArray[np.floating], sample_rate: int, rng: np.random.Generator
    ) -> NDArray[np.float32]:
        from spoof_train.data.audio import resample

        x = np.asarray(wave, dtype=np.float32)
        if sample_rate == self.rate:
            return x
        y = resample(resample(x, sample_rate, self.rate), self.rate, sample_rate)
        n = x.shape[0]
        return y[:n] if y.shape[0] >= n else np.pad(y, (0, n - y.shape[0]))


class ShortCrop:
    """A random segment of ``seconds`` (length drawn uniformly from the range), faded in and out over
    ``fade_ms`` (raised cosine), tiled back to the input length.

    Training crops of a long clip are always full crops, while many clips met at test time are a fraction
    of a second long and reach the model repeat-padded (by the data loader in training, by the spectral
    model's ``repeat_seconds`` at inference). This shows long clips in that form too. The fades mimic the
    trimmed, faded ends of short clips, so the tiling adds no clicks. A segment as long as the input is a
    no-op.
    """

    def __init__(self, seconds: float | Sequence[float] = (0.15, 0.8), fade_ms: float = 5.0) -> None:
        self.seconds = _range(seconds, "ShortCrop seconds")
        if self.seconds[0] <= 0:
            raise ConfigError(f"ShortCrop: seconds must be > 0, got {seconds}")
        if fade_ms < 0:
            raise ConfigError(f"ShortCrop: fade_ms must be >= 0, got {fade_ms}")
        self.fade_ms = float(fade_ms)

    def __repr__(self) -> str:
        return f"ShortCrop(seconds={self.seconds}, fade_ms={self.fade_ms:g})"

    def __call__(
        self, wave: NDArray[np.floating], sample_rate: int, rng: np.random.Generator
    ) -> NDArray[np.float32]:
        x = np.asarray(wave, dtype=np.float32)
        n = x.shape[0]
        seg_len = max(1, round(rng.uniform(*self.seconds) * sample_rate))
        if seg_len >= n:
            return x
        start = int(rng.integers(0, n - seg_len + 1))
        seg = x[start : start + seg_len].copy()
        fade = min(round(self.fade_ms * 1e-3 * sample_rate), seg_len // 2)
        if fade > 0:
            ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)).astype(np.float32)
            seg[:fade] *= ramp
            seg[-fade:] *= ramp[::-1]
        return np.tile(seg, -(-n // seg_len))[:n]


def colored_noise(n: int, color: str, rng: np.random.Generator) -> NDArray[np.float64]:
    """Gaussian noise with a power spectrum ~ 1/f^k: white (k=0), pink (k=1) or brown (k=2); unit RMS."""
    exps = {"white": 0.0, "pink": 1.0, "brown": 2.0}
    if color not in exps:
        raise ConfigError(f"noise color must be one of {sorted(exps)}, got {color!r}")
    white = rng.normal(0.0, 1.0, n)
    if exps[color] > 0 and n > 1:
        spec = np.fft.rfft(white)
        f = np.arange(spec.shape[0], dtype=np.float64)
        f[0] = 1.0
        spec /= f ** (exps[color] / 2.0)
        spec[0] = 0.0
        white = np.fft.irfft(spec, n)
    rms = float(np.sqrt(np.mean(white**2)))
    return white / rms if rms > 0 else white


class AddNoise:
    """Additive noise at an SNR drawn from ``snr_db`` (dB, relative to the signal's mean power).

    The noise is coloured Gaussian noise (``colors``, drawn uniformly), or, when ``noise_files`` (paths or a
    manifest's rows) are given, a random excerpt of a random noise file (loaded at the input rate, looped
    when shorter than the clip). Digital silence (zero power) is returned unchanged.
    """

    def __init__(
        self,
        snr_db: float | Sequence[float] = (5.0, 20.0),
        *,
        colors: Sequence[str] = ("white", "pink"),
        noise_files: Sequence[str | Path] | None = None,
    ) -> None:
        self.snr_db = _range(snr_db, "AddNoise.snr_db")
        for c in colors:
            colored_noise(1, c, np.random.default_rng(0))  # validates the name
        if not colors and not noise_files:
            raise ConfigError("AddNoise: give colors or noise_files")
        self.colors = list(colors)
        files = [getattr(f, "path", f) for f in (noise_files or [])]
        missing = [str(f) for f in files if not Path(f).is_file()]
        if missing:
            raise ConfigError(f"AddNoise: {len(missing)} noise files do not exist (first: {missing[0]})")
        self.noise_files = [str(f) for f in files]
        self._cache: dict[tuple[str, int], NDArray[np.float32]] = {}

    def __repr__(self) -> str:
        src = f"{len(self.noise_files)} noise files" if self.noise_files else f"colors={self.colors}"
        return f"AddNoise(snr_db={self.snr_db}, {src})"

    def _noise(self, n: int, sample_rate: int, rng: np.random.Generator) -> NDArray[np.float64]:
        if self.noise_files:
            from spoof_train.data.audio import load_audio

            path = self.noise_files[int(rng.integers(len(self.noise_files)))]
            key = (path, sample_rate)
            if key not in self._cache:
                self._cache[key] = load_audio(path, sample_rate=sample_rate)
            src = self._cache[key].astype(np.float64)
            if src.shape[0] < n:
                src = np.tile(src, int(np.ceil(n / src.shape[0])))
            start = int(rng.integers(0, src.shape[0] - n + 1))
            return src[start : start + n]
        return colored_noise(n, self.colors[int(rng.integers(len(self.colors)))], rng)

    def __call__(
        self, wave: NDArray[np.floating], sample_rate: int, rng: np.random.Generator
    ) -> NDArray[np.float32]:
        x = np.asarray(wave, dtype=np.float64)
        snr = rng.uniform(*self.snr_db)
        noise = self._noise(x.shape[0], sample_rate, rng)
        p_sig, p_noise = float(np.mean(x**2)), float(np.mean(noise**2))
        if p_sig == 0.0 or p_noise == 0.0:
            return x.astype(np.float32)
        noise *= np.sqrt(p_sig / (p_noise * 10.0 ** (snr / 10.0)))
        return (x + noise).astype(np.float32)


class Reverb:
    """Synthetic reverberation: convolution with an exponentially decaying Gaussian-noise room impulse
    response whose energy falls by 60 dB after RT60 seconds (RT60 drawn from ``rt60``), plus a unit direct
    path; the RIR is ``1.5 * RT60`` long and the output is scaled back to the input's RMS."""

    def __init__(self, rt60: float | Sequence[float] = (0.2, 0.8)) -> None:
        self.rt60 = _range(rt60, "Reverb.rt60")
        if self.rt60[0] <= 0:
            raise ConfigError(f"Reverb: rt60 must be > 0 s, got {rt60}")

    def __repr__(self) -> str:
        return f"Reverb(rt60={self.rt60})"

    @staticmethod
    def rir(rt60: float, sample_rate: int, rng: np.random.Generator) -> NDArray[np.float64]:
        n = max(2, int(1.5 * rt60 * sample_rate))
        t = np.arange(n) / sample_rate
        # energy decays 60 dB over rt60: amplitude envelope exp(-3 ln(10) t / rt60)
        h = rng.normal(0.0, 1.0, n) * np.exp(-3.0 * np.log(10.0) * t / rt60)
        h /= np.sqrt(np.sum(h**2))
        h[0] = 1.0
        ir: NDArray[np.float64] = h
        return ir

    def __call__(
        self, wave: NDArray[np.floating], sample_rate: int, rng: np.random.Generator
    ) -> NDArray[np.float32]:
        x = np.asarray(wave, dtype=np.float64)
        h = self.rir(rng.uniform(*self.rt60), sample_rate, rng)
        y = signal.fftconvolve(x, h)[: x.shape[0]]
        rx, ry = float(np.sqrt(np.mean(x**2))), float(np.sqrt(np.mean(y**2)))
        if ry > 0:
            y *= rx / ry
        out: NDArray[np.float32] = y.astype(np.float32)
        return out


def shelf_biquad(kind: str, f0: float, gain_db: float, sample_rate: int) -> NDArray[np.float64]:
    """RBJ Audio-EQ-Cookbook shelving biquad (shelf slope S = 1) as one second-order section
    ``[b0, b1, b2, 1, a1, a2]``: ``kind="low"`` scales DC by ``gain_db``, ``"high"`` scales Nyquist."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * f0 / sample_rate
    cw, sq = np.cos(w0), np.sqrt(2.0 * a) * np.sin(w0)  # 2 sqrt(A) alpha, alpha = sin(w0) / sqrt(2) at S = 1
    if kind == "low":
        b = [
            a * ((a + 1) - (a - 1) * cw + sq),
            2 * a * ((a - 1) - (a + 1) * cw),
            a * ((a + 1) - (a - 1) * cw - sq),
        ]
        den = [(a + 1) + (a - 1) * cw + sq, -2 * ((a - 1) + (a + 1) * cw), (a + 1) + (a - 1) * cw - sq]
    elif kind == "high":
        b = [
            a * ((a + 1) + (a - 1) * cw + sq),
            -2 * a * ((a - 1) + (a + 1) * cw),
            a * ((a + 1) + (a - 1) * cw - sq),
        ]
        den = [(a + 1) - (a - 1) * cw + sq, 2 * ((a - 1) - (a + 1) * cw), (a + 1) - (a - 1) * cw - sq]
    else:
        raise ConfigError(f"shelf_biquad: kind must be 'low' or 'high', got {kind!r}")
    coeffs: NDArray[np.float64] = np.array([*b, *den]) / den[0]
    return coeffs


def peak_biquad(f0: float, gain_db: float, q: float, sample_rate: int) -> NDArray[np.float64]:
    """RBJ Audio-EQ-Cookbook peaking-EQ biquad: ``gain_db`` at ``f0``, unity far from it."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * f0 / sample_rate
    alpha = np.sin(w0) / (2.0 * q)
    b = [1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a]
    den = [1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a]
    coeffs: NDArray[np.float64] = np.array([*b, *den]) / den[0]
    return coeffs


class Microphone:
    """Random microphone / handset colouration, the same kind of channel for both classes.

    A bona fide recording made with an unseen microphone differs from the training speakers' recordings by
    a stationary spectral tilt and resonances (corpus-v1's test FSDD speaker has ~10 dB less energy below
    500 Hz and ~8 dB more above 4 kHz than the training speakers, and draws most of the default detector's
    false alarms). Each call draws: with probability ``p_highpass`` a 2nd-order Butterworth high-pass at a
    cut-off in ``highpass_hz`` (small capsules, handset bass roll-off); a low shelf at ``low_shelf_hz`` and
    a high shelf at ``high_shelf_hz``, each with a gain uniform in ``+-shelf_db``; and ``peaks`` (an integer
    range) peaking bands at log-uniform frequencies in ``peak_hz`` with gains in ``+-peak_db`` and Q in
    ``q``. Filters are applied causally (as a channel would). The output keeps the input's RMS and is
    scaled down if its peak would exceed 1.
    """

    def __init__(
        self,
        *,
        shelf_db: float = 10.0,
        low_shelf_hz: float | Sequence[float] = (150.0, 600.0),
        high_shelf_hz: float | Sequence[float] = (2000.0, 5000.0),
        p_highpass: float = 0.5,
        highpass_hz: float | Sequence[float] = (80.0, 400.0),
        peaks: Sequence[int] = (0, 2),
        peak_db: float = 8.0,
        peak_hz: float | Sequence[float] = (300.0, 6000.0),
        q: float | Sequence[float] = (0.7, 3.0),
    ) -> None:
        if shelf_db < 0 or peak_db < 0:
            raise ConfigError(f"Microphone: shelf_db / peak_db must be >= 0, got {shelf_db} / {peak_db}")
        if not 0.0 <= p_highpass <= 1.0:
            raise ConfigError(f"Microphone: p_highpass must be in [0, 1], got {p_highpass}")
        self.low_shelf_hz = _range(low_shelf_hz, "Microphone.low_shelf_hz")
        self.high_shelf_hz = _range(high_shelf_hz, "Microphone.high_shelf_hz")
        self.highpass_hz = _range(highpass_hz, "Microphone.highpass_hz")
        self.peak_hz = _range(peak_hz, "Microphone.peak_hz")
        self.q = _range(q, "Microphone.q")
        for name, (lo, _) in {
            "low_shelf_hz": self.low_shelf_hz,
            "high_shelf_hz": self.high_shelf_hz,
            "highpass_hz": self.highpass_hz,
            "peak_hz": self.peak_hz,
            "q": self.q,
        }.items():
            if lo <= 0:
                raise ConfigError(f"Microphone.{name}: expected values > 0, got {lo}")
        lo_n, hi_n = (int(v) for v in peaks)
        if not 0 <= lo_n <= hi_n:
            raise ConfigError(f"Microphone.peaks: expected (min, max) with 0 <= min <= max, got {peaks}")
        self.peaks = (lo_n, hi_n)
        self.shelf_db, self.peak_db, self.p_highpass = float(shelf_db), float(peak_db), float(p_highpass)

    def __repr__(self) -> str:
        return (
            f"Microphone(shelf_db={self.shelf_db:g}, p_highpass={self.p_highpass:g}, peaks={self.peaks}, "
            f"peak_db={self.peak_db:g})"
        )

    def sections(self, sample_rate: int, rng: np.random.Generator) -> NDArray[np.float64]:
        """The random filter of one call, as second-order sections ``[n, 6]`` (for inspection and tests)."""
        nyq = 0.45 * sample_rate
        sos = []
        if rng.random() < self.p_highpass:
            fc = min(rng.uniform(*self.highpass_hz), nyq)
            sos.append(signal.butter(2, fc, btype="highpass", fs=sample_rate, output="sos")[0])
        for kind, band in (("low", self.low_shelf_hz), ("high", self.high_shelf_hz)):
            f0 = min(rng.uniform(*band), nyq)
            sos.append(shelf_biquad(kind, f0, rng.uniform(-1, 1) * self.shelf_db, sample_rate))
        lo, hi = np.log(self.peak_hz[0]), np.log(min(self.peak_hz[1], nyq))
        for _ in range(int(rng.integers(self.peaks[0], self.peaks[1] + 1))):
            f0 = float(np.exp(rng.uniform(lo, max(lo, hi))))
            sos.append(peak_biquad(f0, rng.uniform(-1, 1) * self.peak_db, rng.uniform(*self.q), sample_rate))
        return np.array(sos)

    def __call__(
        self, wave: NDArray[np.floating], sample_rate: int, rng: np.random.Generator
    ) -> NDArray[np.float32]:
        x = np.asarray(wave, dtype=np.float64)
        y = signal.sosfilt(self.sections(sample_rate, rng), x)
        rx, ry = float(np.sqrt(np.mean(x**2))), float(np.sqrt(np.mean(y**2)))
        if ry > 0:
            y *= rx / ry
        peak = float(np.max(np.abs(y))) if y.size else 0.0
        if peak > 1.0:
            y /= peak
        out: NDArray[np.float32] = y.astype(np.float32)
        return out


class Speed:
    """Speed perturbation (Ko et al., Interspeech 2015; Kaldi's ``--speed`` perturbation): the clip played
    ``s`` times faster, ``s`` uniform in ``factors``.

    Tempo, pitch and formants all scale by ``s``, so a talker's clip sounds like another talker (a shorter
    or longer vocal tract, a higher or lower voice) of the same material, which is what a small corpus lacks
    most. It is done by reading the samples as if they had been recorded at ``round(s * sample_rate)`` Hz and
    resampling them to ``sample_rate`` with soxr (high quality, band-limited; its cost does not depend on the
    ratio, under 1 ms per 4 s clip): the output has about ``n / s`` samples, and a speed-up drops what would
    land above the Nyquist frequency. Because the length changes, it belongs in ``data.clip_augment`` (the
    whole clip, before the training crop); a length-keeping chain (``data.augment``) rejects it.
    """

    def __init__(self, factors: float | Sequence[float] = (0.9, 1.1)) -> None:
        lo, hi = _range(factors, "Speed.factors")
        if not 0.5 <= lo <= hi <= 2.0:
            raise ConfigError(f"Speed.factors: expected values in [0.5, 2.0], got {factors}")
        self.factors = (lo, hi)

    def __repr__(self) -> str:
        return f"Speed(factors={self.factors})"

    def __call__(
        self, wave: NDArray[np.floating], sample_rate: int, rng: np.random.Generator
    ) -> NDArray[np.float32]:
        import soxr

        x = np.ascontiguousarray(wave, dtype=np.float32)
        source_rate = round(float(rng.uniform(*self.factors)) * sample_rate)
        if source_rate == sample_rate:
            return x
        return np.asarray(soxr.resample(x, source_rate, sample_rate, quality="HQ"), dtype=np.float32)
