"""Fixtures of the export tests: a tiny WavLM-shaped ONNX graph, tiny calibration audio, tiny checkpoints.

Everything is built in-process from configs (no downloads) and kept tiny: hidden size 32, 2 layers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

SR = 16000
WINDOW = 16000  # 1 s windows keep the tiny graphs fast


def tiny_wavlm_config(layers: int = 2) -> dict[str, object]:
    return {
        "hidden_size": 32,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "conv_dim": [32] * 7,
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2,
        "num_buckets": 32,
        "max_bucket_distance": 80,
    }


class TinyDetector:
    """A plain transformers WavLM + mean-pool linear head: the graph shape the exporter sees."""

    @staticmethod
    def build(layers: int = 2, seed: int = 0):  # -> torch.nn.Module
        import torch
        from transformers import WavLMConfig, WavLMModel

        class Det(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                torch.manual_seed(seed)
                self.backbone = WavLMModel(WavLMConfig(**tiny_wavlm_config(layers)))
                self.head = torch.nn.Linear(32, 2)

            def forward(self, wave: torch.Tensor) -> torch.Tensor:
                return self.head(self.backbone(wave).last_hidden_state.mean(1))

        return Det().eval()


def _write_clips(directory: Path, n: int, *, seconds: float = 1.2, sr: int = SR, seed: int = 0) -> list[Path]:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    paths = []
    for i in range(n):
        f0 = 100 + 20 * i
        wave = 0.2 * np.sin(2 * np.pi * f0 * t) * (
            0.6 + 0.4 * np.sin(2 * np.pi * 2 * t)
        ) + 0.02 * rng.standard_normal(t.size)
        p = directory / f"clip{i:02d}.wav"
        sf.write(p, wave.astype(np.float32), sr)
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FP32 ONNX of the tiny detector (contract-B names, dynamic axes)."""
    from spoof_export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("tiny_onnx") / "tiny.onnx"
    export_onnx(TinyDetector.build(), out, opset=17, example_samples=WINDOW)
    return out


@pytest.fixture(scope="session")
def calib_windows() -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(WINDOW) / SR
    rows = [
        0.2 * np.sin(2 * np.pi * (120 + 15 * i) * t) + 0.02 * rng.standard_normal(WINDOW) for i in range(8)
    ]
    return np.stack(rows).astype(np.float32)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of 20 short synthetic wav clips at 16 kHz (no manifest)."""
    d = tmp_path_factory.mktemp("clips")
    _write_clips(d, 20)
    return d


@pytest.fixture(scope="session")
def write_clips():  # -> Callable[..., list[Path]]
    """``write_clips(directory, n, seconds=1.2, sr=16000, seed=0)``: synthetic voiced wav clips."""
    return _write_clips


def _tiny_checkpoint(directory: Path, *, calibration: dict[str, float] | None = None, seed: int = 0) -> Path:
    import dataclasses

    from spoof_train.checkpoint import save_checkpoint
    from spoof_train.models import build_detector
    from spoof_train.presets import get_preset

    config = dataclasses.replace(get_preset("wavlm-tiny"), window_samples=WINDOW, hop_samples=WINDOW // 2)
    model = build_detector(config, seed=seed)
    info: dict[str, object] = {"origin": "tests/export"}
    if calibration is not None:
        info["calibration"] = calibration
    return save_checkpoint(directory, model, config, info)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer wavlm-tiny checkpoint (contract A) with 1 s windows and a calibration in training.json."""
    return _tiny_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "tiny", calibration={"scale": 2.0, "bias": 0.1, "threshold": 0.6}
    )


@pytest.fixture(scope="session")
def labelled_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 synthetic clips with a MANIFEST.tsv: 16 train, 8 dev, labels alternating bona fide / spoof."""
    d = tmp_path_factory.mktemp("labelled")
    paths = _write_clips(d / "audio", 24, seconds=1.1, seed=3)
    lines = ["path\tlabel\tattack\tspeaker\tsplit"]
    for i, p in enumerate(paths):
        label = "bonafide" if i % 2 == 0 else "spoof"
        attack = "-" if label == "bonafide" else "A01"
        lines.append(f"audio/{p.name}\t{label}\t{attack}\tspk{i % 3}\t{'train' if i < 16 else 'dev'}")
    (d / "MANIFEST.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


@pytest.fixture
def crash_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """``crash_at(step)``: the training loop dies (KeyboardInterrupt) right after optimizer step ``step``
    and its step-log row, as a kill would; ``monkeypatch.undo()`` lifts it."""
    from spoof_train import loop

    log_step = loop.FitRun._log_step

    def arm(step: int) -> None:
        def crashing(self: loop.FitRun, epoch: int, lr: float) -> None:
            log_step(self, epoch, lr)
            if self.st.global_step == step:
                raise KeyboardInterrupt(f"killed after step {step}")

        monkeypatch.setattr(loop.FitRun, "_log_step", crashing)

    return arm
