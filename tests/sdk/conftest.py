"""Fixtures of the SDK lane: tiny contract-B detectors built in-process (see sdk_models.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sdk_models import native_ready, save_tiny_detector, tiny_manifest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s window, 0.5 s hop, 16 kHz, min 400 samples."""
    return save_tiny_detector(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_model_calibrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spoofsdk.manifest import Calibration

    m = tiny_manifest(calibration=Calibration(scale=0.5, bias=-1.0), threshold=0.3, spoof_index=0,
                      label_order=("spoof", "bonafide"))  # fmt: skip
    return save_tiny_detector(tmp_path_factory.mktemp("models") / "tiny_cal.onnx", m)


@pytest.fixture(scope="session")
def detector(tiny_model: Path):  # type: ignore[no-untyped-def]
    if not native_ready():
        pytest.skip("spoofsdk._native has no Frontend yet")
    from spoofsdk import Detector

    # the tiny models judge synthetic signals here: gating (tests/sdk/test_gating.py) is off for them
    return Detector(tiny_model, backend="cpu", num_threads=1, speech_gate=False)


@pytest.fixture(scope="session")
def speechlike() -> np.ndarray:
    """3.3 s of a deterministic speech-like float32 signal at 16 kHz (varying pitch and loudness)."""
    rng = np.random.default_rng(1234)
    sr = 16000
    t = np.arange(int(3.3 * sr)) / sr
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    env = 0.3 + 0.25 * np.sin(2 * np.pi * 2.3 * t) ** 2
    x = env * (np.sin(phase) + 0.4 * np.sin(3 * phase)) + 0.02 * rng.standard_normal(t.size)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)
