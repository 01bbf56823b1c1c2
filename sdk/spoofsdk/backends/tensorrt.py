"""The TensorRT runtime backend for serialized engines (``.trt`` / ``.engine`` / ``.plan``).

Uses the TensorRT 10 tensor-name API (``num_io_tensors``, ``get_tensor_name``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) and CUDA through ``cuda-python`` (``cuda.bindings``),
both imported lazily so that ``spoofsdk`` imports without them.

* Compatibility is checked from the ``NAME.trt.json`` sidecar *before* the engine is deserialised
  (:func:`spoofsdk.manifest.check_engine_compatibility`); deserialising an engine built for another
  TensorRT or GPU returns ``None`` or worse, so we never try.
* The engine is shared; every worker thread gets its own execution context, CUDA stream and pinned
  host / device buffers sized for the optimisation profile's maximum shape (one ``IExecutionContext``
  is not safe to use from two threads at once).
* Shapes outside profile 0's [min, max] are rejected with a typed error before reaching TensorRT.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from spoofsdk.backends.base import InputLimits
from spoofsdk.backends.ort import TensorRTOptions
from spoofsdk.errors import BackendUnavailableError, InvalidAudioError, ModelLoadError
from spoofsdk.manifest import Manifest, check_engine_compatibility, check_graph_signature

__all__ = [
    "EngineIO",
    "TensorRTBackend",
    "check_profile_shape",
    "import_cudart",
    "import_tensorrt",
    "running_gpu",
]

logger = logging.getLogger("spoofsdk")


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            "backend 'tensorrt' needs the TensorRT Python package (tensorrt >= 10), which is not installed: "
            "pip install 'spoofsdk[tensorrt]' (on Jetson it ships with JetPack)"
        ) from exc
    major = int(str(getattr(trt, "__version__", "0")).split(".")[0] or 0)
    if major < 10:
        raise BackendUnavailableError(
            "backend 'tensorrt' needs TensorRT >= 10 (tensor-name API), found "
            f"{getattr(trt, '__version__', '?')}"
        )
    return trt


def import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError as exc:
            raise BackendUnavailableError(
                "backend 'tensorrt' needs cuda-python (cuda.bindings) for CUDA streams and pinned memory: "
                "pip install 'spoofsdk[tensorrt]'"
            ) from exc
    return cudart


def _cuda_call(result: Any, what: str) -> Any:
    """cuda-python returns ``(err, *values)``; raise on a non-success error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendUnavailableError(f"CUDA call {what} failed: {err}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def running_gpu(cudart: Any, device_id: int, *, needed_by: str = "backend 'tensorrt'") -> tuple[str, str]:
    """(compute capability "major.minor", name) of CUDA device ``device_id``: the project's one GPU identity.

    The TensorRT backend checks an engine's sidecar against it before deserialising, and spoof-export
    records it in the sidecar when it builds an engine (``spoof_export.tensorrt.gpu_info``). ``cudart`` is
    cuda-python's runtime module (:func:`import_cudart`). Raises :class:`BackendUnavailableError`, its
    message starting with ``needed_by``, when no device is visible or ``device_id`` is out of range.
    """
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or int(count) == 0:
        raise BackendUnavailableError(
            f"{needed_by} needs an NVIDIA GPU: no CUDA device found (cudaGetDeviceCount -> {err}, {count} "
            "devices): no CUDA device is visible here; check the driver and CUDA_VISIBLE_DEVICES"
        )
    if not 0 <= device_id < int(count):
        raise BackendUnavailableError(
            f"{needed_by}: expected a CUDA device id in [0, {int(count) - 1}], given {device_id}"
        )
    props = _cuda_call(cudart.cudaGetDeviceProperties(device_id), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return f"{props.major}.{props.minor}", name.rstrip("\x00")


def check_profile_shape(
    shape: tuple[int, int], lo: tuple[int, int], hi: tuple[int, int], *, source: str = "engine"
) -> None:
    """Raise :class:`InvalidAudioError` unless ``lo <= shape <= hi`` on both axes (batch, samples)."""
    b, n = shape
    if not lo[1] <= n <= hi[1]:
        raise InvalidAudioError(
            f"{source}: expected windows of {lo[1]}..{hi[1]} samples (the engine's optimisation profile), "
            f"given {n} samples"
        )
    if not lo[0] <= b <= hi[0]:
        raise InvalidAudioError(
            f"{source}: expected a batch of {lo[0]}..{hi[0]} windows (the engine's optimisation profile), "
            f"given {b}"
        )


@dataclass(frozen=True)
class EngineIO:
    """The ``audio`` / ``logits`` tensors of a deserialised engine and its profile-0 range."""

    input_name: str
    output_name: str
    profile_min: tuple[int, int]
    profile_opt: tuple[int, int]
    profile_max: tuple[int, int]

    @classmethod
    def from_engine(cls, engine: Any, trt: Any, *, source: str = "engine") -> EngineIO:
        """Read the IO tensors through the TensorRT 10 tensor-name API and check them against contract B."""
        inputs: list[tuple[str, list[int | str | None]]] = []
        outputs: list[tuple[str, list[int | str | None]]] = []
        dtypes = {}
        for i in range(int(engine.num_io_tensors)):
            name = engine.get_tensor_name(i)
            dims: list[int | str | None] = [int(d) for d in engine.get_tensor_shape(name)]
            dtypes[name] = engine.get_tensor_dtype(name)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                inputs.append((name, dims))
            else:
                outputs.append((name, dims))
        check_graph_signature(inputs, outputs, source=source)
        for name in ("audio", "logits"):
            if dtypes[name] != trt.DataType.FLOAT:
                raise ModelLoadError(
                    f"{source}: the manifest disagrees with the engine: expected tensor '{name}' of type "
                    "FLOAT "
                    f"(float32 I/O; fp16/int8 belong inside the engine), given {dtypes[name]}"
                )
        if int(engine.num_optimization_profiles) < 1:
            raise ModelLoadError(
                f"{source}: the engine has no optimisation profile for its dynamic 'audio' input"
            )
        lo, opt, hi = (tuple(int(v) for v in s) for s in engine.get_tensor_profile_shape("audio", 0))
        if len(lo) != 2 or len(opt) != 2 or len(hi) != 2:
            raise ModelLoadError(f"{source}: expected a rank-2 profile for 'audio', given {lo}, {opt}, {hi}")
        return cls("audio", "logits", (lo[0], lo[1]), (opt[0], opt[1]), (hi[0], hi[1]))


class _Worker:
    """Per-thread execution context, CUDA stream and buffers."""

    def __init__(self, engine: Any, io: EngineIO, cudart: Any, device_id: int) -> None:
        self.cudart = cudart
        _cuda_call(cudart.cudaSetDevice(device_id), "cudaSetDevice")
        self.context = engine.create_execution_context()
        if self.context is None:
            raise BackendUnavailableError(
                "TensorRT could not create an execution context (out of GPU memory?)"
            )
        self.stream = _cuda_call(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.n_in = io.profile_max[0] * io.profile_max[1]
        self.n_out = io.profile_max[0] * 2
        self.h_in_ptr = _cuda_call(cudart.cudaMallocHost(self.n_in * 4), "cudaMallocHost")
        self.h_out_ptr = _cuda_call(cudart.cudaMallocHost(self.n_out * 4), "cudaMallocHost")
        self.d_in = _cuda_call(cudart.cudaMalloc(self.n_in * 4), "cudaMalloc")
        self.d_out = _cuda_call(cudart.cudaMalloc(self.n_out * 4), "cudaMalloc")
        fp = ctypes.POINTER(ctypes.c_float)
        self.h_in = np.ctypeslib.as_array(ctypes.cast(int(self.h_in_ptr), fp), (self.n_in,))
        self.h_out = np.ctypeslib.as_array(ctypes.cast(int(self.h_out_ptr), fp), (self.n_out,))
        self.context.set_optimization_profile_async(0, self.stream)
        self.context.set_tensor_address(io.input_name, int(self.d_in))
        self.context.set_tensor_address(io.output_name, int(self.d_out))

    def free(self) -> None:
        c = self.cudart
        for ptr in (self.d_in, self.d_out):
            c.cudaFree(ptr)
        for ptr in (self.h_in_ptr, self.h_out_ptr):
            c.cudaFreeHost(ptr)
        c.cudaStreamDestroy(self.stream)
        self.context = None


class TensorRTBackend:
    """Runs a serialised TensorRT engine; safe to share across threads (one context per thread)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        manifest: Manifest,
        *,
        device_id: int = 0,
        options: TensorRTOptions | None = None,
    ) -> None:
        self._path = Path(path)
        src = str(self._path)
        if manifest.engine is None:
            raise ModelLoadError(f"{src}: the manifest has no 'engine' block (needed for a TensorRT engine)")
        trt = import_tensorrt()
        cudart = import_cudart()
        cc, gpu = running_gpu(cudart, device_id)
        check_engine_compatibility(
            manifest.engine,
            tensorrt_version=str(trt.__version__),
            compute_capability=cc,
            gpu_name=gpu,
            source=src,
        )
        try:
            data = self._path.read_bytes()
        except OSError as exc:
            raise ModelLoadError(f"{src}: cannot read the engine ({exc.strerror or exc})") from exc
        self._trt_logger = trt.Logger(trt.Logger.ERROR)
        self._runtime = trt.Runtime(self._trt_logger)
        if manifest.engine.version_compatible:
            self._runtime.engine_host_code_allowed = True
        _cuda_call(cudart.cudaSetDevice(device_id), "cudaSetDevice")
        engine = self._runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise ModelLoadError(
                f"{src}: TensorRT {trt.__version__} could not deserialise the engine (corrupt file, or "
                "built with "
                f"other options than the sidecar says: {manifest.engine})"
            )
        self._engine = engine
        self._io = EngineIO.from_engine(engine, trt, source=src)
        side = manifest.engine
        if (self._io.profile_min, self._io.profile_max) != (side.profile_min, side.profile_max):
            raise ModelLoadError(
                f"{src}: the sidecar disagrees with the engine: sidecar profile "
                f"{side.profile_min}..{side.profile_max}, "
                f"engine profile {self._io.profile_min}..{self._io.profile_max}"
            )
        self._cudart = cudart
        self._device_id = device_id
        self._gpu = f"{gpu} (sm {cc})"
        self._local = threading.local()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._limits = InputLimits(
            max_batch=self._io.profile_max[0],
            min_samples=self._io.profile_min[1],
            max_samples=self._io.profile_max[1],
        )
        logger.info("spoofsdk: TensorRT %s engine %s on %s", trt.__version__, src, self._gpu)

    @property
    def name(self) -> str:
        return "tensorrt"

    @property
    def detail(self) -> str:
        return f"TensorRT runtime, {self._gpu}, device {self._device_id}"

    @property
    def limits(self) -> InputLimits:
        return self._limits

    @property
    def io(self) -> EngineIO:
        return self._io

    def _worker(self) -> _Worker:
        w: _Worker | None = getattr(self._local, "worker", None)
        if w is None:
            w = _Worker(self._engine, self._io, self._cudart, self._device_id)
            self._local.worker = w
            with self._lock:
                self._workers.append(w)
        return w

    def run(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        b, n = batch.shape
        check_profile_shape((b, n), self._io.profile_min, self._io.profile_max, source=str(self._path))
        w = self._worker()
        c = self._cudart
        np.copyto(w.h_in[: b * n], batch.reshape(-1))
        if not w.context.set_input_shape(self._io.input_name, (b, n)):
            raise InvalidAudioError(f"{self._path}: TensorRT rejected input shape {(b, n)}")
        h2d = c.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = c.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _cuda_call(c.cudaMemcpyAsync(w.d_in, w.h_in_ptr, b * n * 4, h2d, w.stream), "cudaMemcpyAsync")
        if not w.context.execute_async_v3(w.stream):
            raise BackendUnavailableError(
                f"{self._path}: TensorRT execute_async_v3 failed for shape {(b, n)}"
            )
        _cuda_call(c.cudaMemcpyAsync(w.h_out_ptr, w.d_out, b * 2 * 4, d2h, w.stream), "cudaMemcpyAsync")
        _cuda_call(c.cudaStreamSynchronize(w.stream), "cudaStreamSynchronize")
        return w.h_out[: b * 2].reshape(b, 2).copy()

    def close(self) -> None:
        with self._lock:
            workers, self._workers = self._workers, []
        for w in workers:
            w.free()
