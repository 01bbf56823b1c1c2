"""`StreamingSession`: score one live call as its audio arrives."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from spoofsdk.audio import as_mono_float, check_sample_rate
from spoofsdk.errors import InvalidArgumentError, InvalidAudioError, NativeStateError, SessionClosedError
from spoofsdk.results import Score, WindowScore, check_aggregate

if TYPE_CHECKING:
    from spoofsdk.detector import Detector
    from spoofsdk.scheduler import BatchScheduler

__all__ = ["BYTES_PER_SAMPLE", "ENCODINGS", "LatencySummary", "SessionStats", "StreamingSession"]

ENCODINGS = ("pcm16", "mulaw", "alaw", "float32")
BYTES_PER_SAMPLE = {"pcm16": 2, "mulaw": 1, "alaw": 1, "float32": 4}
_LATENCY_HISTORY = 4096
_STATE_CODE = 5  # SPOOF_ERR_STATE


@dataclass(frozen=True)
class LatencySummary:
    """Milliseconds over the last (up to 4096) windows: count, mean, p50, p95, max."""

    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    max_ms: float

    @classmethod
    def of(cls, values: deque[float]) -> LatencySummary:
        if not values:
            return cls(0, 0.0, 0.0, 0.0, 0.0)
        a = np.fromiter(values, dtype=np.float64)
        return cls(
            int(a.size),
            float(a.mean()),
            float(np.percentile(a, 50)),
            float(np.percentile(a, 95)),
            float(a.max()),
        )


@dataclass(frozen=True)
class SessionStats:
    """Per-session figures.

    ``inference`` is the wall time of the inference call that scored each window (a batched call
    counts once per window it carried); ``push_to_result`` runs from entering :meth:`StreamingSession.push`
    to the window's score being returned (decode + resample + queueing + inference).
    """

    pushes: int
    windows: int
    duration_s: float
    samples_dropped: int
    inference: LatencySummary
    push_to_result: LatencySummary


class StreamingSession:
    """Per-call state: native front end (decoder, resampler, ring buffer, windowing) and window scores.

    Not meant to be shared between threads (one owner at a time; calls are serialised by a lock
    anyway, so misuse cannot corrupt it). Pushing 20 ms frames gives the same windows and scores as
    :meth:`Detector.score` on the whole recording, whatever the frame sizes.
    """

    def __init__(
        self,
        detector: Detector,
        sample_rate: int = 16000,
        *,
        encoding: str = "pcm16",
        aggregate: str | None = None,
        scheduler: BatchScheduler | None = None,
        buffer_s: float | None = None,
        overflow: str = "error",
    ) -> None:
        self._sr = check_sample_rate(sample_rate)
        if encoding not in ENCODINGS:
            raise InvalidArgumentError(f"encoding: expected one of {ENCODINGS}, given {encoding!r}")
        if overflow not in ("error", "drop_oldest"):
            raise InvalidArgumentError(f"overflow: expected 'error' or 'drop_oldest', given {overflow!r}")
        self._det = detector
        self._aggregate = check_aggregate(aggregate or detector.aggregate)
        if scheduler is not None and scheduler.detector is not detector:
            raise InvalidArgumentError(
                "scheduler: expected a BatchScheduler of the same Detector as the session"
            )
        self._scheduler = scheduler
        capacity = 0
        if buffer_s is not None:
            if isinstance(buffer_s, bool) or not isinstance(buffer_s, (int, float)) or not buffer_s > 0:
                raise InvalidArgumentError(
                    f"buffer_s: expected a positive number of seconds, given {buffer_s!r}"
                )
            capacity = round(float(buffer_s) * detector.sample_rate)
            minimum = detector.window_samples + detector.hop_samples
            if capacity < minimum:
                raise InvalidArgumentError(
                    f"buffer_s: expected >= window + hop = {minimum / detector.sample_rate:g} s, given "
                    f"{buffer_s:g} s"
                )
        self._encoding = encoding
        self._fe = detector._new_frontend(
            self._sr, encoding=encoding, capacity_samples=capacity, overflow=overflow
        )
        # Largest push handed to the native front end at once, in bytes of `encoding`: at most one window
        # of model-rate output, so a huge push never overflows the ring buffer (windows are drained between).
        self._chunk_samples = max(1, int(detector.window_samples * self._sr / detector.sample_rate))
        self._lock = threading.Lock()
        self._closed = False
        self._final: Score | None = None
        self._windows: list[WindowScore] = []
        self._pushes = 0
        self._infer_ms: deque[float] = deque(maxlen=_LATENCY_HISTORY)
        self._p2r_ms: deque[float] = deque(maxlen=_LATENCY_HISTORY)

    # ------------------------------------------------------------------ properties
    @property
    def detector(self) -> Detector:
        return self._det

    @property
    def sample_rate(self) -> int:
        return self._sr

    @property
    def encoding(self) -> str:
        return self._encoding

    @property
    def aggregate(self) -> str:
        return self._aggregate

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def flushed(self) -> bool:
        return self._final is not None

    @property
    def windows(self) -> tuple[WindowScore, ...]:
        """Every window scored so far, in time order."""
        return tuple(self._windows)

    # ------------------------------------------------------------------ work
    def _check_open(self, op: str) -> None:
        if self._closed:
            raise SessionClosedError(
                f"{op}: the streaming session is closed; open a new one with detector.stream()"
            )

    def push(self, data: bytes | bytearray | memoryview | npt.NDArray[Any]) -> list[WindowScore]:
        """Append audio; return the windows this push completed (often none), already scored.

        ``data``: bytes in the session's encoding (split anywhere; an incomplete trailing sample waits
        for the next push), or a numpy array (int16 / float32 / float64, see :meth:`Detector.score`).
        """
        t0 = time.perf_counter()
        with self._lock:
            self._check_open("push")
            if self._final is not None:
                raise NativeStateError(
                    "push: the session was flushed (end of call); call reset() to start a new call",
                    _STATE_CODE,
                )
            ready = []
            if isinstance(data, (bytes, bytearray, memoryview)):
                try:
                    mv = memoryview(data).cast("B")
                except TypeError as exc:  # a non-contiguous buffer
                    raise InvalidAudioError(
                        f"push: expected a contiguous bytes-like object ({exc})"
                    ) from None
                step = self._chunk_samples * BYTES_PER_SAMPLE[self._encoding]
                for k in range(0, len(mv), step):
                    self._fe.push(mv[k : k + step], self._encoding)
                    ready.extend(self._fe.windows())
            elif isinstance(data, np.ndarray):
                x = as_mono_float(data, what="push")
                for k in range(0, x.shape[0], self._chunk_samples):
                    part = x[k : k + self._chunk_samples]
                    if part.dtype == np.int16:
                        self._fe.push(part.astype("<i2", copy=False).tobytes(), "pcm16")
                    else:
                        self._fe.push_float(part.astype(np.float32, copy=False))
                    ready.extend(self._fe.windows())
            else:
                raise InvalidAudioError(
                    "push: expected bytes, bytearray, memoryview or a numpy array, given "
                    f"{type(data).__name__}"
                )
            self._pushes += 1
            return self._score(ready, t0)

    def _score(self, ready: list[Any], t0: float) -> list[WindowScore]:
        if not ready:
            return []
        samples = [w.samples for w in ready]
        infer_ms: list[float] = []

        def infer(speech_windows: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.float64]:
            if self._scheduler is not None:
                z, ms = self._scheduler.infer(speech_windows)
                infer_ms.extend(ms)
                return np.asarray(z, dtype=np.float64)
            t1 = time.perf_counter()
            z = self._det.infer_logits(speech_windows)
            infer_ms.extend([(time.perf_counter() - t1) * 1000.0] * len(speech_windows))
            return z

        z, speech = self._det._gate_and_infer(samples, infer)
        scores = self._det._window_scores(ready, z, speech)
        self._windows.extend(scores)
        done = (time.perf_counter() - t0) * 1000.0
        self._infer_ms.extend(infer_ms)
        self._p2r_ms.extend([done] * len(scores))
        return scores

    def flush(self) -> Score:
        """End of call: score the tail (see :meth:`Detector.score`) and return the call's :class:`Score`.

        Idempotent: a second flush returns the same score. Raises :class:`InvalidAudioError` when the
        call had less audio than the model's minimum.
        """
        t0 = time.perf_counter()
        with self._lock:
            self._check_open("flush")
            if self._final is not None:
                return self._final
            if not self._fe.flushed:
                self._fe.flush()
            self._score(self._fe.windows(), t0)
            if not self._windows:
                got = self._fe.stats().samples_out
                raise InvalidAudioError(
                    f"flush: expected at least {self._det.min_samples} samples at the model rate "
                    f"({self._det.min_samples / self._det.sample_rate:.3f} s) in the call, given {got}"
                )
            self._final = Score.from_windows(
                self._windows,
                aggregate=self._aggregate,
                threshold=self._det.threshold,
                duration_s=self._fe.stats().samples_in / self._sr,
            )
            return self._final

    def score_so_far(self) -> Score | None:
        """The aggregate over the windows scored so far (no tail window); ``None`` before any window."""
        with self._lock:
            if not self._windows:
                return None
            return Score.from_windows(
                self._windows,
                aggregate=self._aggregate,
                threshold=self._det.threshold,
                duration_s=self._fe.stats().samples_in / self._sr,
            )

    def reset(self) -> None:
        """Start a new call on the same session (indices restart at 0, scores and latency cleared)."""
        with self._lock:
            self._check_open("reset")
            self._fe.reset()
            self._windows.clear()
            self._final = None
            self._pushes = 0
            self._infer_ms.clear()
            self._p2r_ms.clear()

    def stats(self) -> SessionStats:
        with self._lock:
            self._check_open("stats")
            fs = self._fe.stats()
            return SessionStats(
                pushes=self._pushes,
                windows=len(self._windows),
                duration_s=fs.samples_in / self._sr,
                samples_dropped=fs.samples_dropped,
                inference=LatencySummary.of(self._infer_ms),
                push_to_result=LatencySummary.of(self._p2r_ms),
            )

    def close(self) -> None:
        """Release the native front end. Idempotent; any later call raises :class:`SessionClosedError`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            del self._fe

    def __enter__(self) -> StreamingSession:
        self._check_open("__enter__")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("flushed" if self._final is not None else "open")
        return (
            f"StreamingSession(sample_rate={self._sr}, encoding={self._encoding!r}, "
            f"windows={len(self._windows)}, {state})"
        )
