"""Static int8 post-training quantisation to explicit Q/DQ ONNX, and fp16 conversion.

Two int8 targets, because CPUs and TensorRT want different files (docs/cpu-baseline.md):

``cpu``
    u8 activations (asymmetric) x s8 per-channel weights with ``reduce_range`` (7-bit weights, so the
    u8 x s8 products cannot saturate on AVX2 without VNNI). ONNX Runtime fuses these Q/DQ pairs into
    QLinearConv / QLinearMatMul / MatMulIntegerToFloat. Symmetric s8 activations run at ~0.6x FP32 on
    such CPUs, this form at ~1.3x.
``tensorrt``
    symmetric s8 activations and s8 per-channel weights (zero points 0), the only Q/DQ form TensorRT's
    ONNX parser accepts; built as a strongly typed engine.

Only ``MatMul`` / ``Gemm`` / ``Conv`` are quantised: LayerNorm, GroupNorm, softmax, GELU and the residual
adds stay FP32 (quantising them is what breaks transformer accuracy), and so does the integer
arithmetic of WavLM's relative-position buckets (with the default op set ORT quantises it and the
Gather index goes out of range at run time). The first convolution of the feature encoder (raw
waveform in, 512 channels out, most of the dynamic range) stays FP32 by default.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from spoof_export.errors import CalibrationError, ExportArgumentError
from spoof_export.onnx_export import INPUT_NAME

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "CALIB_METHODS",
    "INT8_TARGETS",
    "QUANT_OP_TYPES",
    "convert_fp16",
    "first_conv_nodes",
    "qdq_summary",
    "quantize_int8",
    "restore_fp32_reads",
]

log = logging.getLogger("spoof_export")

INT8_TARGETS = ("cpu", "tensorrt")
CALIB_METHODS = ("minmax", "percentile", "entropy")
QUANT_OP_TYPES = ("MatMul", "Gemm", "Conv")


def first_conv_nodes(model: Any, count: int = 1) -> list[str]:
    """Names of the first ``count`` Conv nodes in graph order (the feature encoder's input side)."""
    names = [n.name for n in model.graph.node if n.op_type == "Conv"]
    return names[:count]


def qdq_summary(model: Any) -> dict[str, Any]:
    """Which ops of a Q/DQ graph take quantised inputs (per op type), and which of those types stay FP32."""
    produced_by: dict[str, str] = {}
    for n in model.graph.node:
        for o in n.output:
            produced_by[o] = n.op_type
    quantized: Counter[str] = Counter()
    fp32: Counter[str] = Counter()
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if n.op_type not in QUANT_OP_TYPES:
            continue
        if n.input and produced_by.get(n.input[0]) == "DequantizeLinear":
            quantized[n.op_type] += 1
        else:
            fp32[n.op_type] += 1
    qdq = Counter(n.op_type for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
    return {
        "int8_nodes": dict(quantized),
        "fp32_nodes_of_quantisable_types": dict(fp32),
        "qdq_nodes": dict(qdq),
    }


def restore_fp32_reads(model: Any) -> int:
    """Make non-quantised ops read the FP32 tensor instead of its quantise-dequantise copy.

    ONNX Runtime's QDQ quantiser puts a Q/DQ pair on every tensor a quantised op reads or writes and lets
    *every* consumer of that tensor read the dequantised copy. In a transformer that quantises the
    residual stream (a post-LN layer's ``LayerNorm`` output feeds both the next MatMul and the residual
    add) and the bias adds after each MatMul. With ``DedicatedQDQPair`` each consumer has its own pair, so
    here every consumer that is not MatMul/Gemm/Conv is rewired to the original tensor and the pairs left
    without consumers are removed. Outputs of quantised convolutions keep their Q/DQ (that is what
    QLinearConv emits, and what the encoder's GELU then reads). Returns the number of inputs rewired.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    rewired = 0
    for node in model.graph.node:
        if node.op_type in (*QUANT_OP_TYPES, "QuantizeLinear", "DequantizeLinear"):
            continue
        for idx, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                continue  # a quantised constant
            source = producer.get(q.input[0])
            if source is not None and source.op_type == "Conv":
                continue
            node.input[idx] = q.input[0]
            rewired += 1
    # drop Q/DQ nodes nobody reads any more (repeat: removing a DQ can orphan its Q)
    outputs = {o.name for o in model.graph.output}
    while True:
        used = {i for n in model.graph.node for i in n.input} | outputs
        dead = [
            n
            for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(o in used for o in n.output)
        ]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)
    used = {i for n in model.graph.node for i in n.input}
    for init in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(init)
    return rewired


class _WindowReader:
    """onnxruntime CalibrationDataReader over ``[N, samples]`` windows, one window per batch."""

    def __init__(self, windows: NDArray[np.float32]) -> None:
        self._windows = windows
        self._i = 0

    def get_next(self) -> dict[str, NDArray[np.float32]] | None:
        if self._i >= len(self._windows):
            return None
        x = self._windows[self._i : self._i + 1]
        self._i += 1
        return {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)}

    def rewind(self) -> None:
        self._i = 0


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    windows: NDArray[np.float32],
    *,
    target: Literal["cpu", "tensorrt"] = "cpu",
    method: Literal["minmax", "percentile", "entropy"] = "percentile",
    percentile: float = 99.9,
    per_channel: bool = True,
    keep_first_conv_fp32: bool = True,
    exclude_nodes: tuple[str, ...] = (),
    keep_fp32_reads: bool = True,
    op_types: tuple[str, ...] = QUANT_OP_TYPES,
) -> dict[str, Any]:
    """Quantise ``fp32_path`` to explicit Q/DQ int8 at ``out_path``, calibrated on ``windows``.

    ``method="percentile"`` clips each activation range to its ``percentile``-th percentile (both tails
    for the asymmetric CPU target): the GELU outputs of a wav2vec 2.0-style conv encoder are heavy-tailed
    (maximum ~100x the median), and a min/max range leaves half of them one to three 8-bit steps
    (docs/benchmarks.md, "Where the int8 error comes from").

    Returns a description of what was done (settings, excluded nodes, int8 node counts) for the report.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if target not in INT8_TARGETS:
        raise ExportArgumentError(f"int8_target: expected one of {INT8_TARGETS}, given {target!r}")
    if method not in CALIB_METHODS:
        raise ExportArgumentError(f"calib_method: expected one of {CALIB_METHODS}, given {method!r}")
    if not 50.0 < percentile < 100.0:
        raise ExportArgumentError(f"calib_percentile: expected a value in (50, 100), given {percentile}")
    if not set(op_types) <= set(QUANT_OP_TYPES):
        raise ExportArgumentError(f"op_types: expected a subset of {QUANT_OP_TYPES}, given {op_types}")
    if windows.ndim != 2 or windows.shape[0] == 0:
        raise CalibrationError(
            f"calibration windows: expected a non-empty [N, samples] array, given {windows.shape}"
        )

    model = onnx.load(str(fp32_path))
    excluded = list(exclude_nodes)
    if keep_first_conv_fp32:
        excluded += first_conv_nodes(model)
    calib_method = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[method]
    # DedicatedQDQPair: only the quantised consumer of a tensor reads its Q/DQ copy; LayerNorm, the
    # residual adds and the rest keep reading the FP32 tensor (no quantisation noise in the residual stream).
    extra: dict[str, Any] = {"CalibMovingAverage": False, "DedicatedQDQPair": True}
    if method == "percentile":
        extra["CalibPercentile"] = float(percentile)
    if target == "cpu":
        activation_type, weight_type, reduce_range = QuantType.QUInt8, QuantType.QInt8, True
        extra.update({"ActivationSymmetric": False, "WeightSymmetric": True})
    else:
        activation_type, weight_type, reduce_range = QuantType.QInt8, QuantType.QInt8, False
        # TensorRT takes FP32 biases: no int32 bias Q/DQ (its DequantizeLinear accepts 8-bit inputs only).
        extra.update({"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})

    class Reader(_WindowReader, CalibrationDataReader):  # type: ignore[misc]
        pass

    # ORT's calibrators print their progress ("Collecting tensor data and making histogram ...") to stdout:
    # kept out of the user's console (and out of a JSON report printed to stdout), logged at DEBUG instead.
    ort_output = io.StringIO()
    with (
        tempfile.TemporaryDirectory(prefix="spoof-export-calib-") as tmp,
        contextlib.redirect_stdout(ort_output),
    ):
        extra["CalibTensorRangeSymmetric"] = target == "tensorrt"
        quantize_static(
            str(fp32_path),
            str(out_path),
            Reader(windows),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=activation_type,
            weight_type=weight_type,
            nodes_to_exclude=excluded,
            calibrate_method=calib_method,
            extra_options=extra,
            calibration_providers=["CPUExecutionProvider"],
        )
        del tmp
    if ort_output.getvalue().strip():
        log.debug("onnxruntime quantisation: %s", ort_output.getvalue().strip())
    quantized = onnx.load(str(out_path))
    rewired = restore_fp32_reads(quantized) if keep_fp32_reads else 0
    onnx.save(quantized, str(out_path))
    summary = qdq_summary(quantized)
    info = {
        "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "target": target,
        "activations": "uint8 asymmetric" if target == "cpu" else "int8 symmetric",
        "weights": "int8 symmetric " + ("per-channel" if per_channel else "per-tensor"),
        "reduce_range": reduce_range,
        "calibration_method": method,
        **({"calibration_percentile": float(percentile)} if method == "percentile" else {}),
        "calibration_windows": int(windows.shape[0]),
        "op_types_quantized": list(op_types),
        "nodes_kept_fp32": excluded,
        "fp32_reads_restored": rewired,
        **summary,
    }
    log.info("int8 (%s): %s", target, summary["int8_nodes"])
    return info


def convert_fp16(fp32_path: str | Path, out_path: str | Path) -> dict[str, Any]:
    """FP16 weights and activations with float32 ``audio`` / ``logits`` kept at the graph boundary (for GPUs).

    Uses ONNX Runtime's converter; normalisation statistics and softmax run in FP16 too, which is what
    TensorRT and CUDA do with an FP16 graph. On CPU this file is for validation only (slower than FP32).
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.load(str(fp32_path))
    converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    # The converter appends the float32 -> float16 Cast of each graph input after the nodes that read
    # it; ONNX Runtime tolerates that, but the ONNX spec (onnx.checker) wants topologically sorted nodes.
    OnnxModel(converted).topological_sort()
    onnx.save(converted, str(out_path))
    return {"tool": "onnxruntime.transformers.float16.convert_float_to_float16", "keep_io_types": True}
