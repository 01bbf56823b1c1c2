"""Result types (:class:`Score`, :class:`WindowScore`) and the window aggregation rules."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spoofsdk.errors import InvalidArgumentError

__all__ = ["AGGREGATES", "Score", "WindowScore", "aggregate_log_odds", "check_aggregate", "sigmoid"]

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
    """

    start_s: float
    end_s: float
    spoof_prob: float
    logit: float
    is_final: bool = False

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Score:
    """The score of a whole clip or call.

    ``logit`` is the aggregated calibrated spoof log-odds (see :data:`AGGREGATES`), ``spoof_prob`` its
    sigmoid, ``is_spoof`` is ``spoof_prob >= threshold`` (the manifest's decision threshold unless
    overridden), ``duration_s`` the input duration, ``windows`` the per-window scores in time order.
    """

    spoof_prob: float
    logit: float
    is_spoof: bool
    threshold: float
    duration_s: float
    windows: tuple[WindowScore, ...]
    aggregate: str = "mean"

    @property
    def label(self) -> str:
        return "spoof" if self.is_spoof else "bonafide"

    @classmethod
    def from_windows(
        cls, windows: Sequence[WindowScore], *, aggregate: str, threshold: float, duration_s: float
    ) -> Score:
        z = aggregate_log_odds([w.logit for w in windows], aggregate)
        p = sigmoid(z)
        return cls(
            spoof_prob=p,
            logit=z,
            is_spoof=p >= threshold,
            threshold=threshold,
            duration_s=duration_s,
            windows=tuple(windows),
            aggregate=aggregate,
        )

    def to_dict(self, *, windows: bool = True) -> dict[str, object]:
        out: dict[str, object] = {
            "spoof_prob": self.spoof_prob,
            "logit": self.logit,
            "is_spoof": self.is_spoof,
            "label": self.label,
            "threshold": self.threshold,
            "duration_s": self.duration_s,
            "aggregate": self.aggregate,
            "n_windows": len(self.windows),
        }
        if windows:
            out["windows"] = [
                {"start_s": w.start_s, "end_s": w.end_s, "spoof_prob": w.spoof_prob, "logit": w.logit}
                for w in self.windows
            ]
        return out
