"""Fixtures of the examples lane: a tiny in-process detector, engines and loopback servers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "sdk"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sdk_models import save_tiny_detector  # type: ignore[import-not-found]  # noqa: E402 - after sys.path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s window, 0.5 s hop, 16 kHz model rate (tests/sdk/sdk_models.py)."""
    path: Path = save_tiny_detector(tmp_path_factory.mktemp("models") / "tiny.onnx")
    return path


@pytest.fixture(scope="session")
def detector(tiny_model: Path):  # type: ignore[no-untyped-def]
    from spoofsdk import Detector

    det = Detector(tiny_model, backend="cpu", num_threads=1)
    yield det
    det.close()
