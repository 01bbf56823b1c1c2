"""GPU lane: spoof-export builds real TensorRT engines (FP32, FP16, int8 Q/DQ strongly typed) and checks
them against ONNX Runtime. Skips with the reason on machines without TensorRT 10+, cuda-python or a GPU."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def _toolchain() -> None:
    from spoof_export.errors import ToolchainUnavailableError
    from spoof_export.tensorrt import gpu_info, import_tensorrt

    try:
        import_tensorrt()
        gpu_info(0)
    except ToolchainUnavailableError as exc:
        pytest.skip(f"TensorRT engine build unavailable here: {exc}")


@pytest.fixture(scope="module")
def tiny_ckpt(_toolchain: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spoof_train.checkpoint import save_checkpoint
    from spoof_train.models import build_detector
    from spoof_train.presets import get_preset

    config = dataclasses.replace(get_preset("wavlm-tiny"), window_samples=16000, hop_samples=8000)
    return save_checkpoint(tmp_path_factory.mktemp("trt") / "ck", build_detector(config, seed=0), config, {})


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import soundfile as sf

    d = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(0)
    t = np.arange(19200) / 16000
    for i in range(16):
        sf.write(
            d / f"c{i}.wav",
            (0.2 * np.sin(2 * np.pi * (100 + 9 * i) * t) + 0.02 * rng.standard_normal(t.size)),
            16000,
        )
    return d


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_builds_matches_onnx_and_loads_in_the_sdk(tiny_ckpt, calib_dir, tmp_path, precision):
    from spoof_export import export
    from spoofsdk import Detector
    from spoofsdk.manifest import read_manifest

    kw = {"fp16": precision == "fp16"}
    if precision == "int8":
        kw |= {"int8": True, "int8_target": "tensorrt", "calib": calib_dir, "calib_min_files": 8}
    result = export(tiny_ckpt, output=tmp_path / "m", engine=True, timing_cache=tmp_path / "cache", **kw)
    report = result.report
    stage = next(v for k, v in report["stages"].items() if k.endswith("->engine"))
    assert stage["ok"]
    manifest = read_manifest(tmp_path / "m.trt")
    assert manifest.engine is not None
    assert manifest.precision == precision
    assert (tmp_path / "cache").stat().st_size > 0
    det = Detector(tmp_path / "m.trt", backend="tensorrt", speech_gate=False)
    x = np.random.default_rng(1).normal(0, 0.1, 32000).astype(np.float32)
    ref = Detector(tmp_path / "m.onnx", backend="cpu", speech_gate=False).score(x, sample_rate=16000)
    got = det.score(x, sample_rate=16000)
    assert abs(got.spoof_prob - ref.spoof_prob) < (0.05 if precision != "fp32" else 1e-3)
