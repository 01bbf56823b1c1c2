"""Recorded room noise for TTS output: the pauses of real recordings, laid under synthetic speech.

A TTS engine writes digital silence between words and around the utterance, while a recording holds the
room, the microphone and the line. Left alone, that difference is a shortcut a detector learns instead of the
speech artefacts (corpus-v2's first cue check: the trailing-silence and noise-floor cues separated Kokoro and
Piper clips from bona fide with ROC AUC 0.83-0.90 and 0.20-0.26). So every TTS clip gets the noise of a
bona fide clip of its own split, cut from that clip's pauses and laid under the speech at that clip's own
noise-to-speech ratio, before the common conditioning (trim, level, channel).

    bed = pause_noise(x, sr)            # None when the recording has no usable pause
    y = lay_noise(tts, sr, bed, rng)    # tts + the bed at bed.ratio_db below the speech
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["MIN_BED_SECONDS", "NoiseBed", "lay_noise", "pause_noise", "speech_level_db"]

#: A bed shorter than this is not used (it would repeat audibly under a long TTS clip).
MIN_BED_SECONDS = 0.3
_SPEECH_DB = 20.0  # frames within 20 dB of the loudest are speech
_PAUSE_DB = 15.0  # pause frames are at least 15 dB below the speech level
_FLOOR_SPREAD_DB = 6.0  # ... and within 6 dB of the noise floor (the 10th percentile frame)
_FADE_S = 0.005


@dataclass(frozen=True)
class NoiseBed:
    """The pauses of one recording, concatenated, and their level relative to its speech."""

    noise: NDArray[np.float64]
    sample_rate: int
    ratio_db: float  # noise RMS - speech level, dB (negative)


def _frames_db(x: NDArray[np.float64], sample_rate: int) -> tuple[NDArray[np.float64], int]:
    """10 log10 power of the 20 ms frames every 10 ms, and the hop in samples."""
    n, hop = int(0.02 * sample_rate), int(0.01 * sample_rate)
    if len(x) < n:
        return np.array([10 * np.log10(np.mean(x**2) + 1e-20)]), hop
    idx = np.arange(n)[None, :] + hop * np.arange(1 + (len(x) - n) // hop)[:, None]
    return np.asarray(10 * np.log10(np.mean(x[idx] ** 2, axis=1) + 1e-20), dtype=np.float64), hop


def speech_level_db(x: NDArray[np.floating], sample_rate: int) -> float:
    """The speech level: power of the frames within 20 dB of the loudest one, in dB."""
    db, _ = _frames_db(np.asarray(x, dtype=np.float64), sample_rate)
    loud = db[db >= db.max() - _SPEECH_DB]
    return float(10 * np.log10(np.mean(10 ** (loud / 10))))


def pause_noise(x: NDArray[np.floating], sample_rate: int) -> NoiseBed | None:
    """The pauses of a recording: 10 ms hops whose frame and both neighbours are within 6 dB of the noise
    floor (the 10th percentile frame) and 15 dB or more under the speech level, joined run by run with 5 ms
    cross-fades. ``None`` when they add up to less than :data:`MIN_BED_SECONDS` (a short clip with no pause)
    or are digital silence."""
    x64 = np.asarray(x, dtype=np.float64)
    db, hop = _frames_db(x64, sample_rate)
    if len(db) < 3:
        return None
    speech = speech_level_db(x64, sample_rate)
    quiet = db <= min(float(np.percentile(db, 10)) + _FLOOR_SPREAD_DB, speech - _PAUSE_DB)
    quiet[1:-1] &= quiet[:-2] & quiet[2:]  # away from speech edges
    quiet[[0, -1]] = False
    runs, start = [], None
    for i, q in enumerate(np.append(quiet, False)):
        if q and start is None:
            start = i
        elif not q and start is not None:
            runs.append(x64[(start + 1) * hop : (i + 1) * hop])  # the frames' centre hops
            start = None
    fade = int(_FADE_S * sample_rate)
    runs = [r for r in runs if len(r) > 2 * fade]
    if sum(len(r) for r in runs) < MIN_BED_SECONDS * sample_rate:
        return None
    noise = _join(runs, fade)
    power = float(np.mean(noise**2))
    if power <= 1e-14:  # digital silence (or a dither-free fade): no room to lend
        return None
    return NoiseBed(noise, int(sample_rate), 10 * np.log10(power) - speech)


def _join(runs: list[NDArray[np.float64]], fade: int) -> NDArray[np.float64]:
    """Concatenate runs with equal-power cross-fades of ``fade`` samples."""
    ramp = np.sin(0.5 * np.pi * (np.arange(fade) + 0.5) / fade)
    out = runs[0].copy()
    for r in runs[1:]:
        head = out[-fade:] * ramp[::-1] + r[:fade] * ramp
        out = np.concatenate([out[:-fade], head, r[fade:]])
    return out


def lay_noise(
    y: NDArray[np.floating], sample_rate: int, bed: NoiseBed, rng: np.random.Generator
) -> NDArray[np.float64]:
    """``y`` plus ``bed``'s noise (resampled to ``sample_rate`` when it differs), looped from a random offset
    with cross-fades to ``y``'s length, at ``bed.ratio_db`` under ``y``'s speech level."""
    y64 = np.asarray(y, dtype=np.float64)
    noise = bed.noise
    if bed.sample_rate != sample_rate:
        from spoof_train.data.audio import resample

        noise = np.asarray(resample(noise, bed.sample_rate, sample_rate), dtype=np.float64)
    fade = int(_FADE_S * sample_rate)
    start = int(rng.integers(len(noise)))
    pieces = [noise[start:], *([noise] * (1 + len(y64) // max(1, len(noise) - fade)))]
    pieces = [p for p in pieces if len(p) > 2 * fade]
    bed_y = _join(pieces, fade)[: len(y64)] if pieces else np.zeros_like(y64)
    if len(bed_y) < len(y64):  # only when the bed is shorter than two fades: never for a checked bed
        bed_y = np.resize(bed_y, len(y64))
    target = speech_level_db(y64, sample_rate) + bed.ratio_db
    gain = 10 ** ((target - 10 * np.log10(np.mean(bed_y**2) + 1e-20)) / 20)
    mixed: NDArray[np.float64] = y64 + gain * bed_y
    return mixed
