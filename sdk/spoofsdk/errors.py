"""The exception hierarchy of spoofsdk.

Every error the SDK raises derives from :class:`SpoofError`. Errors caused by the caller's
input also derive from the matching built-in (``ValueError``, ``OSError``, ``RuntimeError``)
so that generic handlers keep working. Messages say what was expected and what was given.
"""

from __future__ import annotations

__all__ = [
    "AudioFileError",
    "BackendUnavailableError",
    "BufferOverflowError",
    "DeadlineExceededError",
    "EngineIncompatibleError",
    "InvalidArgumentError",
    "InvalidAudioError",
    "ModelLoadError",
    "ModelNotReadyError",
    "NativeError",
    "NativeStateError",
    "OverloadError",
    "RemoteInferenceError",
    "SchedulerClosedError",
    "ServerUnavailableError",
    "SessionClosedError",
    "ShapeMismatchError",
    "SpoofError",
]


class SpoofError(Exception):
    """Base class of every spoofsdk error.

    ``code`` is the C ``spoof_status`` when the error was raised by the native front end,
    else ``None``.
    """

    code: int | None = None


class InvalidAudioError(SpoofError, ValueError):
    """Audio the SDK cannot score: wrong dtype or shape, NaN/Inf, empty, unsupported rate."""


class AudioFileError(InvalidAudioError, OSError):
    """An audio file that cannot be read: missing, a directory, empty, truncated, corrupt, unknown format.

    The message starts with the file name and says what is wrong (``"x.wav: empty file (0 bytes)"``); the
    error of the underlying reader (``soundfile.LibsndfileError``, ``OSError``) is kept as ``__cause__``.
    It is an :class:`InvalidAudioError` (a ``ValueError``) and an ``OSError``: both kinds of handler catch it.
    """


class InvalidArgumentError(SpoofError, ValueError):
    """An option or argument outside its valid range."""


class ModelLoadError(SpoofError, OSError):
    """A model file that is missing, truncated, corrupt, or whose manifest is missing or inconsistent."""


class EngineIncompatibleError(ModelLoadError):
    """A TensorRT engine built for another GPU, TensorRT version or platform."""


class BackendUnavailableError(SpoofError, RuntimeError):
    """An explicitly requested backend that cannot run on this machine."""


class SessionClosedError(SpoofError, RuntimeError):
    """An operation on a streaming session that was already closed."""


class SchedulerClosedError(SessionClosedError):
    """Work submitted to a :class:`~spoofsdk.scheduler.BatchScheduler` that was shut down."""


class OverloadError(SpoofError, RuntimeError):
    """Back-pressure: the batching scheduler's queue stayed full past the caller's timeout.

    The work was not accepted; the caller may retry later or shed the call.
    """


class RemoteInferenceError(SpoofError, RuntimeError):
    """Inference on a remote model (a Triton server) failed; the subclasses say why.

    Nothing falls back to local inference: the windows of the failed request are not scored.
    """


class ServerUnavailableError(RemoteInferenceError, BackendUnavailableError):
    """The server could not be reached (refused, reset, no route) after the bounded retries."""


class ModelNotReadyError(RemoteInferenceError, ModelLoadError):
    """The server is up but the model is not on it, or not ready (loading, unloaded, failed to load)."""


class DeadlineExceededError(RemoteInferenceError, TimeoutError):
    """A request got no answer within its deadline (``RemoteOptions.timeout_s``); it is not retried."""


class ShapeMismatchError(RemoteInferenceError, ModelLoadError):
    """The server rejected a request's shape, or answered with logits of another shape than ``[batch, 2]``."""


class NativeError(SpoofError, RuntimeError):
    """An error reported by the native front end; ``code`` is the C ``spoof_status``."""

    def __init__(self, message: str, code: int = 7) -> None:
        super().__init__(message)
        self.code: int | None = code


class BufferOverflowError(NativeError):
    """The ring buffer is full under the ``"error"`` overflow policy; nothing was written."""


class NativeStateError(NativeError):
    """A native call made in the wrong state (e.g. push after flush without reset)."""
