"""spoof_train: train, distil, evaluate and analyse voice anti-spoofing detectors."""

from __future__ import annotations
