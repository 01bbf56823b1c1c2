"""TensorRT: offline buildability checks of an ONNX graph, engine build, and engine parity runs.

Parity runs use the SDK's TensorRT backend, and the GPU identity recorded in an engine's sidecar is the SDK's
(:func:`spoofsdk.backends.tensorrt.running_gpu`): the engine is checked with the runner that ships.

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
    """cuda-python's runtime module (the SDK's :func:`~spoofsdk.backends.tensorrt.import_cudart`)."""
    from spoofsdk.backends.tensorrt import import_cudart
    from spoofsdk.errors import BackendUnavailableError

    try:
        return import_cudart()
    except BackendUnavailableError as exc:
        raise ToolchainUnavailableError(
            "engine build needs cuda-python to find the GPU: pip install 'spoofsdk[tensorrt]'"
        ) from exc


def gpu_info(device_id: int = 0) -> dict[str, str]:
    """Name and compute capability of CUDA device ``device_id``; ToolchainUnavailableError if none.

    The identity is the SDK's (:func:`spoofsdk.backends.tensorrt.running_gpu`), so the sidecar of an engine
    built here records the GPU exactly as the TensorRT backend reads it when it checks the engine."""
    from spoofsdk.backends.tensorrt import running_gpu
    from spoofsdk.errors import BackendUnavailableError

    cudart = _cudart()
    try:
        cc, name = running_gpu(cudart, device_id, needed_by="engine build")
    except BackendUnavailableError as exc:
        raise ToolchainUnavailableError(
            f"{exc}; or build the engine on the target device from the exported ONNX file"
        ) from exc
    return {"name": name, "compute_capability": cc}


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
    """Run a built engine once on ``audio`` ``[batch, samples]`` and return ``logits`` (GPU parity checks).

    The engine runs on the SDK's TensorRT backend (:class:`spoofsdk.backends.tensorrt.TensorRTBackend`: the
    runner that ships), loaded with the sidecar ``engine_path.json`` that
    :func:`spoofsdk.manifest.write_engine_manifest` wrote next to it, so the parity check also covers the
    sidecar, its compatibility check and the profile limits. A missing TensorRT, cuda-python or GPU is a
    :class:`ToolchainUnavailableError`; an engine that does not load or run is an :class:`EngineBuildError`.
    """
    import numpy as np

    from spoofsdk.backends.tensorrt import TensorRTBackend
    from spoofsdk.errors import BackendUnavailableError, SpoofError
    from spoofsdk.manifest import engine_sidecar_path, read_manifest

    try:
        backend = TensorRTBackend(
            engine_path, read_manifest(engine_sidecar_path(engine_path)), device_id=device_id
        )
    except BackendUnavailableError as exc:
        raise ToolchainUnavailableError(f"running the engine {engine_path}: {exc}") from exc
    except SpoofError as exc:
        raise EngineBuildError(f"{engine_path}: the SDK's TensorRT backend cannot load it: {exc}") from exc
    try:
        return backend.run(np.ascontiguousarray(audio, dtype=np.float32))
    except SpoofError as exc:
        raise EngineBuildError(
            f"{engine_path}: the engine failed on a batch of shape {tuple(audio.shape)}: {exc}"
        ) from exc
    finally:
        backend.close()
