"""Making spoofs: ``spoof-train synth`` and the generator plug-ins behind it (neural: LPCNet, Piper, Kokoro;
classic: WORLD, Griffin-Lim, LPC, Codec 2, espeak-ng), plus the cue check of a built corpus.

Importing this package is light: generators import their engines when first used.
"""

from __future__ import annotations

from spoof_train.synth.base import (
    GENERATORS,
    ClipError,
    Generator,
    GeneratorInfo,
    GeneratorUnavailableError,
    Resynthesizer,
    TextToSpeech,
    make_generator,
    parse_spec,
    register,
)
from spoof_train.synth.run import SynthSummary, TextRow, check_speech, read_texts, synth

__all__ = [
    "GENERATORS",
    "ClipError",
    "Generator",
    "GeneratorInfo",
    "GeneratorUnavailableError",
    "Resynthesizer",
    "SynthSummary",
    "TextRow",
    "TextToSpeech",
    "check_speech",
    "make_generator",
    "parse_spec",
    "read_texts",
    "register",
    "synth",
]


def _register_builtins() -> None:
    from spoof_train.synth import generators  # noqa: F401 - registers the built-in generators


_register_builtins()
