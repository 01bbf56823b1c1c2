"""TensorRT: offline buildability checks of an ONNX graph, engine build, and engine parity runs.

The builder targets the TensorRT 10/11 Python API: a **strongly typed** network (the ONNX graph's
own types decide precision: Q/DQ int8, FP16 casts, FP32 elsewhere, no builder precision flags), the
ONNX parser, one optimisation profile over ``audio`` ``[batch, samples]``, a workspace limit, a
timing cache that is read before and written after the build, optional hardware (Ampere+) and
version compatibility. ``tensorrt`` and ``cuda-python`` are imported inside the functions, so this
module imports everywhere; without them (or without a GPU) the build raises
:class:`~spoof_export.errors.ToolchainUnavailableError` (exit code 4).

:func:`check_tensorrt_compatibility` needs only ``onnx``: it runs everywhere and tells whether the graph
is one TensorRT's ONNX parser can build (opset range, operators in the parser's support list, no
data-dependent control flow, Q/DQ in the symmetric signed form TensorRT accepts).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spoof_export.errors import EngineBuildError, TensorRTCompatibilityError, ToolchainUnavailableError
from spoof_export.onnx_export import INPUT_NAME, OUTPUT_NAME

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from spoofsdk.manifest import EngineInfo

__all__ = [
    "TRT_MAX_OPSET",
    "TRT_MIN_OPSET",
    "TRT_SUPPORTED_OPS",
    "BuiltEngine",
    "build_engine",
    "check_tensorrt_compatibility",
    "gpu_info",
    "import_tensorrt",
    "run_engine",
]

log = logging.getLogger("spoof_export")

# TensorRT 10.x ONNX parser (onnx-tensorrt docs/operators.md): opsets 9..20.
TRT_MIN_OPSET, TRT_MAX_OPSET = 9, 20
# Operators the TensorRT 10 ONNX parser lists as supported (subset relevant to any model we export,
# plus the common rest). Anything else in a graph is reported as a blocker.
TRT_SUPPORTED_OPS = frozenset(
    [
        "Abs",
        "Acos",
        "Acosh",
        "Add",
        "And",
        "ArgMax",
        "ArgMin",
        "Asin",
        "Asinh",
        "Atan",
        "Atanh",
        "AveragePool",
        "BatchNormalization",
        "Cast",
        "Ceil",
        "Celu",
        "Clip",
        "Concat",
        "Constant",
        "ConstantOfShape",
        "Conv",
        "ConvTranspose",
        "Cos",
        "Cosh",
        "CumSum",
        "DepthToSpace",
        "DequantizeLinear",
        "Div",
        "Dropout",
        "Einsum",
        "Elu",
        "Equal",
        "Erf",
        "Exp",
        "Expand",
        "EyeLike",
        "Flatten",
        "Floor",
        "Gather",
        "GatherElements",
        "GatherND",
        "Gelu",
        "Gemm",
        "GlobalAveragePool",
        "GlobalLpPool",
        "GlobalMaxPool",
        "Greater",
        "GreaterOrEqual",
        "GridSample",
        "GroupNormalization",
        "GRU",
        "HardSigmoid",
        "HardSwish",
        "Identity",
        "If",
        "ImageScaler",
        "InstanceNormalization",
        "IsInf",
        "IsNaN",
        "LayerNormalization",
        "LeakyRelu",
        "Less",
        "LessOrEqual",
        "Log",
        "LogSoftmax",
        "Loop",
        "LpNormalization",
        "LpPool",
        "LRN",
        "LSTM",
        "MatMul",
        "Max",
        "MaxPool",
        "Mean",
        "MeanVarianceNormalization",
        "Min",
        "Mod",
        "Mul",
        "Neg",
        "NonMaxSuppression",
        "NonZero",
        "Not",
        "OneHot",
        "Or",
        "Pad",
        "ParametricSoftplus",
        "Pow",
        "PRelu",
        "QuantizeLinear",
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Range",
        "Reciprocal",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceMax",
        "ReduceMean",
        "ReduceMin",
        "ReduceProd",
        "ReduceSum",
        "ReduceSumSquare",
        "Relu",
        "Reshape",
        "Resize",
        "ReverseSequence",
        "RNN",
        "RoiAlign",
        "Round",
        "ScaledTanh",
        "Scan",
        "Scatter",
        "ScatterElements",
        "ScatterND",
        "Selu",
        "Shape",
        "Shrink",
        "Sigmoid",
        "Sign",
        "Sin",
        "Sinh",
        "Size",
        "Slice",
        "Softmax",
        "Softplus",
        "Softsign",
        "SpaceToDepth",
        "Split",
        "Sqrt",
        "Squeeze",
        "Sub",
        "Sum",
        "Tan",
        "Tanh",
        "ThresholdedRelu",
        "Tile",
        "TopK",
        "Transpose",
        "Trilu",
        "Unsqueeze",
        "Upsample",
        "Where",
        "Xor",
    ]
)
# Supported by the parser, but control flow whose trip count / branch depends on tensor values:
# legal in TensorRT yet never expected in a detector graph, and a sign the export traced Python logic.
_CONTROL_FLOW = frozenset({"Loop", "If", "Scan"})
# Data-dependent output shapes: legal but a performance and portability hazard.
_DATA_DEPENDENT_SHAPE = frozenset({"NonZero", "NonMaxSuppression", "Unique"})


def check_tensorrt_compatibility(model: Any, *, strict: bool = True) -> dict[str, Any]:
    """Check that TensorRT 10's ONNX parser can build ``model`` (an ``onnx.ModelProto`` or a path).

    Returns ``{"ok", "opset", "blockers": [...], "warnings": [...], "op_counts": {...}}``; with
    ``strict`` a non-empty ``blockers`` raises :class:`TensorRTCompatibilityError` (exit code 7).
    """
    import onnx

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    blockers: list[str] = []
    warnings: list[str] = []
    opset = None
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = int(imp.version)
        else:
            blockers.append(f"custom operator domain '{imp.domain}' (v{imp.version}): TensorRT needs plugins")
    if opset is None:
        blockers.append("no default-domain opset import")
    elif not TRT_MIN_OPSET <= opset <= TRT_MAX_OPSET:
        blockers.append(f"opset {opset}: TensorRT 10's ONNX parser accepts {TRT_MIN_OPSET}..{TRT_MAX_OPSET}")

    counts: Counter[str] = Counter()
    initializers = {t.name: t for t in proto.graph.initializer}
    constants: dict[str, Any] = {}
    dq_of_initializer: set[str] = set()

    def walk(graph: Any, depth: int) -> None:
        for node in graph.node:
            counts[node.op_type] += 1
            if node.op_type == "Constant":
                constants.update({o: node for o in node.output})
            if node.domain not in ("", "ai.onnx"):
                blockers.append(
                    f"node {node.name!r}: {node.domain}::{node.op_type} is not an ONNX standard op"
                )
                continue
            if node.op_type in _CONTROL_FLOW:
                blockers.append(
                    f"node {node.name!r}: {node.op_type} (control flow on tensor values; the export should "
                    "be free of data-dependent branches and loops)"
                )
            elif node.op_type not in TRT_SUPPORTED_OPS:
                blockers.append(
                    f"node {node.name!r}: {node.op_type} is not supported by TensorRT's ONNX parser"
                )
            if node.op_type in _DATA_DEPENDENT_SHAPE:
                warnings.append(f"node {node.name!r}: {node.op_type} has a data-dependent output shape")
            if node.op_type == "DequantizeLinear" and node.input and node.input[0] in initializers:
                dq_of_initializer.update(node.output)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g, depth + 1)

    walk(proto.graph, 0)

    # Q/DQ must be signed 8-bit (or fp8/int4, not produced here) with zero points equal to 0.
    qdq_problems: dict[str, str] = {}
    for node in proto.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        zp = initializers.get(node.input[2])
        if zp is None:
            continue
        arr = onnx.numpy_helper.to_array(zp)
        if zp.data_type == onnx.TensorProto.UINT8:
            qdq_problems.setdefault(
                "uint8",
                f"node {node.name!r}: {node.op_type} with uint8 zero point; TensorRT takes only symmetric "
                "int8 Q/DQ (export with int8_target='tensorrt')",
            )
        elif zp.data_type == onnx.TensorProto.INT32:
            qdq_problems.setdefault(
                "int32",
                f"node {node.name!r}: {node.op_type} of int32 (a quantised bias); TensorRT's Q/DQ takes "
                "8-bit (or fp8/int4) tensors and FP32 biases",
            )
        elif arr.size and (arr != 0).any():
            qdq_problems.setdefault(
                "zero_point",
                f"node {node.name!r}: {node.op_type} zero point is not 0 (TensorRT needs symmetric Q/DQ)",
            )
    blockers.extend(qdq_problems.values())

    # Convolution weights must be build-time constants (an initializer, or DQ of one).
    for node in proto.graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1:
            w = node.input[1]
            if w not in initializers and w not in constants and w not in dq_of_initializer:
                blockers.append(f"node {node.name!r}: {node.op_type} weights are not an initializer")

    inputs = [i for i in proto.graph.input if i.name not in initializers]
    for vi in inputs:
        if vi.type.tensor_type.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
            blockers.append(f"input {vi.name!r}: element type {vi.type.tensor_type.elem_type} is not float")
    if [i.name for i in inputs] != [INPUT_NAME]:
        warnings.append(f"inputs are {[i.name for i in inputs]}, contract B expects ['{INPUT_NAME}']")
    if OUTPUT_NAME not in [o.name for o in proto.graph.output]:
        warnings.append(f"no output named '{OUTPUT_NAME}'")

    report = {
        "ok": not blockers,
        "opset": opset,
        "opset_range": [TRT_MIN_OPSET, TRT_MAX_OPSET],
        "blockers": blockers,
        "warnings": warnings,
        "op_counts": dict(sorted(counts.items())),
    }
    if strict and blockers:
        raise TensorRTCompatibilityError(
            f"the ONNX graph is not one TensorRT can build: {len(blockers)} problem(s), first: {blockers[0]}"
        )
    return report


# ---------------------------------------------------------------------------------------------
# Toolchain discovery
# ---------------------------------------------------------------------------------------------
def import_tensorrt() -> Any:
    """``import tensorrt`` or raise :class:`ToolchainUnavailableError` saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ToolchainUnavailableError(
            "engine build needs TensorRT 10+: pip install 'spoofsdk[tensorrt]' on a machine with an NVIDIA "
            f"GPU and driver (TensorRT wheels come from NVIDIA's index), or build from the ONNX file on the "
            f"target with trtexec; import failed: {exc}"
        ) from exc
    major = int(str(getattr(trt, "__version__", "0")).split(".")[0] or 0)
    if major < 10:
        raise ToolchainUnavailableError(
            f"engine build needs TensorRT >= 10 (strongly typed networks), given {trt.__version__}"
        )
    return trt


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as exc:
            raise ToolchainUnavailableError(
                "engine build needs cuda-python to find the GPU: pip install 'spoofsdk[tensorrt]'"
            ) from exc
    return cudart


def gpu_info(device_id: int = 0) -> dict[str, str]:
    """Name and compute capability of CUDA device ``device_id``; ToolchainUnavailableError if none."""
    cudart = _cudart()
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        raise ToolchainUnavailableError(
            f"engine build needs an NVIDIA GPU: no CUDA device found (cudaGetDeviceCount -> {err}, "
            f"{count} devices); "
            "build the engine on the target device from the exported ONNX file"
        )
    if not 0 <= device_id < count:
        raise ToolchainUnavailableError(f"device_id: expected 0..{count - 1}, given {device_id}")
    err, prop = cudart.cudaGetDeviceProperties(device_id)
    if int(err) != 0:
        raise ToolchainUnavailableError(f"cudaGetDeviceProperties({device_id}) failed: {err}")
    name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
    return {"name": name.rstrip("\x00"), "compute_capability": f"{prop.major}.{prop.minor}"}


# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuiltEngine:
    path: Path
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    profile_min: tuple[int, int]
    profile_opt: tuple[int, int]
    profile_max: tuple[int, int]
    build_flags: tuple[str, ...]
    hardware_compatibility_level: str
    version_compatible: bool
    timing_cache: Path | None

    def engine_info(self) -> EngineInfo:
        """This build's ``.trt.json`` sidecar fields (spoofsdk's EngineInfo), on this machine's platform."""
        import platform

        from spoofsdk.manifest import EngineInfo

        return EngineInfo(
            tensorrt_version=self.tensorrt_version,
            compute_capability=self.compute_capability,
            gpu_name=self.gpu_name,
            profile_min=self.profile_min,
            profile_opt=self.profile_opt,
            profile_max=self.profile_max,
            build_flags=self.build_flags,
            hardware_compatibility_level=self.hardware_compatibility_level,
            version_compatible=self.version_compatible,
            platform=platform.machine(),
        )


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    profile_min: tuple[int, int],
    profile_opt: tuple[int, int],
    profile_max: tuple[int, int],
    workspace_bytes: int,
    timing_cache: str | Path | None = None,
    hardware_compatible: bool = False,
    version_compatible: bool = False,
    device_id: int = 0,
) -> BuiltEngine:
    """Parse ``onnx_path`` into a strongly typed network and serialise an engine to ``engine_path``.

    ``profile_*`` are ``(batch, samples)`` shapes of ``audio``. The timing cache at ``timing_cache``
    (created when missing) speeds up rebuilds of the same model on the same GPU and TensorRT version.
    """
    trt = import_tensorrt()
    gpu = gpu_info(device_id)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if builder is None:  # pragma: no cover - TensorRT returns None when CUDA cannot initialise
        raise ToolchainUnavailableError("TensorRT could not create a builder (CUDA initialisation failed)")
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(
            f"TensorRT's ONNX parser rejected {onnx_path}: {len(errors)} error(s): " + "; ".join(errors[:5])
        )
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if INPUT_NAME not in names:
        raise EngineBuildError(f"the parsed network has inputs {names}, expected '{INPUT_NAME}'")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, tuple(profile_min), tuple(profile_opt), tuple(profile_max))
    config.add_optimization_profile(profile)
    build_flags = ["strongly_typed"]
    hw_level = "none"
    if hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
        hw_level = "ampere_plus"
        build_flags.append("hardware_compatibility_level=ampere_plus")
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        build_flags.append("version_compatible")

    cache_path = Path(timing_cache) if timing_cache else None
    cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(
            f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)"
        )
    Path(engine_path).write_bytes(bytes(serialized))
    if cache_path is not None:
        tmp = cache_path.with_name(cache_path.name + ".tmp")
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
        tmp.replace(cache_path)
    return BuiltEngine(
        path=Path(engine_path),
        tensorrt_version=str(trt.__version__),
        gpu_name=gpu["name"],
        compute_capability=gpu["compute_capability"],
        profile_min=tuple(profile_min),  # type: ignore[arg-type]
        profile_opt=tuple(profile_opt),  # type: ignore[arg-type]
        profile_max=tuple(profile_max),  # type: ignore[arg-type]
        build_flags=tuple(build_flags),
        hardware_compatibility_level=hw_level,
        version_compatible=version_compatible,
        timing_cache=cache_path,
    )


def run_engine(
    engine_path: str | Path, audio: NDArray[np.float32], *, device_id: int = 0
) -> NDArray[np.float32]:
    """Run a built engine once on ``audio`` ``[batch, samples]`` and return ``logits`` (GPU parity checks)."""
    import numpy as np

    trt = import_tensorrt()
    gpu_info(device_id)
    cudart = _cudart()

    def check(ret: Any) -> Any:
        err = ret[0] if isinstance(ret, tuple) else ret
        if int(err) != 0:
            raise EngineBuildError(f"CUDA call failed: {err}")
        return ret[1] if isinstance(ret, tuple) and len(ret) == 2 else ret

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        raise EngineBuildError(f"{engine_path}: TensorRT could not deserialise the engine")
    context = engine.create_execution_context()
    x = np.ascontiguousarray(audio, dtype=np.float32)
    context.set_input_shape(INPUT_NAME, tuple(x.shape))
    out_shape = tuple(context.get_tensor_shape(OUTPUT_NAME))
    y = np.empty(out_shape, dtype=np.float32)
    stream = check(cudart.cudaStreamCreate())
    d_in = check(cudart.cudaMalloc(x.nbytes))
    d_out = check(cudart.cudaMalloc(y.nbytes))
    try:
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(cudart.cudaMemcpyAsync(d_in, x.ctypes.data, x.nbytes, h2d, stream))
        context.set_tensor_address(INPUT_NAME, int(d_in))
        context.set_tensor_address(OUTPUT_NAME, int(d_out))
        if not context.execute_async_v3(int(stream)):
            raise EngineBuildError(f"{engine_path}: execute_async_v3 failed")
        check(cudart.cudaMemcpyAsync(y.ctypes.data, d_out, y.nbytes, d2h, stream))
        check(cudart.cudaStreamSynchronize(stream))
    finally:
        cudart.cudaFree(d_in)
        cudart.cudaFree(d_out)
        cudart.cudaStreamDestroy(stream)
    return y
