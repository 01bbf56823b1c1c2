"""spoofsdk: detect audio deepfakes (voice spoofing) in recordings and live calls."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from pathlib import Path

from spoofsdk.backends import OrtOptions, TensorRTOptions, available_backends
from spoofsdk.backends.triton import RemoteOptions
from spoofsdk.detector import Detector
from spoofsdk.errors import (
    AudioFileError,
    BackendUnavailableError,
    BufferOverflowError,
    DeadlineExceededError,
    EngineIncompatibleError,
    InvalidArgumentError,
    InvalidAudioError,
    ModelLoadError,
    ModelNotReadyError,
    NativeError,
    NativeStateError,
    OverloadError,
    RemoteInferenceError,
    SchedulerClosedError,
    ServerUnavailableError,
    SessionClosedError,
    ShapeMismatchError,
    SpoofError,
)
from spoofsdk.manifest import Manifest, read_manifest, write_engine_manifest, write_onnx_manifest
from spoofsdk.results import Score, WindowScore
from spoofsdk.scheduler import BatchScheduler
from spoofsdk.session import StreamingSession

try:
    __version__ = _dist_version("spoofsdk")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "AudioFileError",
    "BackendUnavailableError",
    "BatchScheduler",
    "BufferOverflowError",
    "DeadlineExceededError",
    "Detector",
    "EngineIncompatibleError",
    "InvalidArgumentError",
    "InvalidAudioError",
    "Manifest",
    "ModelLoadError",
    "ModelNotReadyError",
    "NativeError",
    "NativeStateError",
    "OrtOptions",
    "OverloadError",
    "RemoteInferenceError",
    "RemoteOptions",
    "SchedulerClosedError",
    "Score",
    "ServerUnavailableError",
    "SessionClosedError",
    "ShapeMismatchError",
    "SpoofError",
    "StreamingSession",
    "TensorRTOptions",
    "WindowScore",
    "__version__",
    "available_backends",
    "native_library_path",
    "read_manifest",
    "write_engine_manifest",
    "write_onnx_manifest",
]


def native_library_path() -> Path:
    """Path of the installed ``libspoof`` shared library (the C ABI), for C and cffi hosts."""
    from spoofsdk import _native

    here = Path(_native.__file__).resolve().parent
    for name in ("libspoof.so", "libspoof.dylib", "spoof.dll"):
        candidate = here / name
        if candidate.is_file():
            return candidate
    raise ModelLoadError(f"libspoof shared library not found next to {here / Path(_native.__file__).name}")
