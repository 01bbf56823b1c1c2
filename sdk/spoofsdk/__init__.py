"""spoofsdk: detect audio deepfakes (voice spoofing) in recordings and live calls."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from pathlib import Path

from spoofsdk.errors import (
    BackendUnavailableError,
    BufferOverflowError,
    EngineIncompatibleError,
    InvalidArgumentError,
    InvalidAudioError,
    ModelLoadError,
    NativeError,
    NativeStateError,
    SessionClosedError,
    SpoofError,
)

try:
    __version__ = _dist_version("spoofsdk")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "BackendUnavailableError",
    "BufferOverflowError",
    "EngineIncompatibleError",
    "InvalidArgumentError",
    "InvalidAudioError",
    "ModelLoadError",
    "NativeError",
    "NativeStateError",
    "SessionClosedError",
    "SpoofError",
    "__version__",
    "native_library_path",
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
