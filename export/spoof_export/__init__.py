"""spoof_export: turn spoof_train checkpoints into ONNX / int8 / TensorRT model files.

The public entry point is :func:`export` (``spoof-export`` on the command line); errors and their
exit codes are in :mod:`spoof_export.errors`. Heavy packages (torch, onnx, onnxruntime, tensorrt) are
imported inside the functions that need them.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

from spoof_export.api import ExportResult, export
from spoof_export.errors import (
    EXIT_CODES,
    CalibrationError,
    CheckpointLoadError,
    EngineBuildError,
    ExportArgumentError,
    ExportError,
    LayersError,
    ModelFileError,
    ShapeError,
    TensorRTCompatibilityError,
    ToolchainUnavailableError,
    ValidationError,
)

try:
    __version__ = _dist_version("spoofsdk")
except PackageNotFoundError:  # pragma: no cover - source tree without install
    __version__ = "0+unknown"

__all__ = [
    "EXIT_CODES",
    "CalibrationError",
    "CheckpointLoadError",
    "EngineBuildError",
    "ExportArgumentError",
    "ExportError",
    "ExportResult",
    "LayersError",
    "ModelFileError",
    "ShapeError",
    "TensorRTCompatibilityError",
    "ToolchainUnavailableError",
    "ValidationError",
    "__version__",
    "export",
]
