"""Composable, seeded augmentation chains built from plain configs (YAML / dict).

A chain config is a list of steps, each ``{name: ..., p: probability, ...parameters}``; steps run in order and
each fires with its probability. ``one_of`` picks one of its ``choices`` (optionally ``weights``)::

    data:
      augment:
        - {name: rawboost, p: 0.5, algo: 5}
        - {name: one_of, p: 0.3, choices: [{name: codec, codecs: [mulaw, alaw, gsm]},
                                            {name: bandlimit, resample_8k: true}]}
        - {name: noise, p: 0.3, snr_db: [5, 20], colors: [white, pink]}
        - {name: reverb, p: 0.2, rt60: [0.2, 0.8]}
      clip_augment:                     # on the whole clip, before the crop: steps may change the length
        - {name: speed, p: 0.5, factors: [0.9, 1.1]}

Every random draw (whether a step fires, which choice, the step's own parameters) comes from the generator
passed at call time, so the same seed gives the same output.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spoof_train.augment.channel import (
    AddNoise,
    BandLimit,
    Microphone,
    ResampleRoundTrip,
    Reverb,
    ShortCrop,
    Speed,
)
from spoof_train.augment.codecs import Codec
from spoof_train.augment.rawboost import RawBoost
from spoof_train.errors import ConfigError

__all__ = ["REGISTRY", "Chain", "OneOf", "build_augmentation"]

Augment = Callable[[NDArray[np.float32], int, np.random.Generator], NDArray[np.float32]]

REGISTRY: dict[str, Callable[..., Augment]] = {
    "rawboost": RawBoost,
    "codec": Codec,
    "bandlimit": BandLimit,
    "resample": ResampleRoundTrip,
    "noise": AddNoise,
    "reverb": Reverb,
    "short_crop": ShortCrop,
    "microphone": Microphone,
    "speed": Speed,
}


class Chain:
    """Apply ``steps`` (``(probability, augment)`` pairs) in order; the output is float32, finite, non-empty
    and, with ``keep_length`` (the default: a chain on training crops), the input's length (a step that
    breaks this raises :class:`ConfigError` naming it). ``keep_length=False`` is for chains on whole clips
    before the crop (``data.clip_augment``), whose steps may change the length (:class:`Speed`)."""

    def __init__(self, steps: Sequence[tuple[float, Augment]], *, keep_length: bool = True) -> None:
        for p, _ in steps:
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"augmentation probability must be in [0, 1], got {p}")
        self.steps = list(steps)
        self.keep_length = keep_length

    def __repr__(self) -> str:
        return "Chain(" + ", ".join(f"p={p:g}: {a!r}" for p, a in self.steps) + ")"

    def __call__(
        self, wave: NDArray[np.floating], sample_rate: int, rng: np.random.Generator
    ) -> NDArray[np.float32]:
        x = np.asarray(wave, dtype=np.float32)
        n = x.shape[0]
        for p, aug in self.steps:
            if rng.random() < p:
                x = np.asarray(aug(x, sample_rate, rng), dtype=np.float32)
                if self.keep_length and x.shape != (n,):
                    hint = " (a length-changing step goes in data.clip_augment)" if x.ndim == 1 else ""
                    raise ConfigError(
                        f"augmentation {aug!r} returned shape {x.shape} for an input of {n} samples{hint}"
                    )
                if x.ndim != 1 or x.shape[0] == 0 or not np.isfinite(x).all():
                    raise ConfigError(f"augmentation {aug!r} returned shape {x.shape} / non-finite values")
        return x


class OneOf:
    """Apply one augmentation drawn from ``choices`` (with ``weights``, default uniform)."""

    def __init__(self, choices: Sequence[Augment], weights: Sequence[float] | None = None) -> None:
        if not choices:
            raise ConfigError("one_of: expected at least one choice")
        w = np.ones(len(choices)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(choices),) or (w < 0).any() or w.sum() <= 0:
            raise ConfigError(f"one_of: weights must be {len(choices)} non-negative numbers, got {weights}")
        self.choices = list(choices)
        self.weights = w / w.sum()

    def __repr__(self) -> str:
        return f"OneOf({self.choices!r})"

    def __call__(
        self, wave: NDArray[np.floating], sample_rate: int, rng: np.random.Generator
    ) -> NDArray[np.float32]:
        k = int(rng.choice(len(self.choices), p=self.weights))
        return np.asarray(
            self.choices[k](np.asarray(wave, dtype=np.float32), sample_rate, rng), dtype=np.float32
        )


def _build_one(spec: Mapping[str, Any], where: str) -> tuple[float, Augment]:
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError(f"{where}: expected a mapping with a 'name', got {spec!r}")
    params = dict(spec)
    name = str(params.pop("name"))
    p = float(params.pop("p", 1.0))
    if name == "one_of":
        choices = params.pop("choices", None)
        weights = params.pop("weights", None)
        if params:
            raise ConfigError(
                f"{where} (one_of): unknown keys {sorted(params)}; expected choices, weights, p"
            )
        if not isinstance(choices, Sequence) or isinstance(choices, str) or not choices:
            raise ConfigError(f"{where} (one_of): 'choices' must be a non-empty list of steps")
        built = [_build_one(c, f"{where}.choices[{i}]")[1] for i, c in enumerate(choices)]
        return p, OneOf(built, weights)
    factory = REGISTRY.get(name)
    if factory is None:
        raise ConfigError(f"{where}: unknown augmentation {name!r}; known: {sorted([*REGISTRY, 'one_of'])}")
    sig = inspect.signature(factory)
    accepts_kwargs = any(pr.kind is inspect.Parameter.VAR_KEYWORD for pr in sig.parameters.values())
    unknown = [k for k in params if k not in sig.parameters]
    if unknown and not accepts_kwargs:
        known = [k for k in sig.parameters if k != "self"]
        raise ConfigError(f"{where} ({name}): unknown parameters {unknown}; known: {known}")
    for k, v in params.items():  # YAML gives lists where the classes take tuples
        if isinstance(v, list) and k in ("snr_db", "rt60", "quality", "seconds", "factors"):
            params[k] = tuple(v)
    try:
        return p, factory(**params)
    except TypeError as exc:
        raise ConfigError(f"{where} ({name}): {exc}") from None


def build_augmentation(
    specs: Sequence[Mapping[str, Any]] | None, *, keep_length: bool = True, where: str = "augment"
) -> Chain:
    """Build a :class:`Chain` from a list of step configs (see the module docstring); [] / None = identity.
    ``keep_length=False`` for a chain on whole clips whose steps may change the length; ``where`` names the
    config key in errors."""
    if specs is None:
        return Chain([], keep_length=keep_length)
    if isinstance(specs, (Mapping, str)):
        raise ConfigError(f"{where}: expected a list of steps, got {type(specs).__name__}")
    return Chain([_build_one(s, f"{where}[{i}]") for i, s in enumerate(specs)], keep_length=keep_length)
