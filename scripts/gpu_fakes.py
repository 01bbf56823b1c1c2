"""Fakes for the GPU kit's rehearsal (``scripts/gpu-check.sh --rehearse --fake-gpu``).

A fake ``tensorrt`` (TensorRT 10 builder + runtime, tensor-name API) and a fake
``cuda.bindings.runtime`` are put in ``sys.modules``, so the kit's TensorRT items run through the real
code of ``spoof_export.tensorrt.build_engine`` and ``spoofsdk.backends.tensorrt.TensorRTBackend``
(sidecar written and checked before deserialisation, profile checks, one context per thread, pinned
buffers and copies) on a machine without a GPU. The "engine" records the ONNX file it was built from
and "executes" it with ONNX Runtime on the CPU, with "device" memory in host buffers. It proves the
kit's plumbing, nothing about TensorRT or a GPU: results made with it carry ``fake_gpu: true``.
The ORT CUDA and TensorRT execution providers are not faked.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.machinery
import json
import sys
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"SPOOFSDK-FAKE-TRT-ENGINE\n"
FAKE_GPU = ("NVIDIA H100 80GB HBM3 (fake)", (9, 0))
FAKE_TRT_VERSION = "10.16.1.11"


class _TrtEnum(enum.IntEnum):
    """A pybind11 enum of the tensorrt module: an int with a name, printed as ``DataType.HALF``."""

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


# The members the project uses, with TensorRT 10's values (NvInfer.h); tests/gpu/test_tensorrt_fakes.py
# checks every one against the real module wherever it imports.
class NetworkDefinitionCreationFlag(_TrtEnum):
    STRONGLY_TYPED = 1


class MemoryPoolType(_TrtEnum):
    WORKSPACE = 0


class BuilderFlag(_TrtEnum):
    VERSION_COMPATIBLE = 13


class HardwareCompatibilityLevel(_TrtEnum):
    NONE = 0
    AMPERE_PLUS = 1


class TensorIOMode(_TrtEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(_TrtEnum):
    FLOAT = 0
    HALF = 1


class Severity(_TrtEnum):
    """``tensorrt.ILogger.Severity``, also reachable as ``tensorrt.Logger.ERROR`` etc."""

    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


ENUMS = {
    "NetworkDefinitionCreationFlag": NetworkDefinitionCreationFlag,
    "MemoryPoolType": MemoryPoolType,
    "BuilderFlag": BuilderFlag,
    "HardwareCompatibilityLevel": HardwareCompatibilityLevel,
    "TensorIOMode": TensorIOMode,
    "DataType": DataType,
}


class IHostMemory:
    """What ``Builder.build_serialized_network`` returns: library memory behind the buffer protocol, with
    ``nbytes`` and ``dtype``; not ``bytes`` (no ``len``, slicing or ``startswith``). Python < 3.12 cannot give
    a Python class the buffer protocol, so ``bytes(m)`` goes through ``__bytes__`` there."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self.nbytes = len(self._data)
        self.dtype = DataType.FLOAT  # the real one reports UINT8; only nbytes and the bytes are used

    def __bytes__(self) -> bytes:
        return self._data

    def __buffer__(self, flags: int) -> memoryview:  # Python >= 3.12 (PEP 688), as the real class
        return memoryview(self._data)


class ParserError:
    """``OnnxParser.get_error(i)``: an ``IParserError`` object (``code()``, ``desc()``, ``node()``, ...)."""

    def __init__(self, desc: str, *, node: int = -1) -> None:
        self._desc, self._node = desc, node

    def code(self) -> int:
        return 6  # ErrorCode.INVALID_NODE

    def desc(self) -> str:
        return self._desc

    def file(self) -> str:
        return "fake"

    def func(self) -> str:
        return "fake"

    def line(self) -> int:
        return 0

    def node(self) -> int:
        return self._node

    def __str__(self) -> str:
        return self._desc


class _Context:
    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.addr: dict[str, int] = {}
        self.shape: tuple[int, int] | None = None
        self.thread = threading.get_ident()

    def set_optimization_profile_async(self, index: int, stream: Any) -> bool:
        return index == 0

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addr[name] = int(ptr)
        return True

    def set_input_shape(self, name: str, shape: tuple[int, int]) -> bool:
        lo, _, hi = self.engine.profile
        ok = name == "audio" and all(lo[i] <= int(shape[i]) <= hi[i] for i in (0, 1))
        if ok:
            self.shape = (int(shape[0]), int(shape[1]))
        return ok

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        assert self.shape is not None
        return self.shape if name == "audio" else (self.shape[0], 2)

    def execute_async_v3(self, stream: Any) -> bool:
        if threading.get_ident() != self.thread:
            raise RuntimeError("fake TensorRT: an execution context was used from two threads")
        assert self.shape is not None
        b, n = self.shape
        buf = (ctypes.c_float * (b * n)).from_address(self.addr["audio"])
        x = np.ctypeslib.as_array(buf).reshape(b, n).copy()
        y = np.ascontiguousarray(self.engine.session().run(["logits"], {"audio": x})[0], dtype=np.float32)
        ctypes.memmove(self.addr["logits"], y.ctypes.data, y.nbytes)
        return True


class _Engine:
    num_io_tensors = 2
    num_optimization_profiles = 1

    def __init__(self, onnx_path: str, profile: list[list[int]]) -> None:
        self.onnx_path = onnx_path
        self.profile = tuple(tuple(int(v) for v in s) for s in profile)
        self._session: Any = None
        self._lock = threading.Lock()

    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                so = ort.SessionOptions()
                so.log_severity_level = 3
                self._session = ort.InferenceSession(self.onnx_path, so, providers=["CPUExecutionProvider"])
            return self._session

    def get_tensor_name(self, i: int) -> str:
        return ("audio", "logits")[i]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name == "audio" else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (-1, -1) if name == "audio" else (-1, 2)

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType.FLOAT

    def get_tensor_profile_shape(self, name: str, index: int) -> tuple[tuple[int, ...], ...]:
        if name != "audio" or index != 0:
            raise ValueError(f"fake TensorRT: no profile {index} for {name!r}")
        return self.profile

    def create_execution_context(self) -> _Context:
        return _Context(self)


def make_tensorrt() -> types.ModuleType:
    m = types.ModuleType("tensorrt")
    m.__version__ = FAKE_TRT_VERSION  # type: ignore[attr-defined]

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity

        def __init__(self, level: int) -> None:
            self.level = level

    class _Input:
        name = "audio"

    class Network:
        def __init__(self) -> None:
            self.onnx_path: str | None = None

        @property
        def num_inputs(self) -> int:
            return 1 if self.onnx_path else 0

        def get_input(self, i: int) -> _Input:
            return _Input()

    class Profile:
        def __init__(self) -> None:
            self.shapes: list[list[int]] | None = None

        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            if name != "audio":
                raise ValueError(f"fake TensorRT: no input {name!r}")
            self.shapes = [list(lo), list(opt), list(hi)]

    class Cache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return b"fake-timing-cache"

    class Config:
        hardware_compatibility_level = None

        def __init__(self) -> None:
            self.profiles: list[Profile] = []
            self._cache: Cache | None = None

        def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
            MemoryPoolType(pool)

        def add_optimization_profile(self, p: Profile) -> int:
            self.profiles.append(p)
            return len(self.profiles) - 1

        def set_flag(self, flag: BuilderFlag) -> None:
            BuilderFlag(flag)

        def create_timing_cache(self, data: bytes) -> Cache:
            return Cache(bytes(data))

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> bool:
            self._cache = cache
            return True

        def get_timing_cache(self) -> Cache | None:
            return self._cache

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, flags: int) -> Network:
            if flags != 1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED:
                raise ValueError(f"fake TensorRT: expected a strongly typed network, given flags {flags}")
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> IHostMemory | None:
            if not network.onnx_path or not config.profiles or config.profiles[0].shapes is None:
                return None
            doc = {"onnx": network.onnx_path, "profile": config.profiles[0].shapes}
            return IHostMemory(MAGIC + json.dumps(doc).encode())

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: Network, logger: Logger) -> None:
            self.network = network

        def parse_from_file(self, path: str) -> bool:
            import onnx

            onnx.checker.check_model(str(path))
            self.network.onnx_path = str(Path(path).resolve())
            return True

        def get_error(self, i: int) -> ParserError:
            return ParserError("")

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, data: bytes) -> _Engine | None:
            data = bytes(data)
            if not data.startswith(MAGIC):
                return None
            doc = json.loads(data[len(MAGIC) :])
            return _Engine(doc["onnx"], doc["profile"])

    for name, value in {
        "Logger": Logger,
        "Builder": Builder,
        "OnnxParser": OnnxParser,
        "Runtime": Runtime,
        "IHostMemory": IHostMemory,
        "ParserError": ParserError,
        **ENUMS,
    }.items():
        setattr(m, name, value)
    return m


def make_cudart() -> types.ModuleType:
    """``cuda.bindings.runtime``: the calls the SDK and the exporter make, on host memory."""
    m = types.ModuleType("cuda.bindings.runtime")
    buffers: dict[int, Any] = {}
    lock = threading.Lock()
    counter = [0]
    name, (major, minor) = FAKE_GPU

    def alloc(n: int) -> tuple[int, int]:
        buf = ctypes.create_string_buffer(max(1, int(n)))
        addr = ctypes.addressof(buf)
        with lock:
            buffers[addr] = buf
        return (0, addr)

    def free(ptr: int) -> tuple[int]:
        with lock:
            buffers.pop(int(ptr), None)
        return (0,)

    def memcpy(dst: int, src: int, n: int, kind: Any, stream: Any) -> tuple[int]:
        ctypes.memmove(int(dst), int(src), int(n))
        return (0,)

    def stream_create() -> tuple[int, int]:
        with lock:
            counter[0] += 1
            return (0, counter[0])

    props = types.SimpleNamespace(major=major, minor=minor, name=name.encode())
    for attr, value in {
        "cudaGetDeviceCount": lambda: (0, 1),
        "cudaGetDeviceProperties": lambda d: (0, props),
        "cudaSetDevice": lambda d: (0,),
        "cudaStreamCreate": stream_create,
        "cudaStreamDestroy": lambda s: (0,),
        "cudaStreamSynchronize": lambda s: (0,),
        "cudaMallocHost": alloc,
        "cudaMalloc": alloc,
        "cudaFree": free,
        "cudaFreeHost": free,
        "cudaMemcpyAsync": memcpy,
        "cudaMemcpyKind": types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2),
    }.items():
        setattr(m, attr, value)
    return m


def install() -> None:
    """Put the fakes in ``sys.modules``: ``tensorrt``, ``cuda``, ``cuda.bindings[.runtime]``."""
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    runtime = make_cudart()
    bindings.runtime = runtime  # type: ignore[attr-defined]
    cuda.bindings = bindings  # type: ignore[attr-defined]
    modules = {
        "cuda": cuda,
        "cuda.bindings": bindings,
        "cuda.bindings.runtime": runtime,
        "tensorrt": make_tensorrt(),
    }
    for name, module in modules.items():
        # importlib.util.find_spec() (transformers checks what is installed) wants a spec on each.
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.modules.update(modules)
