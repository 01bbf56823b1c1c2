"""The backend protocol: one inference engine behind a ``run(batch) -> logits`` call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["BACKENDS", "Backend", "InputLimits"]

#: Backend names a caller may request; "auto" resolves to one of the others.
BACKENDS = ("auto", "cpu", "cuda", "tensorrt", "triton")


@dataclass(frozen=True)
class InputLimits:
    """Shapes the engine accepts for ``audio``: batch and samples ranges (``None`` = unbounded)."""

    max_batch: int | None = None
    min_samples: int = 1
    max_samples: int | None = None


@runtime_checkable
class Backend(Protocol):
    """An inference engine for contract-B models. Implementations are safe to call from many threads."""

    @property
    def name(self) -> str:
        """The effective backend: "cpu", "cuda", "tensorrt" or "triton"."""

    @property
    def detail(self) -> str:
        """Human-readable description (providers, device, engine) for logs and ``repr``."""

    @property
    def limits(self) -> InputLimits: ...

    def run(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``batch`` is C-contiguous float32 ``[batch, samples]``; returns float32 ``[batch, 2]``."""

    def close(self) -> None: ...
