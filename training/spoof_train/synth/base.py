"""The generator interface of ``spoof-train synth``: one small contract for every way of making spoofs.

A generator is either a **re-synthesiser** (bona fide clip in, spoof of the same speech out: LPCNet, WORLD,
Griffin-Lim, LPC, Codec 2) or a **text-to-speech engine** (text in, speech out: Piper, Kokoro, espeak-ng).
Each declares what it is in a :class:`GeneratorInfo` (id, kind, neural or classic, licence of its weights,
what to install, whether it can be seeded) and implements one method. Generators are looked up by name in
:data:`GENERATORS`; :func:`make_generator` parses a spec ``NAME[:KEY=VALUE,...]`` (list values joined with
``+``, e.g. ``kokoro:voices=jf_alpha+jm_kumo``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from spoof_train.errors import ConfigError, DataError, SpoofTrainError

__all__ = [
    "GENERATORS",
    "ClipError",
    "Generator",
    "GeneratorInfo",
    "GeneratorUnavailableError",
    "Resynthesizer",
    "TextToSpeech",
    "make_generator",
    "parse_spec",
    "register",
    "require_module",
]

Kind = Literal["resynth", "tts"]


class GeneratorUnavailableError(SpoofTrainError, RuntimeError):
    """A generator whose package or library is not installed. ``install`` says what to install."""

    def __init__(self, generator: str, missing: str, install: str) -> None:
        super().__init__(f"generator {generator!r} needs {missing}, which is not installed: {install}")
        self.generator = generator
        self.missing = missing
        self.install = install


class ClipError(DataError):
    """One input (clip or text) that a generator cannot use; the run records it and goes on.

    ``reason`` is one of :data:`ClipError.REASONS`.
    """

    REASONS: ClassVar[tuple[str, ...]] = (
        "corrupt",
        "empty",
        "too-short",
        "non-speech",
        "unsupported-rate",
        "generator-failed",
        "no-room-noise",
    )

    def __init__(self, reason: str, message: str) -> None:
        if reason not in self.REASONS:
            raise ValueError(f"ClipError reason must be one of {self.REASONS}, got {reason!r}")
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class GeneratorInfo:
    """What a generator is. ``licence`` is the licence of its weights / data (the part of every output's
    licence that the generator adds; ``""`` for pure signal processing, whose outputs are plain
    derivatives of the source). ``seeded`` says whether a seed makes its output reproducible;
    ``seed_note`` says why not when it is not."""

    name: str
    kind: Kind
    family: Literal["neural", "classic"]
    description: str
    licence: str
    install: str
    seeded: bool = True
    seed_note: str = ""
    min_seconds: float = 0.0
    options: Mapping[str, str] | None = None  # option -> help


class Generator(ABC):
    """Base of every generator. Subclasses set :attr:`info` and take their options as keyword arguments
    (strings from the command line are converted by :meth:`_option`)."""

    info: ClassVar[GeneratorInfo]

    def __init__(self, **options: str) -> None:
        known = dict(self.info.options or {})
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(
                f"generator {self.info.name!r}: unknown option(s) {unknown}; "
                f"it takes {sorted(known) or 'none'}"
            )
        self.options = dict(options)

    @property
    def spec(self) -> str:
        """The canonical spec string (name and sorted options): the generator's identity in a run."""
        if not self.options:
            return self.info.name
        return self.info.name + ":" + ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))

    def check(self) -> None:  # noqa: B027 - optional hook
        """Raise :class:`GeneratorUnavailableError` when a package or library it needs is missing."""

    def versions(self) -> dict[str, str]:
        """Versions of the packages behind the generator (recorded in the run's ``synth.json``)."""
        return {}

    def _option(self, key: str, default: Any, convert: Callable[[str], Any] = str) -> Any:
        if key not in self.options:
            return default
        raw = self.options[key]
        try:
            return convert(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"generator {self.info.name!r}: option {key}={raw!r} is invalid ({exc})"
            ) from exc


class Resynthesizer(Generator):
    """Bona fide clip in, spoof of the same speech out, at the input's rate and about its length."""

    @abstractmethod
    def resynthesize(
        self, x: NDArray[np.float64], sample_rate: int, rng: np.random.Generator
    ) -> NDArray[np.float64]:
        """Return the spoof of ``x`` (float64 in about [-1, 1], mono) at ``sample_rate``."""


class TextToSpeech(Generator):
    """Text in, speech out, at the engine's own rate."""

    #: Languages the engine reads (ISO 639-1 codes).
    languages: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def speak(
        self, text: str, language: str, rng: np.random.Generator
    ) -> tuple[NDArray[np.float64], int, str]:
        """Return ``(audio, sample_rate, voice)`` for ``text``; ``voice`` becomes the row's speaker."""


GENERATORS: dict[str, type[Generator]] = {}


def register(cls: type[Generator]) -> type[Generator]:
    """Class decorator: add a generator to :data:`GENERATORS` under ``cls.info.name``."""
    name = cls.info.name
    if name in GENERATORS and GENERATORS[name] is not cls:
        raise ValueError(f"generator {name!r} is registered twice")
    GENERATORS[name] = cls
    return cls


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"kokoro:voices=jf_alpha+jm_kumo,speed=1.1"`` -> ``("kokoro", {"voices": ..., "speed": "1.1"})``."""
    name, _, rest = spec.strip().partition(":")
    options: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(
                f"generator spec {spec!r}: expected NAME[:KEY=VALUE,...], got the item {item!r}"
            )
        options[key.strip()] = value.strip()
    if not name:
        raise ConfigError(f"generator spec {spec!r}: no generator name")
    return name, options


def make_generator(spec: str) -> Generator:
    """Build a generator from its spec; unknown names are a :class:`ConfigError` listing the known ones.
    (The built-in generators are registered when :mod:`spoof_train.synth` is imported.)"""
    name, options = parse_spec(spec)
    if name not in GENERATORS:
        raise ConfigError(f"unknown generator {name!r}; known: {sorted(GENERATORS)}")
    return GENERATORS[name](**options)


def require_module(generator: str, module: str, install: str) -> Any:
    """Import ``module`` or raise :class:`GeneratorUnavailableError` naming what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise GeneratorUnavailableError(generator, f"the Python module {module!r} ({exc})", install) from exc


def distribution_version(name: str) -> str:
    """Installed version of a distribution, or ``"not installed"``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
