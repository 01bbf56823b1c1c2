"""Typed errors of spoof_export and the exit codes ``spoof-export`` maps them to.

Every error derives from :class:`ExportError` and from the built-in a caller would expect
(``ValueError`` for bad arguments, data or failed validation, ``OSError`` for unreadable checkpoints,
``RuntimeError`` for a missing toolchain or a failed engine build). Each class carries the process exit
code the CLI returns for it, so scripts can tell a failed validation from a missing GPU.

===========  ===============================  ===================================================
exit code    error                            meaning
===========  ===============================  ===================================================
0            (none)                           every requested artifact written and validated
1            :class:`ExportError`             unexpected failure inside the exporter
2            :class:`ExportArgumentError`     bad flag or combination (incl. ``--layers`` out of range)
3            :class:`ValidationError`         an artifact disagrees with the stage before it
4            :class:`ToolchainUnavailableError`  TensorRT / CUDA / GPU missing for ``--engine``
5            :class:`CheckpointLoadError`     checkpoint missing, corrupt or inconsistent
5            :class:`ModelFileError`          model file (``calibrate``) missing, unreadable, no manifest
6            :class:`CalibrationError`        calibration / dev set empty, too small or unreadable, or no
                                             score calibration can be fitted on the dev set
7            :class:`EngineBuildError`        the graph is not one TensorRT can build, or the build failed
===========  ===============================  ===================================================
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "EXIT_CODES",
    "CalibrationError",
    "CheckpointLoadError",
    "EngineBuildError",
    "ExportArgumentError",
    "ExportError",
    "LayersError",
    "ModelFileError",
    "ShapeError",
    "TensorRTCompatibilityError",
    "ToolchainUnavailableError",
    "ValidationError",
]


class ExportError(Exception):
    """Base class of every error raised by spoof_export."""

    exit_code: ClassVar[int] = 1


class ExportArgumentError(ExportError, ValueError):
    """A keyword of :func:`spoof_export.export` (a ``spoof-export`` flag) has a bad value or combination."""

    exit_code: ClassVar[int] = 2


class LayersError(ExportArgumentError):
    """``layers`` is not between 1 and the number of transformer layers the checkpoint has."""


class ValidationError(ExportError, ValueError):
    """An exported artifact disagrees with the stage it was made from beyond the tolerance.

    ``diffs`` maps each output name to its maximum absolute difference, ``stage`` names the comparison
    (``"torch->onnx"``, ``"onnx->int8"``, ...), ``atol`` is the tolerance that was exceeded.
    """

    exit_code: ClassVar[int] = 3

    def __init__(
        self, message: str, *, stage: str = "", diffs: dict[str, Any] | None = None, atol: float | None = None
    ) -> None:
        super().__init__(message)
        self.stage = stage
        self.diffs = dict(diffs or {})
        self.atol = atol


class ShapeError(ValidationError):
    """An artifact produced outputs of the wrong shape, name or dtype."""


class ToolchainUnavailableError(ExportError, RuntimeError):
    """A requested stage needs a package or device that is not there (TensorRT, CUDA, a GPU)."""

    exit_code: ClassVar[int] = 4


class CheckpointLoadError(ExportError, OSError):
    """The checkpoint directory is missing, corrupt, unsafe or does not match its config."""

    exit_code: ClassVar[int] = 5


class ModelFileError(ExportError, OSError):
    """A model file given to ``spoof-export calibrate`` is missing, unreadable or has no valid manifest."""

    exit_code: ClassVar[int] = 5


class CalibrationError(ExportError, ValueError):
    """The calibration (or dev) set is empty, too small, or its audio cannot be read; or the score
    calibration cannot be fitted on the dev set (too few clips of a class, other labels, scores that rank
    spoofs as bona fide)."""

    exit_code: ClassVar[int] = 6


class EngineBuildError(ExportError, RuntimeError):
    """TensorRT failed to parse or build the network."""

    exit_code: ClassVar[int] = 7


class TensorRTCompatibilityError(EngineBuildError):
    """Offline checks found what TensorRT's ONNX parser cannot build (opset, operator, control flow)."""


EXIT_CODES: dict[str, int] = {
    cls.__name__: cls.exit_code
    for cls in (
        ExportError,
        ExportArgumentError,
        ValidationError,
        ToolchainUnavailableError,
        CheckpointLoadError,
        ModelFileError,
        CalibrationError,
        EngineBuildError,
    )
}
