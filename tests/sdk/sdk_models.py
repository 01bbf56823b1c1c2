"""Tiny contract-B detectors built in-process with ``onnx.helper`` (no download, no torch).

The graph turns ``audio [batch, samples]`` into four whole-window statistics (mean, mean square,
mean absolute value, mean absolute first difference) and a 4x2 linear head, so its logits depend on
every sample of the window and on nothing else: batched, threaded and streamed runs must agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spoofsdk.manifest import Manifest, write_onnx_manifest

IR_VERSION = 8  # onnx 1.23 can write IR 14, which this onnxruntime rejects (see cpu-baseline.md)
OPSET = 17

WEIGHTS = np.array(
    [[0.5, -0.5], [-3.0, 3.0], [1.0, -2.0], [-20.0, 25.0]],
    dtype=np.float32,
)
BIAS = np.array([0.1, -0.2], dtype=np.float32)


def tiny_manifest(**overrides: Any) -> Manifest:
    values: dict[str, Any] = {
        "sample_rate": 16000,
        "window_samples": 16000,
        "hop_samples": 8000,
        "min_samples": 400,
        "backbone": "tiny-stats",
        "layers": 0,
        "exporter": "tests.sdk.models",
        "exporter_version": "1",
    }
    values.update(overrides)
    return Manifest(**values)


def tiny_graph(
    *,
    input_name: str = "audio",
    input_rank: int = 2,
    n_out: int = 2,
    output_name: str = "logits",
) -> Any:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dims: list[Any] = (
        ["batch", "samples"] if input_rank == 2 else ["batch", "channels", "samples"][:input_rank]
    )
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", n_out])
    axis = input_rank - 1
    w = WEIGHTS if n_out == 2 else np.concatenate([WEIGHTS, WEIGHTS[:, :1]], axis=1)[:, :n_out]
    b = BIAS if n_out == 2 else np.concatenate([BIAS, BIAS[:1]])[:n_out]
    inits = [
        numpy_helper.from_array(w.astype(np.float32), "W"),
        numpy_helper.from_array(b.astype(np.float32), "B"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus_one"),
        numpy_helper.from_array(np.array([np.iinfo(np.int64).max], dtype=np.int64), "big"),
        numpy_helper.from_array(np.array([axis], dtype=np.int64), "axis"),
    ]
    nodes = [
        helper.make_node("ReduceMean", [input_name], ["m"], axes=[axis], keepdims=1),
        helper.make_node("Mul", [input_name, input_name], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[axis], keepdims=1),
        helper.make_node("Abs", [input_name], ["ax"]),
        helper.make_node("ReduceMean", ["ax"], ["ma"], axes=[axis], keepdims=1),
        helper.make_node("Slice", [input_name, "one", "big", "axis"], ["hi"]),
        helper.make_node("Slice", [input_name, "zero", "minus_one", "axis"], ["lo"]),
        helper.make_node("Sub", ["hi", "lo"], ["d"]),
        helper.make_node("Abs", ["d"], ["ad"]),
        helper.make_node("ReduceMean", ["ad"], ["mad"], axes=[axis], keepdims=1),
        helper.make_node("Concat", ["m", "ms", "ma", "mad"], ["f"], axis=axis),
    ]
    if input_rank == 2:
        nodes.append(helper.make_node("Gemm", ["f", "W", "B"], [output_name]))
    else:
        nodes += [
            helper.make_node("ReduceMean", ["f"], ["f2"], axes=[1], keepdims=0),
            helper.make_node("Gemm", ["f2", "W", "B"], [output_name]),
        ]
    graph = helper.make_graph(nodes, "tiny_detector", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def reference_logits(batch: np.ndarray) -> np.ndarray:
    """numpy reference of :func:`tiny_graph` (float64)."""
    x = batch.astype(np.float64)
    f = np.stack(
        [x.mean(1), (x * x).mean(1), np.abs(x).mean(1), np.abs(np.diff(x, axis=1)).mean(1)],
        axis=1,
    )
    return f @ WEIGHTS.astype(np.float64) + BIAS.astype(np.float64)


def save_tiny_detector(path: Path, manifest: Manifest | None = None, **graph_kwargs: Any) -> Path:
    import onnx

    model = tiny_graph(**graph_kwargs)
    write_onnx_manifest(model, manifest or tiny_manifest())
    onnx.save(model, str(path))
    return path


def native_ready() -> bool:
    try:
        from spoofsdk import _native
    except ImportError:
        return False
    return hasattr(_native, "Frontend")


requires_native = pytest.mark.skipif(
    not native_ready(), reason="spoofsdk._native has no Frontend yet (native front end not built)"
)
