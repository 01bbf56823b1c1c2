"""Augmentation: reproducibility, the documented effects, G.711 against libsndfile, chain configs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from spoof_train.augment import (
    CODECS,
    AddNoise,
    BandLimit,
    Codec,
    Microphone,
    RawBoost,
    RawBoostParams,
    ResampleRoundTrip,
    Reverb,
    ShortCrop,
    Speed,
    build_augmentation,
    codec_availability,
    colored_noise,
    g711_decode,
    g711_encode,
)
from spoof_train.errors import ConfigError

SR = 16000


def speechlike(n: int = 16000, seed: int = 0) -> np.ndarray:
    """Band-limited noise with a syllable-rate envelope: broadband like speech, deterministic."""
    rng = np.random.default_rng(seed)
    x = np.convolve(rng.normal(size=n), np.hanning(9), mode="same")
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * np.arange(n) / SR)
    return (0.1 * x * env).astype(np.float32)


def tone(f: float, n: int = 16000, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * f * np.arange(n) / sr)).astype(np.float32)


def rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2))


ALL_AUGS = [
    *(RawBoost(a) for a in range(1, 9)),
    *(Codec(c) for c in CODECS if codec_availability()[c]),
    BandLimit(),
    BandLimit(resample_8k=True),
    ResampleRoundTrip(),
    AddNoise(),
    Reverb(),
    ShortCrop(),
    Microphone(),
]


@pytest.mark.parametrize("aug", ALL_AUGS, ids=repr)
def test_same_seed_same_output_and_shape(aug) -> None:
    x = speechlike()
    y1 = aug(x, SR, np.random.default_rng(11))
    y2 = aug(x, SR, np.random.default_rng(11))
    assert y1.dtype == np.float32
    assert y1.shape == x.shape
    assert np.isfinite(y1).all()
    assert np.array_equal(y1, y2)
    assert not np.array_equal(y1, x)


@pytest.mark.parametrize("aug", [RawBoost(a) for a in range(1, 9)] + [AddNoise(), Reverb()], ids=repr)
def test_different_seed_different_output(aug) -> None:
    x = speechlike()
    assert not np.array_equal(aug(x, SR, np.random.default_rng(1)), aug(x, SR, np.random.default_rng(2)))


def test_rawboost_isd_touches_at_most_p_percent() -> None:
    x = speechlike() * 0.5  # peak well below 1: no renormalisation
    for seed in range(5):
        y = RawBoost(2)(x, SR, np.random.default_rng(seed))
        changed = np.mean(np.abs(y - x) > 0)
        assert changed <= 0.10 + 1e-9
    y = RawBoost(2, p=0.0)(x, SR, np.random.default_rng(0))
    assert np.array_equal(y, x)


def test_rawboost_ssi_snr_within_range() -> None:
    x = speechlike()
    for seed in range(5):
        y = RawBoost(3)(x, SR, np.random.default_rng(seed)).astype(np.float64)
        snr = rms_db(x) - rms_db(y - x)
        assert 10.0 - 0.01 <= snr <= 40.0 + 0.01
    y = RawBoost(3, snr_min=20.0, snr_max=20.0)(x, SR, np.random.default_rng(0)).astype(np.float64)
    assert rms_db(x) - rms_db(y - x) == pytest.approx(20.0, abs=0.01)


def test_rawboost_lnl_linear_only_is_a_filter() -> None:
    # n_f = 1: only the linear term, a cascade of notch FIRs: output is a filtered copy (peak <= 1)
    x = speechlike()
    y = RawBoost(1, n_f=1)(x, SR, np.random.default_rng(0))
    assert np.max(np.abs(y)) <= 1.0 + 1e-6
    spec_x, spec_y = np.abs(np.fft.rfft(x)), np.abs(np.fft.rfft(y))
    ratio = spec_y / np.maximum(spec_x, 1e-9)
    assert np.min(ratio[100:-100]) < 0.1 * np.median(ratio[100:-100])  # some band is notched out


def test_rawboost_config_errors() -> None:
    with pytest.raises(ConfigError, match="algo must be one of"):
        RawBoost(9)
    with pytest.raises(ConfigError, match=r"unknown parameters \['nbands'\]"):
        RawBoost(1, nbands=3)
    with pytest.raises(ConfigError, match="snr_min/snr_max must satisfy min <= max"):
        RawBoost(3, snr_min=30, snr_max=10)
    assert RawBoostParams().n_bands == 5  # reference defaults
    assert (RawBoostParams().p, RawBoostParams().g_sd, RawBoostParams().snr_max) == (10.0, 2.0, 40.0)


def test_g711_decoder_matches_libsndfile() -> None:
    codes = np.arange(256, dtype=np.uint8)
    for law, sub in (("mulaw", "ULAW"), ("alaw", "ALAW")):
        ref, _ = sf.read(
            io.BytesIO(codes.tobytes()),
            samplerate=8000,
            channels=1,
            format="RAW",
            subtype=sub,
            dtype="float32",
        )
        assert np.array_equal(g711_decode(codes, law), ref.reshape(-1))


def test_g711_encoder_matches_libsndfile_and_roundtrips() -> None:
    x = np.concatenate(
        [speechlike(8000), tone(300, 8000, 8000, 0.9), np.linspace(-1, 1, 4001, dtype=np.float32)]
    )
    for law, sub in (("mulaw", "ULAW"), ("alaw", "ALAW")):
        buf = io.BytesIO()
        sf.write(buf, x, 8000, format="RAW", subtype=sub)
        ref = np.frombuffer(buf.getvalue(), dtype=np.uint8)
        mine = g711_encode(x, law)
        # libsndfile scales floats by 32767 and truncates to its table index, we round at 32768 as the Sun
        # reference g711.c does: near decision levels a code may differ by one quantisation step
        assert np.mean(mine == ref) > 0.85
        d_mine, d_ref = g711_decode(mine, law), g711_decode(ref, law)
        assert np.all(np.abs(d_mine - d_ref) <= 0.07 * np.abs(d_ref) + 40 / 32768)
        dec = g711_decode(mine, law)
        snr = rms_db(x) - rms_db(dec - x)
        assert snr > 30.0  # G.711 gives ~38 dB on speech-level signals
        codes = np.arange(256, dtype=np.uint8)
        again = g711_encode(g711_decode(codes, law), law)
        same = again == codes
        if law == "mulaw":  # 0x7F is -0 and re-encodes as +0 (0xFF)
            assert again[0x7F] == 0xFF
            same[0x7F] = True
        assert same.all()
    with pytest.raises(ConfigError, match="law must be"):
        g711_encode(x, "ulaw")


def test_codec_availability_reports_and_codecs_degrade() -> None:
    avail = codec_availability()
    assert set(avail) == set(CODECS)
    assert avail["mulaw"]
    assert avail["alaw"]
    x = speechlike(16000)
    for name in CODECS:
        if not avail[name]:
            continue
        y = Codec(name)(x, SR, np.random.default_rng(0))
        assert abs(rms_db(y) - rms_db(x)) < 6.0, name  # level kept
    # narrow-band codecs remove the upper band
    y = Codec("mulaw")(tone(6000), SR, np.random.default_rng(0))
    assert rms_db(y) < rms_db(tone(6000)) - 30
    with pytest.raises(ConfigError, match="unknown codecs"):
        Codec(["aac"])


def test_bandlimit_passes_voice_band_only() -> None:
    bl = BandLimit()
    rng = np.random.default_rng(0)
    for f, lo, hi in ((100.0, -99, -15), (1000.0, -1.0, 1.0), (6000.0, -99, -20)):
        x = tone(f)
        y = bl(x, SR, rng)
        gain = rms_db(y[4000:]) - rms_db(x[4000:])
        assert lo <= gain <= hi, (f, gain)


def test_resample_round_trip_removes_upper_band() -> None:
    rt = ResampleRoundTrip(8000)
    assert rms_db(rt(tone(5000), SR, np.random.default_rng(0))) < rms_db(tone(5000)) - 40
    y = rt(tone(1000), SR, np.random.default_rng(0))
    assert abs(rms_db(y[1000:-1000]) - rms_db(tone(1000)[1000:-1000])) < 0.5


def test_add_noise_hits_the_snr() -> None:
    x = speechlike()
    for color in ("white", "pink", "brown"):
        y = AddNoise(snr_db=12.5, colors=[color])(x, SR, np.random.default_rng(0)).astype(np.float64)
        assert rms_db(x) - rms_db(y - x) == pytest.approx(12.5, abs=1e-3)
    pink = colored_noise(2**16, "pink", np.random.default_rng(0))
    spec = np.abs(np.fft.rfft(pink)) ** 2
    f = np.fft.rfftfreq(2**16, 1 / SR)
    low, high = spec[(f > 100) & (f < 200)].mean(), spec[(f > 3200) & (f < 6400)].mean()
    assert 10 * np.log10(low / high) == pytest.approx(10 * np.log10(4800 / 150), abs=3.0)  # 1/f: ~15 dB
    silent = np.zeros(100, np.float32)
    assert np.array_equal(AddNoise()(silent, SR, np.random.default_rng(0)), silent)


def test_add_noise_from_files(tmp_path) -> None:
    p = tmp_path / "n.wav"
    sf.write(p, tone(50, 3000), SR, subtype="FLOAT")
    y = AddNoise(snr_db=0.0, colors=[], noise_files=[p])(speechlike(), SR, np.random.default_rng(0))
    spec = np.abs(np.fft.rfft(y - speechlike()))
    assert np.argmax(spec) * SR / 16000 == pytest.approx(50, abs=2)  # the file's tone is what was added
    with pytest.raises(ConfigError, match="noise files do not exist"):
        AddNoise(noise_files=[tmp_path / "missing.wav"])


def test_reverb_rir_decays_60_db_per_rt60() -> None:
    rt60 = 0.5
    h = Reverb.rir(rt60, SR, np.random.default_rng(0))
    assert h.shape[0] == int(1.5 * rt60 * SR)
    e = h[1:] ** 2
    t = np.arange(1, h.shape[0]) / SR
    w1, w2 = (t > 0.1 * rt60) & (t < 0.2 * rt60), (t > 0.8 * rt60) & (t < 0.9 * rt60)
    drop = 10 * np.log10(e[w1].mean() / e[w2].mean())
    assert drop == pytest.approx(0.7 * 60.0, abs=3.0)
    x = speechlike()
    y = Reverb(rt60=0.4)(x, SR, np.random.default_rng(0))
    assert rms_db(y) == pytest.approx(rms_db(x), abs=0.01)


def test_chain_config_reproducible_and_validated() -> None:
    cfg = [
        {"name": "rawboost", "p": 0.5, "algo": 5},
        {
            "name": "one_of",
            "p": 0.8,
            "choices": [{"name": "codec", "codecs": ["mulaw", "alaw"]}, {"name": "bandlimit"}],
        },
        {"name": "noise", "p": 0.5, "snr_db": [5, 20]},
        {"name": "reverb", "p": 0.3, "rt60": [0.2, 0.6]},
    ]
    chain = build_augmentation(cfg)
    x = speechlike()
    outs = [chain(x, SR, np.random.default_rng(s)) for s in range(6)]
    assert all(np.array_equal(o, chain(x, SR, np.random.default_rng(s))) for s, o in enumerate(outs))
    assert len({o.tobytes() for o in outs}) == 6
    assert np.array_equal(build_augmentation([])(x, SR, np.random.default_rng(0)), x)
    assert np.array_equal(
        build_augmentation([{"name": "reverb", "p": 0.0}])(x, SR, np.random.default_rng(0)), x
    )
    with pytest.raises(ConfigError, match=r"augment\[0\]: unknown augmentation 'echo'"):
        build_augmentation([{"name": "echo"}])
    with pytest.raises(ConfigError, match=r"augment\[0\] \(noise\): unknown parameters \['snr'\]"):
        build_augmentation([{"name": "noise", "snr": 3}])
    with pytest.raises(ConfigError, match="probability must be in"):
        build_augmentation([{"name": "noise", "p": 2}])
    with pytest.raises(ConfigError, match="'choices' must be a non-empty list"):
        build_augmentation([{"name": "one_of", "choices": []}])
    with pytest.raises(ConfigError, match="expected a list of steps"):
        build_augmentation({"name": "noise"})  # type: ignore[arg-type]


def test_rawboost_filters_are_notches_with_delay_compensation() -> None:
    from scipy import signal

    from spoof_train.augment.rawboost import _band_cascade, _fir_same

    prm = RawBoostParams(
        n_bands=1, min_f=2000, max_f=2000, min_bw=400, max_bw=400, min_coeff=101, max_coeff=101
    )
    b = _band_cascade(np.random.default_rng(0), prm, 0.0, 0.0, SR)
    assert b.shape == (101,)
    _, h = signal.freqz(b, 1, worN=[500.0, 2000.0, 6000.0], fs=SR)
    mag_db = 20 * np.log10(np.abs(h))
    assert mag_db[1] < mag_db[0] - 20  # the band around 2 kHz is stopped
    assert mag_db[2] > -1.0  # the rest passes at the 0 dB peak gain
    x = speechlike()
    delay = (b.shape[0] - 1) // 2  # the reference: lfilter on the zero-padded input, then drop the delay
    ref = signal.lfilter(b, 1.0, np.concatenate((x, np.zeros(delay))))[delay : delay + x.shape[0]]
    assert np.max(np.abs(_fir_same(x.astype(np.float64), b) - ref)) < 1e-12


def test_short_crop_tiles_one_faded_segment_of_the_input() -> None:
    x = speechlike(16000, seed=3)
    aug = ShortCrop(seconds=(0.2, 0.2), fade_ms=5.0)
    y = aug(x, SR, np.random.default_rng(0))
    seg = 3200
    assert y.shape == x.shape
    assert y.dtype == np.float32
    # Periodic with the segment length, and the segment is a faded copy of a piece of the input.
    np.testing.assert_array_equal(y[seg : 2 * seg], y[:seg])
    starts = [s for s in range(16000 - seg + 1) if np.array_equal(y[80 : seg - 80], x[s + 80 : s + seg - 80])]
    assert len(starts) == 1
    assert abs(y[0]) < abs(x[starts[0]]) + 1e-9
    assert abs(y[seg - 1]) <= 0.01 * np.abs(x).max()
    # A segment at least as long as the input changes nothing; bad ranges are config errors.
    np.testing.assert_array_equal(ShortCrop(seconds=(2.0, 3.0))(x, SR, np.random.default_rng(0)), x)
    for bad in ((0.0, 0.5), (0.8, 0.2)):
        with pytest.raises(ConfigError):
            ShortCrop(seconds=bad)
    with pytest.raises(ConfigError):
        ShortCrop(fade_ms=-1)
    chain = build_augmentation([{"name": "short_crop", "p": 1.0, "seconds": [0.15, 0.8]}])
    assert isinstance(chain.steps[0][1], ShortCrop)
    assert chain.steps[0][1].seconds == (0.15, 0.8)


def _gain_db(sos: np.ndarray, hz: float) -> float:
    _, h = signal.sosfreqz(sos, worN=[hz], fs=SR)
    return float(20 * np.log10(np.abs(h[0])))


def test_shelf_and_peak_biquads_have_the_cookbook_gains() -> None:
    from spoof_train.augment.channel import peak_biquad, shelf_biquad

    for g in (-12.0, -3.0, 6.0, 12.0):
        low = shelf_biquad("low", 300.0, g, SR)[None]
        high = shelf_biquad("high", 3000.0, g, SR)[None]
        assert _gain_db(low, 1e-3) == pytest.approx(g, abs=1e-3)  # DC
        assert _gain_db(low, 7999.0) == pytest.approx(0.0, abs=0.05)
        assert _gain_db(low, 300.0) == pytest.approx(g / 2, abs=1e-3)  # S = 1: half the gain at f0
        assert _gain_db(high, 7999.999) == pytest.approx(g, abs=1e-3)  # Nyquist
        assert _gain_db(high, 1e-3) == pytest.approx(0.0, abs=1e-6)
        assert _gain_db(high, 3000.0) == pytest.approx(g / 2, abs=1e-3)
        peak = peak_biquad(1000.0, g, 2.0, SR)[None]
        assert _gain_db(peak, 1000.0) == pytest.approx(g, abs=1e-6)
        assert _gain_db(peak, 1e-3) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="kind"):
        shelf_biquad("mid", 300.0, 3.0, SR)


def test_microphone_colours_the_spectrum_keeps_the_level_and_can_be_neutral() -> None:
    x = tone(100.0, amp=0.2) + tone(2000.0, amp=0.2)
    neutral = Microphone(shelf_db=0.0, p_highpass=0.0, peaks=(0, 0))
    assert np.allclose(neutral(x, SR, np.random.default_rng(0)), x, atol=1e-6)

    def level(y: np.ndarray, f: float) -> float:
        spec = np.abs(np.fft.rfft(y[4000:] * np.hanning(len(y) - 4000)))
        return float(20 * np.log10(spec[round(f * (len(y) - 4000) / SR)]))

    bassless = Microphone(shelf_db=0.0, p_highpass=1.0, highpass_hz=400.0, peaks=(0, 0))
    y = bassless(x, SR, np.random.default_rng(0))
    # a 2nd-order Butterworth high-pass at 400 Hz: 100 Hz down 24 dB relative to 2 kHz
    assert (level(y, 100.0) - level(y, 2000.0)) - (level(x, 100.0) - level(x, 2000.0)) == pytest.approx(
        -24.1, abs=0.5
    )
    rng = np.random.default_rng(3)
    tilts = []
    for _ in range(20):
        y = Microphone()(x, SR, rng)
        assert rms_db(y) == pytest.approx(rms_db(x), abs=1e-3) or np.max(np.abs(y)) == pytest.approx(1.0)
        tilts.append((level(y, 100.0) - level(y, 2000.0)) - (level(x, 100.0) - level(x, 2000.0)))
    assert np.std(tilts) > 3.0  # the draws differ: a few dB of colouration each
    loud = Microphone(shelf_db=12.0, p_highpass=0.0, peaks=(0, 0))
    for seed in range(10):
        assert np.max(np.abs(loud(0.99 * np.sign(x), SR, np.random.default_rng(seed)))) <= 1.0


def test_microphone_config_errors() -> None:
    with pytest.raises(ConfigError, match="shelf_db"):
        Microphone(shelf_db=-1.0)
    with pytest.raises(ConfigError, match="p_highpass"):
        Microphone(p_highpass=1.5)
    with pytest.raises(ConfigError, match="peaks"):
        Microphone(peaks=(3, 1))
    with pytest.raises(ConfigError, match="highpass_hz"):
        Microphone(highpass_hz=(0.0, 100.0))
    with pytest.raises(ConfigError, match="min <= max"):
        Microphone(q=(3.0, 1.0))
    chain = build_augmentation([{"name": "microphone", "p": 1.0, "shelf_db": 6.0}])
    assert "Microphone" in repr(chain)


def peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec)) * SR / len(x)


def test_speed_scales_length_and_pitch_together() -> None:
    x = tone(500.0, n=16000)
    for s in (0.9, 1.0, 1.1):
        y = Speed(factors=s)(x, SR, np.random.default_rng(0))
        assert y.dtype == np.float32
        assert np.isfinite(y).all()
        assert abs(y.shape[0] - 16000 / s) <= 2
        assert abs(peak_hz(y) - 500.0 * s) < 3.0  # FFT bin of the shortest output: ~1.1 Hz
        assert abs(rms_db(y[200:-200]) - rms_db(x)) < 0.2  # band-limited resampling keeps the level
    # speed-up drops what would land above the Nyquist frequency instead of aliasing it back
    high = Speed(factors=1.1)(tone(7600.0), SR, np.random.default_rng(0))
    assert rms_db(high[200:-200]) < rms_db(tone(7600.0)) - 40
    # the factor is drawn from the range, reproducibly
    aug = Speed(factors=(0.9, 1.1))
    lengths = {aug(x, SR, np.random.default_rng(k)).shape[0] for k in range(20)}
    assert len(lengths) > 10
    assert min(lengths) >= 14545 - 2
    assert max(lengths) <= 17778 + 2
    assert np.array_equal(aug(x, SR, np.random.default_rng(3)), aug(x, SR, np.random.default_rng(3)))


def test_speed_config_errors_and_chain_placement() -> None:
    for bad in (0.4, (1.1, 0.9), (0.9, 2.5), -1.0):
        with pytest.raises(ConfigError, match=r"Speed\.factors"):
            Speed(factors=bad)
    x = speechlike()
    # a length-keeping chain (data.augment, on training crops) rejects it and says where it belongs
    with pytest.raises(ConfigError, match=r"for an input of 16000 samples \(a length-changing step goes in"):
        build_augmentation([{"name": "speed", "factors": [1.1, 1.1]}])(x, SR, np.random.default_rng(0))
    chain = build_augmentation(
        [{"name": "speed", "factors": [0.9, 1.1]}, {"name": "noise", "p": 0.5}],
        keep_length=False,
        where="data.clip_augment",
    )
    y = chain(x, SR, np.random.default_rng(5))
    assert y.shape != x.shape
    assert np.isfinite(y).all()
    with pytest.raises(ConfigError, match=r"data\.clip_augment\[0\]: unknown augmentation 'tempo'"):
        build_augmentation([{"name": "tempo"}], keep_length=False, where="data.clip_augment")
