"""Result types (:class:`Score`, :class:`WindowScore`) and the window aggregation rules."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spoofsdk.errors import InvalidArgumentError

__all__ = [
    "AGGREGATES",
    "VERDICTS",
    "Score",
    "WindowScore",
    "aggregate_log_odds",
    "check_aggregate",
    "sigmoid",
]

#: Aggregation rules over the windows of a clip or call (applied to the calibrated log-odds).
#:
#: * ``"mean"`` (default): mean of the window log-odds (= calibration of the mean logit difference,
#:   since calibration is affine); robust and what the manifest threshold is tuned for.
#: * ``"max"``: the most spoof-like window; flags a call as soon as one window is suspicious.
#: * ``"median"``: median of the window log-odds (even count: mean of the two middle values).
#: * ``"trimmed"``: mean after dropping the lowest and the highest 10 % of windows
#:   (``floor(0.1 * n)`` each side; equals ``"mean"`` below 10 windows).
AGGREGATES = ("mean", "max", "median", "trimmed")


def check_aggregate(aggregate: str) -> str:
    if aggregate not in AGGREGATES:
        raise InvalidArgumentError(f"aggregate: expected one of {AGGREGATES}, given {aggregate!r}")
    return aggregate


def sigmoid(z: float) -> float:
    """Numerically stable logistic function."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def aggregate_log_odds(values: Sequence[float], aggregate: str) -> float:
    if not values:
        raise InvalidArgumentError("aggregate: expected at least one window, given none")
    x = np.asarray(values, dtype=np.float64)
    if aggregate == "mean":
        return float(x.mean())
    if aggregate == "max":
        return float(x.max())
    if aggregate == "median":
        return float(np.median(x))
    if aggregate == "trimmed":
        k = math.floor(0.1 * x.size)
        s = np.sort(x)
        return float(s[k : x.size - k].mean())
    raise InvalidArgumentError(f"aggregate: expected one of {AGGREGATES}, given {aggregate!r}")


@dataclass(frozen=True)
class WindowScore:
    """The score of one analysis window.

    ``start_s`` / ``end_s`` are seconds from the start of the clip or call (absolute sample indices at
    the model rate divided by the model rate). ``logit`` is the calibrated spoof log-odds and
    ``spoof_prob = sigmoid(logit)``. ``is_final`` marks the window produced by the end-of-stream tail rule.

    ``speech`` is the share of the window's 32 ms frames that hold speech (:mod:`spoofsdk.gating`;
    ``None`` when the detector runs without speech gating). A window under the detector's ``min_speech``
    is **not scored**: ``state == "no_speech"``, ``logit`` and ``spoof_prob`` are NaN (so a test such as
    ``w.spoof_prob > 0.9`` is false for it), and clip scores leave it out.
    """

    start_s: float
    end_s: float
    spoof_prob: float
    logit: float
    is_final: bool = False
    speech: float | None = None
    state: str = "scored"

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def scored(self) -> bool:
        """True for a window the model scored; False for a ``no_speech`` window."""
        return self.state == "scored"

    def to_dict(self) -> dict[str, object]:
        return {
            "start_s": self.start_s,
            "end_s": self.end_s,
            "state": self.state,
            "speech": self.speech,
            "spoof_prob": self.spoof_prob if self.scored else None,
            "logit": self.logit if self.scored else None,
        }


#: Verdicts of a clip or call: ``"undetermined"`` when no window held speech.
VERDICTS = ("bonafide", "spoof", "undetermined")


@dataclass(frozen=True)
class Score:
    """The score of a whole clip or call.

    ``logit`` is the aggregated calibrated spoof log-odds of the **scored** (speech) windows (see
    :data:`AGGREGATES`), ``spoof_prob`` its sigmoid, ``is_spoof`` is ``spoof_prob >= threshold`` (the
    manifest's decision threshold unless overridden), ``duration_s`` the input duration, ``windows`` every
    window in time order, ``no_speech`` ones included. When no window held speech the verdict is
    ``"undetermined"``: ``logit`` and ``spoof_prob`` are NaN and ``is_spoof`` is False.
    """

    spoof_prob: float
    logit: float
    is_spoof: bool
    threshold: float
    duration_s: float
    windows: tuple[WindowScore, ...]
    aggregate: str = "mean"

    @property
    def speech_windows(self) -> int:
        """How many windows were scored (held speech)."""
        return sum(1 for w in self.windows if w.scored)

    @property
    def verdict(self) -> str:
        """``"spoof"``, ``"bonafide"`` or ``"undetermined"`` (no window held speech)."""
        if not self.speech_windows:
            return "undetermined"
        return "spoof" if self.is_spoof else "bonafide"

    @property
    def label(self) -> str:
        """The verdict (kept for callers of the earlier name)."""
        return self.verdict

    @classmethod
    def from_windows(
        cls, windows: Sequence[WindowScore], *, aggregate: str, threshold: float, duration_s: float
    ) -> Score:
        scored = [w.logit for w in windows if w.scored]
        if not scored:
            z = p = math.nan
        else:
            z = aggregate_log_odds(scored, aggregate)
            p = sigmoid(z)
        return cls(
            spoof_prob=p,
            logit=z,
            is_spoof=bool(scored) and p >= threshold,
            threshold=threshold,
            duration_s=duration_s,
            windows=tuple(windows),
            aggregate=aggregate,
        )

    def to_dict(self, *, windows: bool = True) -> dict[str, object]:
        determined = self.verdict != "undetermined"
        out: dict[str, object] = {
            "spoof_prob": self.spoof_prob if determined else None,
            "logit": self.logit if determined else None,
            "is_spoof": self.is_spoof,
            "label": self.label,
            "verdict": self.verdict,
            "threshold": self.threshold,
            "duration_s": self.duration_s,
            "aggregate": self.aggregate,
            "n_windows": len(self.windows),
            "n_speech_windows": self.speech_windows,
        }
        if windows:
            out["windows"] = [w.to_dict() for w in self.windows]
        return out
