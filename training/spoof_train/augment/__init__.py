"""Seeded, reproducible waveform augmentation: callables ``aug(wave, sample_rate, rng) -> wave``.

RawBoost (algorithms 1-8 of the reference code), codec round trips (G.711 mu/A-law, GSM 06.10, MP3, Opus,
Vorbis), telephony band-limit and sample-rate round trips, additive noise at an SNR, synthetic reverberation,
microphone colouration (random shelves, peaks, high-pass), short-segment crops, speed perturbation, and
:func:`build_augmentation` to compose them from a config.
"""

from __future__ import annotations

from spoof_train.augment.chain import REGISTRY, Chain, OneOf, build_augmentation
from spoof_train.augment.channel import (
    AddNoise,
    BandLimit,
    Microphone,
    ResampleRoundTrip,
    Reverb,
    ShortCrop,
    Speed,
    colored_noise,
)
from spoof_train.augment.codecs import CODECS, Codec, codec_availability, g711_decode, g711_encode
from spoof_train.augment.rawboost import (
    RawBoost,
    RawBoostParams,
    isd_additive_noise,
    lnl_convolutive_noise,
    ssi_additive_noise,
)

__all__ = [
    "CODECS",
    "REGISTRY",
    "AddNoise",
    "BandLimit",
    "Chain",
    "Codec",
    "Microphone",
    "OneOf",
    "RawBoost",
    "RawBoostParams",
    "ResampleRoundTrip",
    "Reverb",
    "ShortCrop",
    "Speed",
    "build_augmentation",
    "codec_availability",
    "colored_noise",
    "g711_decode",
    "g711_encode",
    "isd_additive_noise",
    "lnl_convolutive_noise",
    "ssi_additive_noise",
]
