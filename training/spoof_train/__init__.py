"""spoof_train: train, distil, evaluate and analyse voice anti-spoofing detectors.

Importing the package is cheap: the names below are resolved lazily (torch / transformers are imported only
when a model-related name is first used).
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module that defines it (lazy exports; add yours here, never import heavy modules at top level)
_LAZY = {
    "DetectorConfig": "spoof_train.models.config",
    "build_detector": "spoof_train.models.detector",
    "save_checkpoint": "spoof_train.checkpoint",
    "load_checkpoint": "spoof_train.checkpoint",
    "get_preset": "spoof_train.presets",
    "init_checkpoint": "spoof_train.presets",
    "measure_cost": "spoof_train.flops",
}

__all__ = [
    "DetectorConfig",
    "build_detector",
    "get_preset",
    "init_checkpoint",
    "load_checkpoint",
    "measure_cost",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spoof_train' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
