"""Typed errors of spoof_train.

Every error derives from :class:`SpoofTrainError` and from the built-in exception a caller would expect
(``ValueError`` for bad configuration or data, ``OSError`` for files), so ``except ValueError`` keeps
working for callers that do not know this package. Messages say what was expected and what was given.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MetricError",
    "SpoofTrainError",
    "WeightsHashError",
]


class SpoofTrainError(Exception):
    """Base class of every error raised by spoof_train."""


class ConfigError(SpoofTrainError, ValueError):
    """An invalid model / run configuration (unknown preset or back-end, ``layers`` too large, bad value)."""


class CheckpointError(SpoofTrainError, OSError):
    """A checkpoint directory or weight file that is missing, corrupt, unsafe or inconsistent."""


class WeightsHashError(CheckpointError):
    """Pinned pretrained weights whose installed version or SHA-256 differs from the pin."""


class DataError(SpoofTrainError, ValueError):
    """A manifest, protocol or audio file that cannot be used (missing file, unknown label, empty split)."""


class MetricError(SpoofTrainError, ValueError):
    """Scores that a metric cannot be computed from (empty class, non-finite values, bad shapes)."""
