"""The export stages alone (typed options, StageReport) and the engine stage inside export() on CPU, with the
fake ``tensorrt`` module of test_tensorrt.py (the real build runs in tests/gpu)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spoof_export import export
from spoof_export import tensorrt as trt_mod
from spoof_export.calibrate import CalibrateOptions
from spoof_export.errors import ExportArgumentError
from spoof_export.stages import (
    EngineOptions,
    Fp16Options,
    Int8Options,
    OnnxOptions,
    TritonOptions,
    ValidateOptions,
    stage_fp16,
    stage_quantize,
)

from .test_tensorrt import _Recorder, fake_cudart, fake_tensorrt


def _ort(path: Path, batches: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(["logits"], {"audio": batches})[0])


def test_engine_stage_inside_export_with_a_fake_tensorrt(tiny_checkpoint, tmp_path, monkeypatch):
    """export(engine=True): the profile comes from the options and the window, the sidecar manifest is the
    SDK's with precision fp32, the engine's logits are compared with its source's, and the engine and its
    sidecar are renamed with the rest. The fake engine "runs" the FP32 graph it was built from."""
    from spoofsdk.manifest import read_manifest

    rec = _Recorder()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(rec))
    monkeypatch.setattr(trt_mod, "_cudart", lambda: fake_cudart(1))
    ran: list[str] = []

    def run_engine(path: Path, batch: np.ndarray, *, device_id: int = 0) -> np.ndarray:
        assert Path(path).read_bytes() == b"ENGINE"
        ran.append(Path(path).name)
        return _ort(Path(str(path).replace(".trt.partial", ".onnx.partial")), batch)

    monkeypatch.setattr(trt_mod, "run_engine", run_engine)
    result = export(tiny_checkpoint, output=tmp_path / "m", engine=True, max_batch=8, latency_repeats=1)
    assert {"engine", "engine_manifest"} <= set(result.paths)
    assert (tmp_path / "m.trt").read_bytes() == b"ENGINE"
    assert not list(tmp_path.glob("*.partial*"))
    m = read_manifest(tmp_path / "m.trt")
    assert m.precision == "fp32"
    assert m.engine is not None
    assert (m.engine.profile_min, m.engine.profile_opt, m.engine.profile_max) == (
        (1, 16000),
        (1, 16000),  # opt_seconds defaults to the 1 s window
        (8, 160000),
    )
    assert ("set_shape", "audio", (1, 16000), (1, 16000), (8, 160000)) in rec.calls
    assert ran == ["m.trt.partial"] * 3  # the three validation batches
    stages = result.report["stages"]
    assert stages["onnx->engine"]["ok"]
    assert stages["onnx->engine"]["atol"] == 1e-2  # max(atol, 1e-2) for an FP32 source
    assert stages["onnx->engine"]["max_abs_diff"]["logits"] == 0.0
    assert result.report["artifacts"]["engine"]["source"] == "onnx"
    assert [s["name"] for s in result.report["stage_reports"]] == ["onnx", "validate", "engine"]


def test_quantize_and_fp16_stages_run_alone_on_a_file_they_did_not_write(tiny_onnx, calib_windows, tmp_path):
    from spoofsdk.manifest import Manifest, read_manifest

    manifest = Manifest(sample_rate=16000, window_samples=16000, hop_samples=8000, min_samples=400)
    q = stage_quantize(
        tiny_onnx,
        tmp_path / "q.onnx",
        calib_windows,
        replace(manifest, precision="int8"),
        Int8Options(int8_ops="conv"),
        target="cpu",
    )
    assert (q.name, q.ok, q.outputs) == ("quantize_cpu", True, {"cpu": str(tmp_path / "q.onnx")})
    assert q.details["int8_nodes"].get("Conv", 0) == 7
    assert q.details["int8_nodes"].get("MatMul", 0) == 0
    assert read_manifest(tmp_path / "q.onnx").precision == "int8"
    f = stage_fp16(tiny_onnx, tmp_path / "h.onnx", replace(manifest, precision="fp16"), Fp16Options())
    assert f.name == "fp16"
    assert f.outputs == {"fp16": str(tmp_path / "h.onnx")}
    assert read_manifest(tmp_path / "h.onnx").precision == "fp16"
    assert f.summary() == {
        "name": "fp16",
        "ok": True,
        "seconds": f.seconds,
        "outputs": f.outputs,
        "warnings": [],
    }


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: OnnxOptions(atol=0.0), "atol: expected a number > 0, given 0.0"),
        (
            lambda: Int8Options(int8_ops="all"),
            "int8_ops: expected 'matmul-conv', 'matmul' or 'conv', given 'all'",
        ),  # type: ignore[arg-type]
        (
            lambda: Int8Options(calib_min_files=9, calib_max_files=8),
            r"calib_min_files: expected <= calib_max_files \(8\), given 9",
        ),
        (lambda: Fp16Options(fp16_atol=-1.0), "fp16_atol: expected a number > 0, given -1.0"),
        (lambda: EngineOptions(opt_batch=4, max_batch=2), r"opt_batch: expected <= max_batch \(2\), given 4"),
        (lambda: EngineOptions(workspace_mb=True), "workspace_mb: expected an integer > 0, given True"),  # type: ignore[arg-type]
        (lambda: TritonOptions(triton_instances=0), "triton_instances: expected an integer > 0, given 0"),
        (lambda: TritonOptions(triton_backend="tensorflow"), "triton_backend: expected one of"),
        (lambda: ValidateOptions(dev_max_files=0), "dev_max_files: expected an integer > 0, given 0"),
        (
            lambda: CalibrateOptions(dev=Path("d"), prior_spoof=1.0),
            r"prior_spoof: expected a value in \(0, 1\), given 1.0",
        ),
        (
            lambda: CalibrateOptions(dev=Path("d"), threshold="min-dcf"),
            "threshold: expected 'eer' or 'far', given 'min-dcf'",
        ),  # type: ignore[arg-type]
    ],
)
def test_stage_options_check_themselves(make, message):
    with pytest.raises(ExportArgumentError, match=message):
        make()


def test_engine_opt_seconds_must_lie_in_the_profile_only_when_an_engine_is_built():
    opts = EngineOptions(min_seconds=1.0, max_seconds=2.0)
    assert opts.opt_seconds_for(1.5) == 1.5
    with pytest.raises(ExportArgumentError, match=r"opt_seconds: expected within \[1.0, 2.0\], given 4.0"):
        opts.opt_seconds_for(4.0)
