"""A fake ``tensorrt`` + ``cuda.bindings.runtime`` pair that runs the tiny detector on the host.

It implements only what :mod:`spoofsdk.backends.tensorrt` calls (TensorRT 10 tensor-name API and the
cuda-python runtime calls), with "device" memory in host ctypes buffers, so that the TensorRT
runtime backend's own logic (compatibility before deserialisation, profile checks, per-thread
contexts, pinned buffers, copies, cleanup) runs offline. It proves nothing about real TensorRT:
tests/gpu does that.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from sdk_models import reference_logits

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from gpu_fakes import DataType, Severity, TensorIOMode  # TensorRT 10 enum values

ENGINE_BYTES = b"FAKE-TRT-ENGINE"


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.addr: dict[str, int] = {}
        self.shape: tuple[int, int] | None = None
        self.thread = threading.get_ident()
        self.executions = 0

    def set_optimization_profile_async(self, index: int, stream: Any) -> bool:
        return index == 0

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addr[name] = ptr
        return True

    def set_input_shape(self, name: str, shape: tuple[int, int]) -> bool:
        lo, _, hi = self.engine.profile
        ok = name == "audio" and all(lo[i] <= shape[i] <= hi[i] for i in (0, 1))
        if ok:
            self.shape = (int(shape[0]), int(shape[1]))
        return ok

    def execute_async_v3(self, stream: Any) -> bool:
        assert threading.get_ident() == self.thread, "an execution context used from two threads"
        assert self.shape is not None
        b, n = self.shape
        x = np.ctypeslib.as_array((ctypes.c_float * (b * n)).from_address(self.addr["audio"])).reshape(b, n)
        y = reference_logits(x).astype(np.float32)
        ctypes.memmove(self.addr["logits"], y.ctypes.data, y.nbytes)
        self.executions += 1
        return True


class FakeEngine:
    def __init__(
        self,
        *,
        names: tuple[str, str] = ("audio", "logits"),
        dtype: str = "FLOAT",  # a DataType member's name
        profile: tuple[tuple[int, int], ...] = ((1, 400), (4, 16000), (8, 16000)),
    ) -> None:
        self.names = names
        self.dtype = DataType[dtype]
        self.profile = profile
        self.num_io_tensors = 2
        self.num_optimization_profiles = 1
        self.contexts: list[FakeContext] = []

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name == self.names[0] else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (-1, -1) if name == self.names[0] else (-1, 2)

    def get_tensor_dtype(self, name: str) -> DataType:
        return self.dtype

    def get_tensor_profile_shape(self, name: str, index: int) -> tuple[tuple[int, int], ...]:
        assert name == self.names[0]
        assert index == 0
        return self.profile

    def create_execution_context(self) -> FakeContext:
        ctx = FakeContext(self)
        self.contexts.append(ctx)
        return ctx


def make_fake_trt(version: str = "10.3.0", engine: FakeEngine | None = None) -> SimpleNamespace:
    state = SimpleNamespace(deserialized=0, engine=engine or FakeEngine())

    class Logger:
        ERROR = Severity.ERROR

        def __init__(self, severity: int) -> None:
            self.severity = severity

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
            state.deserialized += 1
            return state.engine if data == ENGINE_BYTES else None

    return SimpleNamespace(
        __version__=version,
        Logger=Logger,
        Runtime=Runtime,
        TensorIOMode=TensorIOMode,
        DataType=DataType,
        state=state,
    )


def make_fake_cudart(
    *, cc: tuple[int, int] = (8, 7), name: bytes = b"Orin", devices: int = 1
) -> SimpleNamespace:
    buffers: dict[int, Any] = {}
    ops = SimpleNamespace(malloc=0, free=0, streams=0, streams_destroyed=0)

    def alloc(n: int) -> tuple[int, int]:
        buf = ctypes.create_string_buffer(n)
        addr = ctypes.addressof(buf)
        buffers[addr] = buf
        ops.malloc += 1
        return (0, addr)

    def free(ptr: int) -> tuple[int]:
        buffers.pop(ptr)
        ops.free += 1
        return (0,)

    def memcpy(dst: int, src: int, n: int, kind: Any, stream: Any) -> tuple[int]:
        ctypes.memmove(dst, src, n)
        return (0,)

    def stream_create() -> tuple[int, int]:
        ops.streams += 1
        return (0, ops.streams)

    def stream_destroy(s: int) -> tuple[int]:
        ops.streams_destroyed += 1
        return (0,)

    return SimpleNamespace(
        cudaGetDeviceCount=lambda: (0, devices),
        cudaGetDeviceProperties=lambda d: (0, SimpleNamespace(major=cc[0], minor=cc[1], name=name)),
        cudaSetDevice=lambda d: (0,),
        cudaStreamCreate=stream_create,
        cudaStreamDestroy=stream_destroy,
        cudaStreamSynchronize=lambda s: (0,),
        cudaMallocHost=alloc,
        cudaMalloc=alloc,
        cudaFree=free,
        cudaFreeHost=free,
        cudaMemcpyAsync=memcpy,
        cudaMemcpyKind=SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2),
        ops=ops,
        buffers=buffers,
    )
