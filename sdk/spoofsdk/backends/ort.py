"""ONNX Runtime backends: CPU, CUDA and TensorRT execution providers, with explicit providers.

ONNX Runtime silently falls back to the CPU when a requested provider cannot be created (missing
CUDA libraries, a TensorRT mismatch...). This module never lets that pass: after building the
session it compares ``session.get_providers()`` with the request and raises
:class:`~spoofsdk.errors.BackendUnavailableError` when the requested provider is not the first one.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from spoofsdk.backends.base import InputLimits
from spoofsdk.errors import BackendUnavailableError, InvalidArgumentError, ModelLoadError, SessionClosedError
from spoofsdk.manifest import Manifest, check_graph_signature

if TYPE_CHECKING:
    import onnxruntime as ort

__all__ = [
    "PROVIDER_OF",
    "OrtBackend",
    "OrtOptions",
    "TensorRTOptions",
    "available_ort_backends",
    "cuda_provider_options",
    "tensorrt_provider_options",
]

logger = logging.getLogger("spoofsdk")

#: spoofsdk backend name -> ONNX Runtime execution provider.
PROVIDER_OF = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}

_GRAPH_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class OrtOptions:
    """ONNX Runtime session options.

    ``intra_op_num_threads`` 0 lets ORT choose (one per physical core); ``Detector(num_threads=)``
    overrides it. ``graph_optimization_level`` is one of "disable", "basic", "extended", "all".
    ``optimized_model_path`` saves the optimised graph (useful for inspection). ``cuda_*`` options
    map to the CUDA execution provider (also used under TensorRT for the nodes TensorRT rejects).
    """

    intra_op_num_threads: int = 0
    inter_op_num_threads: int = 1
    graph_optimization_level: str = "all"
    enable_mem_pattern: bool = True
    enable_cpu_mem_arena: bool = True
    optimized_model_path: str | None = None
    log_severity_level: int = 3
    cuda_mem_limit_bytes: int = 0
    cudnn_conv_algo_search: str = "HEURISTIC"
    cuda_graph: bool = False

    def __post_init__(self) -> None:
        if self.intra_op_num_threads < 0 or self.inter_op_num_threads < 0:
            raise InvalidArgumentError(
                f"OrtOptions threads: expected >= 0, given intra={self.intra_op_num_threads} "
                f"inter={self.inter_op_num_threads}"
            )
        if self.graph_optimization_level not in _GRAPH_LEVELS:
            raise InvalidArgumentError(
                f"OrtOptions.graph_optimization_level: expected one of {_GRAPH_LEVELS}, "
                f"given {self.graph_optimization_level!r}"
            )
        if self.cudnn_conv_algo_search not in ("EXHAUSTIVE", "HEURISTIC", "DEFAULT"):
            raise InvalidArgumentError(
                "OrtOptions.cudnn_conv_algo_search: expected EXHAUSTIVE, HEURISTIC or DEFAULT, "
                f"given {self.cudnn_conv_algo_search!r}"
            )
        if not 0 <= self.log_severity_level <= 4:
            raise InvalidArgumentError(
                f"OrtOptions.log_severity_level: expected 0..4, given {self.log_severity_level}"
            )
        if self.cuda_mem_limit_bytes < 0:
            raise InvalidArgumentError(
                "OrtOptions.cuda_mem_limit_bytes: expected >= 0 (0 = no limit), given "
                f"{self.cuda_mem_limit_bytes}"
            )


@dataclass(frozen=True)
class TensorRTOptions:
    """TensorRT options, used by the ORT TensorRT execution provider and by the TensorRT runtime.

    ``engine_cache_dir`` (ORT TensorRT EP): where built engines are cached; strongly recommended,
    building a WavLM engine takes minutes. ``fp16`` / ``int8``: let TensorRT pick lower-precision
    kernels (an int8 build needs a Q/DQ model or a calibration table). ``max_batch`` and
    ``opt_batch`` shape the optimisation profile the EP builds for the ``audio`` input (samples range
    from the manifest's ``min_samples`` to its window). ``workspace_bytes`` 0 = TensorRT's default.
    ``builder_optimization_level`` 0..5 (3 = TensorRT's default). ``dla_core`` >= 0 runs on that DLA
    core (Jetson). ``timing_cache_dir`` reuses kernel timings across builds.
    """

    engine_cache_dir: str | None = None
    timing_cache_dir: str | None = None
    fp16: bool = False
    int8: bool = False
    int8_calibration_table: str | None = None
    max_batch: int = 16
    opt_batch: int = 4
    workspace_bytes: int = 0
    builder_optimization_level: int = 3
    dla_core: int = -1
    cuda_graph: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.opt_batch <= self.max_batch:
            raise InvalidArgumentError(
                f"TensorRTOptions: expected 1 <= opt_batch <= max_batch, given opt_batch={self.opt_batch} "
                f"max_batch={self.max_batch}"
            )
        if not 0 <= self.builder_optimization_level <= 5:
            raise InvalidArgumentError(
                "TensorRTOptions.builder_optimization_level: expected 0..5, "
                f"given {self.builder_optimization_level}"
            )
        if self.workspace_bytes < 0:
            raise InvalidArgumentError(
                f"TensorRTOptions.workspace_bytes: expected >= 0, given {self.workspace_bytes}"
            )


def _flag(value: bool) -> str:
    return "True" if value else "False"


def tensorrt_provider_options(
    opts: TensorRTOptions, manifest: Manifest, *, device_id: int, window_samples: int
) -> dict[str, str]:
    """Map :class:`TensorRTOptions` to ORT TensorRT EP provider options (all values strings)."""
    lo, hi = manifest.min_samples, max(window_samples, manifest.window_samples)
    out = {
        "device_id": str(device_id),
        "trt_fp16_enable": _flag(opts.fp16),
        "trt_int8_enable": _flag(opts.int8),
        "trt_builder_optimization_level": str(opts.builder_optimization_level),
        "trt_profile_min_shapes": f"audio:1x{lo}",
        "trt_profile_opt_shapes": f"audio:{opts.opt_batch}x{window_samples}",
        "trt_profile_max_shapes": f"audio:{opts.max_batch}x{hi}",
        "trt_cuda_graph_enable": _flag(opts.cuda_graph),
    }
    if opts.engine_cache_dir:
        out["trt_engine_cache_enable"] = "True"
        out["trt_engine_cache_path"] = str(opts.engine_cache_dir)
    if opts.timing_cache_dir:
        out["trt_timing_cache_enable"] = "True"
        out["trt_timing_cache_path"] = str(opts.timing_cache_dir)
    if opts.int8_calibration_table:
        out["trt_int8_calibration_table_name"] = str(opts.int8_calibration_table)
    if opts.workspace_bytes:
        out["trt_max_workspace_size"] = str(opts.workspace_bytes)
    if opts.dla_core >= 0:
        out["trt_dla_enable"] = "True"
        out["trt_dla_core"] = str(opts.dla_core)
    return out


def cuda_provider_options(opts: OrtOptions, *, device_id: int) -> dict[str, str]:
    """Map :class:`OrtOptions` to ORT CUDA EP provider options (all values strings)."""
    out = {
        "device_id": str(device_id),
        "cudnn_conv_algo_search": opts.cudnn_conv_algo_search,
        "do_copy_in_default_stream": "True",
        "enable_cuda_graph": "1" if opts.cuda_graph else "0",
    }
    if opts.cuda_mem_limit_bytes:
        out["gpu_mem_limit"] = str(opts.cuda_mem_limit_bytes)
    return out


def available_ort_backends() -> list[str]:
    """spoofsdk backend names whose ORT execution provider this onnxruntime build offers."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    return [name for name, prov in PROVIDER_OF.items() if prov in have]


class OrtBackend:
    """One shared ``InferenceSession``; ``InferenceSession.run`` is thread-safe and releases the GIL."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        manifest: Manifest,
        *,
        backend: str,
        device_id: int = 0,
        window_samples: int | None = None,
        ort_options: OrtOptions | None = None,
        tensorrt_options: TensorRTOptions | None = None,
    ) -> None:
        import onnxruntime as ort

        if backend not in PROVIDER_OF:
            raise InvalidArgumentError(f"backend: expected one of {tuple(PROVIDER_OF)}, given {backend!r}")
        self._name = backend
        self._path = Path(path)
        opts = ort_options or OrtOptions()
        trt_opts = tensorrt_options or TensorRTOptions()
        available = ort.get_available_providers()
        wanted = PROVIDER_OF[backend]
        if wanted not in available:
            raise BackendUnavailableError(
                f"backend {backend!r} needs ONNX Runtime's {wanted}, which this onnxruntime "
                f"{ort.__version__} does not offer; available backends: {available_ort_backends()} "
                f"(providers {available}). Install onnxruntime-gpu (pip install 'spoofsdk[gpu]') for "
                "CUDA/TensorRT."
            )
        providers: list[tuple[str, dict[str, str]]] = []
        win = window_samples or manifest.window_samples
        if backend == "tensorrt":
            providers.append(
                (
                    wanted,
                    tensorrt_provider_options(trt_opts, manifest, device_id=device_id, window_samples=win),
                )
            )
        if backend in ("tensorrt", "cuda") and "CUDAExecutionProvider" in available:
            providers.append(("CUDAExecutionProvider", cuda_provider_options(opts, device_id=device_id)))
        providers.append(("CPUExecutionProvider", {}))

        so = ort.SessionOptions()
        so.intra_op_num_threads = opts.intra_op_num_threads
        so.inter_op_num_threads = opts.inter_op_num_threads
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[opts.graph_optimization_level]
        so.enable_mem_pattern = opts.enable_mem_pattern
        so.enable_cpu_mem_arena = opts.enable_cpu_mem_arena
        so.log_severity_level = opts.log_severity_level
        if opts.optimized_model_path:
            so.optimized_model_filepath = opts.optimized_model_path
        try:
            # ORT warns (UserWarning) and falls back to the CPU when a provider cannot be used; record the
            # warning for the log and detect the fallback below instead of letting a filter turn it into
            # an untyped exception.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._session: ort.InferenceSession = ort.InferenceSession(
                    str(self._path),
                    sess_options=so,
                    providers=[p for p, _ in providers],
                    provider_options=[o for _, o in providers],
                )
            for w in caught:
                logger.warning("spoofsdk: onnxruntime: %s", w.message)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/RuntimeException types
            text = str(exc)
            if backend != "cpu" and any(k in text for k in ("CUDA", "cuda", "TensorRT", "TRT", "provider")):
                raise BackendUnavailableError(
                    f"backend {backend!r}: ONNX Runtime could not create {wanted} for {self._path} ({text})"
                ) from exc
            raise ModelLoadError(f"{self._path}: ONNX Runtime cannot load the model ({text})") from exc
        got = self._session.get_providers()
        if not got or got[0] != wanted:
            raise BackendUnavailableError(
                f"backend {backend!r}: requested {wanted} but ONNX Runtime created the session with {got} "
                "(it falls back silently when a provider fails to initialise; check the CUDA/cuDNN/TensorRT "
                "libraries); available backends: " + str(available_ort_backends())
            )
        self._providers = tuple(got)
        self._device_id = device_id
        inputs = [(i.name, list(i.shape)) for i in self._session.get_inputs()]
        outputs = [(o.name, list(o.shape)) for o in self._session.get_outputs()]
        check_graph_signature(inputs, outputs, source=str(self._path))
        in_type = self._session.get_inputs()[0].type
        if in_type != "tensor(float)":
            raise ModelLoadError(
                f"{self._path}: the manifest disagrees with the graph: expected input 'audio' of type "
                f"tensor(float) (float32), given {in_type}"
            )
        self._fixed_batch: int | None = None
        b = inputs[0][1][0]
        if isinstance(b, int) and b > 0:
            self._fixed_batch = b
        n = inputs[0][1][1]
        self._fixed_samples = n if isinstance(n, int) and n > 0 else None
        self._limits = InputLimits(
            max_batch=self._fixed_batch
            if self._fixed_batch
            else (trt_opts.max_batch if backend == "tensorrt" else None),
            min_samples=self._fixed_samples or 1,
            max_samples=self._fixed_samples,
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def providers(self) -> tuple[str, ...]:
        return self._providers

    @property
    def detail(self) -> str:
        dev = "" if self._name == "cpu" else f" device {self._device_id}"
        return f"onnxruntime {', '.join(self._providers)}{dev}"

    @property
    def limits(self) -> InputLimits:
        return self._limits

    @property
    def session(self) -> ort.InferenceSession:
        return self._session

    def run(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        session = self.__dict__.get("_session")
        if session is None:
            raise SessionClosedError(f"{self._path}: the detector was closed")
        out = session.run(["logits"], {"audio": batch})[0]
        result: npt.NDArray[np.float32] = np.asarray(out, dtype=np.float32)
        return result

    def close(self) -> None:
        # InferenceSession has no close(); dropping the reference frees it.
        self.__dict__.pop("_session", None)


def option_names(cls: type[OrtOptions] | type[TensorRTOptions]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def coerce_options(value: Any, cls: type[Any], what: str) -> Any:
    """Accept ``None``, an instance of ``cls`` or a dict of its fields (faster-whisper style)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        unknown = set(value) - {f.name for f in fields(cls)}
        if unknown:
            raise InvalidArgumentError(
                f"{what}: unknown option(s) {sorted(unknown)}; expected keys from "
                f"{sorted(f.name for f in fields(cls))}"
            )
        return cls(**value)
    raise InvalidArgumentError(
        f"{what}: expected {cls.__name__}, a dict or None, given {type(value).__name__}"
    )
