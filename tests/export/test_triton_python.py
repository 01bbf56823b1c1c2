"""The Python-backend Triton model spoof-export writes (``--triton-backend python``), without a server: the
config, argument errors, and model.py's execute() run against a stand-in for ``triton_python_backend_utils``.
The real tritonserver runs it in tests/triton/."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from spoof_export.errors import ExportArgumentError
from spoof_export.triton import write_triton_repository
from spoof_export.triton_python import write_python_model

META = {"spoof.manifest_version": "1", "spoof.sample_rate": "16000"}


class _Capsule:
    """Hands numpy a DLPack capsule made elsewhere (what the stub does with the one model.py gives it)."""

    def __init__(self, capsule: Any) -> None:
        self.capsule = capsule

    def __dlpack__(self, **_: Any) -> Any:
        return self.capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)  # CPU


def _fake_pb_utils() -> types.ModuleType:
    pb = types.ModuleType("triton_python_backend_utils")

    class TritonError:
        def __init__(self, message: str) -> None:
            self.message = message

    class Tensor:
        def __init__(self, name: str, array: np.ndarray) -> None:
            self.name, self.array = name, array

        @staticmethod
        def from_dlpack(name: str, capsule: Any) -> Tensor:
            return Tensor(name, np.from_dlpack(_Capsule(capsule)).copy())

    class InferenceResponse:
        def __init__(self, output_tensors: list[Tensor], error: TritonError | None = None) -> None:
            self.output_tensors, self.error = output_tensors, error

    def get_input_tensor_by_name(request: dict[str, np.ndarray], name: str) -> np.ndarray | None:
        return request.get(name)  # numpy arrays speak DLPack themselves

    pb.TritonError = TritonError  # type: ignore[attr-defined]
    pb.Tensor = Tensor  # type: ignore[attr-defined]
    pb.InferenceResponse = InferenceResponse  # type: ignore[attr-defined]
    pb.get_input_tensor_by_name = get_input_tensor_by_name  # type: ignore[attr-defined]
    return pb


def _load_model_py(path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # initialize() wraps it
    spec = importlib.util.spec_from_file_location("spoof_triton_model", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_python_model_layout_and_config(tiny_onnx: Path, tmp_path: Path) -> None:
    pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient not installed")
    from spoof_export.triton import parse_config

    models = write_triton_repository(
        tmp_path,
        name="tiny",
        onnx_path=tiny_onnx,
        engine_path=None,
        manifest_metadata=META,
        max_batch_size=8,
        backend="python",
    )
    assert [(m.name, m.platform) for m in models] == [("tiny_python", "python")]
    model = tmp_path / "tiny_python"
    assert sorted(p.name for p in model.rglob("*")) == ["1", "config.pbtxt", "model.onnx", "model.py"]
    assert not list(tmp_path.glob(".*partial"))
    cfg = parse_config((model / "config.pbtxt").read_text(encoding="utf-8"))
    assert cfg.backend == "python"
    assert cfg.platform == ""
    assert cfg.max_batch_size == 8
    assert list(cfg.dynamic_batching.preferred_batch_size) == [1, 4, 8]
    assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_CPU
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    assert params == {**META, "onnx_intra_op_threads": "1"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_size": 0}, "triton_max_batch: expected an integer >= 1, given 0"),
        ({"instance_count": 0}, "triton_instances: expected an integer >= 1, given 0"),
        ({"intra_op_threads": 0}, "triton_threads: expected an integer >= 1, given 0"),
        ({"max_queue_delay_us": -1}, "triton_max_queue_delay_us: expected an integer >= 0, given -1"),
        ({"name": "a b"}, "triton model name: expected letters, digits"),
        ({"manifest_metadata": {}}, "manifest_metadata: expected the spoof.* manifest keys, given none"),
        (
            {"onnx_path": "missing.onnx"},
            r"onnx_path: expected an ONNX file, given missing\.onnx \(not found\)",
        ),
    ],
)
def test_python_model_argument_errors(
    tiny_onnx: Path, tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {"name": "tiny", "onnx_path": tiny_onnx, "manifest_metadata": META} | kwargs
    with pytest.raises(ExportArgumentError, match=message):
        write_python_model(tmp_path, **args)
    with pytest.raises(
        ExportArgumentError, match=r"triton_backend: expected one of \('onnxruntime', 'python'\)"
    ):
        write_triton_repository(
            tmp_path, name="t", onnx_path=tiny_onnx, engine_path=None, manifest_metadata=META, backend="tf"
        )


def test_model_py_batches_equal_lengths_and_answers_bad_requests_alone(
    tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = write_python_model(tmp_path, name="tiny", onnx_path=tiny_onnx, manifest_metadata=META)
    module = _load_model_py(m.script_path, monkeypatch)
    config = json.dumps({"parameters": {"onnx_intra_op_threads": {"string_value": "1"}}})
    model = module.TritonPythonModel()
    model.initialize(
        {"model_config": config, "model_repository": str(m.model_path.parents[1]), "model_version": "1"}
    )
    runs: list[tuple[int, ...]] = []
    real_run = model.session.run

    def counting_run(outputs: Any, feeds: dict[str, np.ndarray]) -> Any:
        runs.append(feeds["audio"].shape)
        return real_run(outputs, feeds)

    model.session = types.SimpleNamespace(run=counting_run)
    rng = np.random.default_rng(0)
    a = (0.1 * rng.standard_normal((2, 16000))).astype(np.float32)
    b = (0.1 * rng.standard_normal((1, 16000))).astype(np.float32)
    c = (0.1 * rng.standard_normal((3, 8000))).astype(np.float32)
    requests = [{"audio": a}, {"audio": a.astype(np.float64)}, {"audio": c}, {}, {"audio": b}]
    responses = model.execute(requests)
    assert sorted(runs) == [(3, 8000), (3, 16000)]  # one ONNX Runtime run per window length
    ref = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    for i, x in ((0, a), (2, c), (4, b)):
        assert responses[i].error is None
        (out,) = responses[i].output_tensors
        assert out.name == "logits"
        np.testing.assert_allclose(out.array, ref.run(None, {"audio": x})[0], atol=1e-5)
    assert responses[1].error.message == "audio: expected float32 [batch, samples], given float64 [2, 16000]"
    assert responses[3].error.message == "audio: expected float32 [batch, samples], given no input"
    assert responses[1].output_tensors == []
    model.finalize()
