"""The streaming polyphase resampler: quality against python-soxr 'VHQ', stopband, images,
alignment, lengths, and bit-identity whatever the chunking (streaming == offline)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soxr
from scipy.signal import chirp

from spoofsdk import InvalidArgumentError, InvalidAudioError, _native
from spoofsdk.audio import resample, resample_output_length

TO_16K = [8000, 11025, 22050, 24000, 32000, 44100, 48000]
OTHERS = [(16000, 8000), (48000, 44100), (44100, 48000), (8000, 48000), (16000, 22050)]


def _bandlimited_noise(n: int, sr: int, f_max: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[np.fft.rfftfreq(n, 1 / sr) > f_max] = 0
    x = np.fft.irfft(spec, n)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def _sweep(n: int, sr: int, f_max: float) -> np.ndarray:
    t = np.arange(n) / sr
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.05)
    return (0.5 * fade * chirp(t, f0=20.0, t1=t[-1], f1=f_max)).astype(np.float32)


def _snr_db(ours: np.ndarray, ref: np.ndarray, edge: int) -> float:
    n = min(len(ours), len(ref))
    a, b = ours[edge : n - edge].astype(np.float64), ref[edge : n - edge].astype(np.float64)
    return float(10 * np.log10(np.sum(b**2) / np.sum((a - b) ** 2)))


@pytest.mark.parametrize(("orig", "target"), [(r, 16000) for r in TO_16K] + OTHERS)
@pytest.mark.parametrize("signal", ["noise", "sweep"])
def test_snr_against_soxr_vhq(orig: int, target: int, signal: str) -> None:
    n = orig  # 1 s
    f_max = 0.45 * min(orig, target)
    x = _bandlimited_noise(n, orig, f_max, seed=orig) if signal == "noise" else _sweep(n, orig, f_max)
    ours = resample(x, orig, target)
    ref = soxr.resample(x, orig, target, quality="VHQ")
    assert len(ours) == math.ceil(n * target / orig)
    assert abs(len(ref) - len(ours)) <= 1
    snr = _snr_db(ours, ref, edge=target // 20)
    assert snr >= 70.0, f"{orig} -> {target} Hz, {signal}: SNR {snr:.1f} dB against soxr VHQ"


@pytest.mark.parametrize("orig", [22050, 24000, 32000, 44100, 48000])
def test_tones_above_target_nyquist_are_attenuated(orig: int) -> None:
    target = 16000
    t = np.arange(orig) / orig
    for f in (target / 2 * 1.01, target / 2 * 1.1, 0.7 * target, 0.45 * orig):
        x = (0.9 * np.sin(2 * np.pi * f * t)).astype(np.float32)
        y = resample(x, orig, target)[800:-800].astype(np.float64)
        level = 20 * np.log10(np.sqrt(np.mean(y**2)) / (0.9 / np.sqrt(2)))
        assert level <= -70.0, f"{f:.0f} Hz tone at {orig} Hz: {level:.1f} dB after resampling to {target} Hz"


@pytest.mark.parametrize(("orig", "target"), [(8000, 16000), (11025, 16000), (8000, 48000)])
def test_upsampling_images_are_rejected(orig: int, target: int) -> None:
    f = 0.375 * orig  # a tone inside the passband; its image is at orig - f
    t = np.arange(orig) / orig
    y = resample((0.9 * np.sin(2 * np.pi * f * t)).astype(np.float32), orig, target).astype(np.float64)
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    freqs = np.fft.rfftfreq(len(y), 1 / target)
    tone = spec[np.argmin(np.abs(freqs - f))]
    image = spec[np.argmin(np.abs(freqs - (orig - f)))]
    assert 20 * np.log10(image / tone) <= -70.0


@pytest.mark.parametrize("orig", [8000, 11025, 22050, 44100, 48000])
def test_output_is_aligned_with_input_time(orig: int) -> None:
    """No start-up delay: output k is the input signal at time k / target."""
    target, f = 16000, 1000.0
    t_in = np.arange(orig) / orig
    y = resample((0.5 * np.sin(2 * np.pi * f * t_in)).astype(np.float32), orig, target)
    t_out = np.arange(len(y)) / target
    err = y[1000:-1000] - 0.5 * np.sin(2 * np.pi * f * t_out[1000:-1000])
    assert np.abs(err).max() < 1e-3


def test_identity_is_exact_and_lengths_are_ceil() -> None:
    x = _bandlimited_noise(1234, 16000, 7000, seed=3)
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)
    rng = np.random.default_rng(4)
    for _ in range(50):
        n = int(rng.integers(0, 100000))
        a, b = (int(v) for v in rng.choice([8000, 11025, 16000, 22050, 44100, 48000, 1000, 384000], 2))
        want = -(-n * b // a)
        assert resample_output_length(n, a, b) == want
        assert _native.resample_output_length(n, a, b) == want
    assert len(resample(np.zeros(0, np.float32), 8000, 16000)) == 0
    assert len(resample(np.zeros(3, np.float32), 44100, 16000)) == 2


def _stream(x: np.ndarray, orig: int, chunks: list[int], *, as_pcm16: bool = False) -> np.ndarray:
    """Everything the front end writes for x pushed in `chunks`, reassembled from its windows."""
    w = 64
    fe = _native.Frontend(orig, window_samples=w, hop_samples=w, capacity_samples=1 << 22, encoding="pcm16")
    data = (x * 32768).astype("<i2").tobytes() if as_pcm16 else x
    unit = 2 if as_pcm16 else 1
    pos = 0
    regular: list[np.ndarray] = []
    final: np.ndarray | None = None
    for c in chunks:
        part = data[pos * unit : (pos + c) * unit] if as_pcm16 else data[pos : pos + c]
        fe.push(part) if as_pcm16 else fe.push_float(part)  # type: ignore[arg-type]
        pos += c
        regular += [win.samples for win in fe.windows()]
    fe.flush()
    for win in fe.windows():
        if win.is_final:
            final = win.samples
        else:
            regular.append(win.samples)
    total = fe.stats().samples_out
    out = np.concatenate(regular) if regular else np.zeros(0, np.float32)
    if len(out) < total:
        assert final is not None
        out = np.concatenate([out, final[len(final) - (total - len(out)) :]])
    return out


def _random_chunks(n: int, rng: np.random.Generator, max_chunk: int) -> list[int]:
    chunks: list[int] = []
    while sum(chunks) < n:
        chunks.append(int(min(rng.integers(1, max_chunk + 1), n - sum(chunks))))
    return chunks


@pytest.mark.parametrize("orig", [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000])
def test_any_chunking_is_bit_identical_to_offline(orig: int) -> None:
    rng = np.random.default_rng(orig)
    x = _bandlimited_noise(orig // 4, orig, 0.45 * min(orig, 16000), seed=orig)
    offline = resample(x, orig, 16000)
    for max_chunk in (1, 5, 160, 5000):
        n = len(x) if max_chunk > 1 else min(len(x), 3000)  # 1-sample pushes on a shorter piece
        ref = offline if n == len(x) else resample(x[:n], orig, 16000)
        got = _stream(x[:n], orig, _random_chunks(n, rng, max_chunk))
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, ref)


def test_pcm16_bytes_split_anywhere_are_bit_identical() -> None:
    x = _bandlimited_noise(4000, 8000, 3600, seed=5)
    q = (x * 32768).astype(np.int16).astype(np.float32) / 32768
    ref = resample(q, 8000, 16000)
    rng = np.random.default_rng(6)
    data = (x * 32768).astype("<i2").tobytes()
    fe = _native.Frontend(8000, window_samples=ref.size, hop_samples=ref.size, encoding="pcm16")
    pos = 0
    while pos < len(data):
        step = int(rng.integers(0, 7))  # odd splits, zero-length pushes
        fe.push(data[pos : pos + step])
        pos += step
    fe.flush()
    (window,) = fe.windows()
    np.testing.assert_array_equal(window.samples, ref)


@pytest.mark.parametrize("bad", [0, -1, 999, 384001, 10**9, 10**12])
def test_bad_rates_raise_invalid_argument(bad: int) -> None:
    x = np.zeros(10, np.float32)
    with pytest.raises(
        InvalidArgumentError, match=rf"orig_sr must be in \[1000, 384000\] Hz; got {bad}"
    ) as info:
        resample(x, bad, 16000)
    assert info.value.code == 1
    with pytest.raises(InvalidArgumentError, match=rf"target_sr must be in \[1000, 384000\] Hz; got {bad}"):
        resample(x, 16000, bad)
    with pytest.raises(InvalidArgumentError, match=r"orig_sr must be in"):
        resample_output_length(10, bad, 16000)


def test_bad_signals_raise_invalid_audio() -> None:
    with pytest.raises(InvalidAudioError, match=r"input must be finite; sample 2 is not") as info:
        resample(np.array([0, 0, np.nan], np.float32), 8000, 16000)
    assert info.value.code == 2
    with pytest.raises(InvalidAudioError, match=r"sample 0 is not"):
        resample(np.array([np.inf], np.float64), 8000, 16000)
    with pytest.raises(InvalidAudioError, match=r"1-D \(mono\); got shape \(2, 3\)"):
        resample(np.zeros((2, 3), np.float32), 8000, 16000)
    with pytest.raises(InvalidAudioError, match=r"floating-point array .*got dtype int16"):
        resample(np.zeros(3, np.int16), 8000, 16000)
    with pytest.raises(InvalidArgumentError, match=r"orig_sr must be an integer sample rate"):
        resample(np.zeros(3, np.float32), 8000.0, 16000)  # type: ignore[arg-type]
    with pytest.raises(InvalidAudioError, match=r"must be 1-D"):
        _native.resample(np.zeros((2, 2), np.float32), 8000, 16000)
