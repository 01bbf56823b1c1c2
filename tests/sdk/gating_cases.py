"""Generated non-speech signals for the speech-gating tests and benchmarks/gating.py (16 kHz float32)."""

from __future__ import annotations

import numpy as np

SR = 16000
_DTMF = {"1": (697, 1209), "5": (770, 1336), "9": (852, 1477), "0": (941, 1336), "#": (941, 1477)}
_CHORDS = ((261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7))


def _at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    return x * 10 ** (dbfs / 20) / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def dtmf(seconds: float) -> np.ndarray:
    """Key presses: 120 ms tone pairs every 250 ms."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    x = np.zeros(n)
    for i, key in enumerate("159#0" * int(seconds)):
        a = int(i * 0.25 * SR)
        b = a + int(0.12 * SR)
        if b > n:
            break
        lo, hi = _DTMF[key]
        x[a:b] = np.sin(2 * np.pi * lo * t[a:b]) + np.sin(2 * np.pi * hi * t[a:b])
    return x


def hold_music(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A chord progression (C, Am, F, G) of decaying harmonic tones, a melody line and a click beat."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    x = np.zeros(n)
    for i in range(int(seconds / 0.5)):
        a, b = int(i * 0.5 * SR), int((i + 1) * 0.5 * SR)
        seg = t[a:b]
        env = np.exp(-3 * (seg - seg[0]))
        chord = _CHORDS[(i // 2) % 4]
        for f in chord:
            x[a:b] += env * sum(np.sin(2 * np.pi * f * h * seg) / h for h in (1, 2, 3))
        x[a:b] += 0.6 * env * np.sin(2 * np.pi * chord[0] * 2 * (1.5 if i % 3 == 0 else 1.25) * seg)
        x[a : a + 400] += 0.5 * rng.standard_normal(400) * np.exp(-np.arange(400) / 80)
    return x


def non_speech(seconds: float = 8.0, seed: int = 0) -> dict[str, np.ndarray]:
    """The cases the default detector must never flag: name -> float32 audio at 16 kHz."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    cases = {
        "digital silence": np.zeros(n),
        "low noise (white, -70 dBFS)": _at_level(rng.standard_normal(n), -70),
        "white noise (-20 dBFS)": _at_level(rng.standard_normal(n), -20),
        "pink noise (-20 dBFS)": _at_level(_pink(n, rng), -20),
        "DTMF key presses (-15 dBFS)": _at_level(dtmf(seconds), -15),
        "hold music (-20 dBFS)": _at_level(hold_music(seconds, rng), -20),
        "comfort noise (pink, -55 dBFS)": _at_level(_pink(n, rng), -55),
    }
    return {k: v.astype(np.float32) for k, v in cases.items()}
