"""Tiny-model fixtures shared by the training tests (keep small and stable: other test files rely on them).

- ``tiny_config(preset="wavlm-tiny", backend="ffn", layers=None)``: factory for DetectorConfigs of the tiny
  presets (2 x 32 transformer, narrow 7-layer conv encoder with real 320x striding) and raw models.
- ``tiny_ssl_config``: wavlm-tiny + ffn.   ``tiny_detector``: that model built with seed 0, eval mode.
- ``tiny_checkpoint``: a contract-A checkpoint directory of ``tiny_detector``.
- ``tiny_wave``: a seeded ``[2, 16000]`` float32 batch with lengths ``[16000, 11000]``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipe_modules (recipes/ scripts under test)


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., Any]:
    from spoof_train.presets import get_preset

    def make(
        preset: str = "wavlm-tiny", backend: str | None = "ffn", layers: int | None = None, **kw: Any
    ) -> Any:
        if not preset.endswith("-tiny"):
            backend = None
        return get_preset(preset, backend=backend, layers=layers, **kw)

    return make


@pytest.fixture
def tiny_ssl_config(tiny_config: Callable[..., Any]) -> Any:
    return tiny_config("wavlm-tiny", "ffn")


@pytest.fixture
def tiny_detector(tiny_ssl_config: Any) -> Any:
    from spoof_train.models import build_detector

    return build_detector(tiny_ssl_config, seed=0).eval()


@pytest.fixture
def tiny_checkpoint(tmp_path: Path, tiny_detector: Any) -> Path:
    from spoof_train.checkpoint import save_checkpoint

    return save_checkpoint(
        tmp_path / "tiny-ckpt", tiny_detector, tiny_detector.config, {"origin": "test", "seed": 0}
    )


@pytest.fixture
def tiny_wave() -> tuple[Any, Any]:
    import torch

    gen = torch.Generator().manual_seed(1234)
    wave = 0.1 * torch.randn(2, 16000, generator=gen)
    lengths = torch.tensor([16000, 11000])
    wave[1, 11000:] = 0.0
    return wave, lengths
