"""The GPU lane: CUDA EP, TensorRT EP and TensorRT runtime tests.

Written for the machines that will run them (a Jetson Orin with JetPack's TensorRT, an H100 with
onnxruntime-gpu + tensorrt + cuda-python); on any other machine every test skips with the precise
reason (which package, provider or device is missing).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sdk_models import save_tiny_detector


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_detector(tmp_path_factory.mktemp("gpu_models") / "tiny.onnx")


@pytest.fixture(scope="session")
def clip():  # type: ignore[no-untyped-def]
    import numpy as np

    rng = np.random.default_rng(0)
    t = np.arange(3 * 16000) / 16000
    return (0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
