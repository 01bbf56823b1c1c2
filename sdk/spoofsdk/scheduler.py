"""`BatchScheduler`: serve many calls from one detector by batching their ready windows.

Each :class:`~spoofsdk.session.StreamingSession` opened with ``scheduler=`` hands the windows its
push completed to the scheduler and waits for their scores; worker threads take the queued windows
of *all* sessions, group equal-length windows (oldest first) into batches of up to ``max_batch`` and
run one inference call per batch on the detector's dynamic batch axis. This is how one CPU or GPU
serves many calls: a batch of 8 windows costs far less than 8 calls of one on a GPU, and amortises
per-call overhead on a CPU.

Back-pressure (documented policy): the queue holds at most ``max_queue`` windows. When a submission
does not fit, ``on_full="block"`` (default) waits up to ``timeout_s`` for room and then raises
:class:`~spoofsdk.errors.OverloadError`; ``on_full="raise"`` raises at once. Nothing is dropped
silently: a rejected push's windows are not scored and the caller is told. Waiting for results is
bounded by the same ``timeout_s``.

Shutdown: :meth:`BatchScheduler.close` stops accepting work (later submissions raise
:class:`~spoofsdk.errors.SchedulerClosedError`), then either scores everything already queued
(``drain=True``, default) or fails it with ``SchedulerClosedError``, and joins the workers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from spoofsdk.errors import InvalidArgumentError, OverloadError, SchedulerClosedError

if TYPE_CHECKING:
    from spoofsdk.detector import Detector
    from spoofsdk.session import StreamingSession

__all__ = ["BatchFuture", "BatchScheduler", "SchedulerStats"]

logger = logging.getLogger("spoofsdk")


class BatchFuture:
    """The pending scores of the windows of one submission."""

    __slots__ = ("_abandoned", "_done", "_error", "_infer_ms", "_lock", "_remaining", "_z")

    def __init__(self, n: int) -> None:
        self._z = np.empty(n, dtype=np.float64)
        self._infer_ms = [0.0] * n
        self._remaining = n
        self._error: BaseException | None = None
        self._abandoned = False
        self._lock = threading.Lock()
        self._done = threading.Event()
        if n == 0:
            self._done.set()

    def _set(self, index: int, z: float, ms: float) -> None:
        with self._lock:
            self._z[index] = z
            self._infer_ms[index] = ms
            self._remaining -= 1
            if self._remaining == 0:
                self._done.set()

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout_s: float | None = None) -> tuple[npt.NDArray[np.float64], list[float]]:
        """(calibrated log-odds per window, inference ms per window); re-raises the batch's error."""
        if not self._done.wait(timeout_s):
            # nobody will read these scores: the scheduler drops the windows still queued instead of
            # spending the overloaded worker on them
            self._abandoned = True
            raise OverloadError(
                f"scheduler: windows not scored within {timeout_s} s (the scheduler is overloaded; "
                "its windows still queued are dropped)"
            )
        if self._error is not None:
            raise self._error
        return self._z, self._infer_ms


@dataclass(frozen=True)
class SchedulerStats:
    batches: int
    windows: int
    mean_batch: float
    largest_batch: int
    queued: int
    max_queued: int
    rejected: int
    abandoned: int = 0  # queued windows dropped because their waiter timed out


class _Item:
    __slots__ = ("future", "index", "length", "samples")

    def __init__(self, future: BatchFuture, index: int, samples: npt.NDArray[np.float32]) -> None:
        self.future = future
        self.index = index
        self.samples = samples
        self.length = int(samples.shape[0])


class BatchScheduler:
    """Batch the ready windows of many streaming sessions into shared inference calls.

    Parameters
    ----------
    detector:
        The shared :class:`~spoofsdk.Detector`.
    max_batch:
        Largest batch per inference call (default ``min(16, detector.max_batch)``).
    max_wait_ms:
        How long a worker waits for a batch to fill once it has work (latency vs batch size).
    max_queue:
        Bound on queued windows (back-pressure, see the module docstring).
    on_full:
        ``"block"`` (wait up to ``timeout_s``, then :class:`OverloadError`) or ``"raise"``.
    timeout_s:
        Bound on waiting for room in the queue and for results.
    num_workers:
        Inference threads (1 suits a CPU whose ORT session already uses every core; 2 overlaps
        transfers and compute on a GPU).
    """

    def __init__(
        self,
        detector: Detector,
        *,
        max_batch: int | None = None,
        max_wait_ms: float = 2.0,
        max_queue: int = 1024,
        on_full: str = "block",
        timeout_s: float = 30.0,
        num_workers: int = 1,
    ) -> None:
        cap = detector.max_batch
        mb = min(16, cap) if max_batch is None else max_batch
        if isinstance(mb, bool) or not isinstance(mb, int) or not 1 <= mb <= cap:
            raise InvalidArgumentError(f"max_batch: expected an integer in [1, {cap}], given {max_batch!r}")
        if not (isinstance(max_queue, int) and max_queue >= mb):
            raise InvalidArgumentError(
                f"max_queue: expected an integer >= max_batch ({mb}), given {max_queue!r}"
            )
        if on_full not in ("block", "raise"):
            raise InvalidArgumentError(f"on_full: expected 'block' or 'raise', given {on_full!r}")
        if not (isinstance(max_wait_ms, (int, float)) and 0 <= max_wait_ms <= 1000):
            raise InvalidArgumentError(f"max_wait_ms: expected 0..1000 ms, given {max_wait_ms!r}")
        if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
            raise InvalidArgumentError(
                f"timeout_s: expected a positive number of seconds, given {timeout_s!r}"
            )
        if not (isinstance(num_workers, int) and 1 <= num_workers <= 64):
            raise InvalidArgumentError(f"num_workers: expected an integer in [1, 64], given {num_workers!r}")
        self._det = detector
        self._max_batch = mb
        self._max_wait = max_wait_ms / 1000.0
        self._max_queue = max_queue
        self._on_full = on_full
        self._timeout = float(timeout_s)
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._drain = True
        self._batches = 0
        self._windows = 0
        self._largest = 0
        self._max_queued = 0
        self._rejected = 0
        self._abandoned = 0
        self._workers = [
            threading.Thread(target=self._run, name=f"spoofsdk-scheduler-{i}", daemon=True)
            for i in range(num_workers)
        ]
        for t in self._workers:
            t.start()

    @property
    def detector(self) -> Detector:
        return self._det

    @property
    def max_batch(self) -> int:
        return self._max_batch

    @property
    def closed(self) -> bool:
        return self._closing

    def stream(self, sample_rate: int = 16000, **kwargs: Any) -> StreamingSession:
        """``detector.stream(sample_rate, scheduler=self, **kwargs)``."""
        return self._det.stream(sample_rate, scheduler=self, **kwargs)

    # ------------------------------------------------------------------ submission
    def submit(self, windows: Sequence[npt.NDArray[np.float32]]) -> BatchFuture:
        """Queue model-rate windows for scoring; returns a :class:`BatchFuture` (see back-pressure policy)."""
        k = len(windows)
        future = BatchFuture(k)
        if k == 0:
            return future
        if k > self._max_queue:
            raise InvalidArgumentError(
                f"submit: expected at most max_queue={self._max_queue} windows, given {k}"
            )
        items = [_Item(future, i, np.ascontiguousarray(w, dtype=np.float32)) for i, w in enumerate(windows)]
        with self._cond:
            if self._closing:
                raise SchedulerClosedError("submit: the batching scheduler is shut down")
            if len(self._queue) + k > self._max_queue:
                if self._on_full == "raise":
                    self._rejected += 1
                    raise OverloadError(
                        f"submit: scheduler queue full ({len(self._queue)} of {self._max_queue} windows "
                        "queued, "
                        f"{k} submitted); on_full='raise'"
                    )
                deadline = time.monotonic() + self._timeout
                while len(self._queue) + k > self._max_queue and not self._closing:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._rejected += 1
                        raise OverloadError(
                            f"submit: scheduler queue stayed full for {self._timeout} s ({len(self._queue)} "
                            "of "
                            f"{self._max_queue} windows queued, {k} submitted)"
                        )
                    self._cond.wait(remaining)
                if self._closing:
                    raise SchedulerClosedError(
                        "submit: the batching scheduler shut down while waiting for room"
                    )
            self._queue.extend(items)
            self._max_queued = max(self._max_queued, len(self._queue))
            self._cond.notify_all()
        return future

    def infer(
        self, windows: Sequence[npt.NDArray[np.float32]]
    ) -> tuple[npt.NDArray[np.float64], list[float]]:
        """Submit and wait: (calibrated log-odds, inference ms) per window, in order."""
        return self.submit(windows).result(self._timeout)

    # ------------------------------------------------------------------ workers
    def _take(self) -> list[_Item] | None:
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            if not self._closing and len(self._queue) < self._max_batch and self._max_wait > 0:
                deadline = time.monotonic() + self._max_wait
                while len(self._queue) < self._max_batch and not self._closing:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            if not self._queue:
                return None if self._closing else []
            if self._closing and not self._drain:
                items = list(self._queue)
                self._queue.clear()
                self._cond.notify_all()
                for it in items:
                    it.future._fail(
                        SchedulerClosedError("the batching scheduler was shut down before scoring")
                    )
                return []
            live = deque(it for it in self._queue if not it.future._abandoned)
            if len(live) < len(self._queue):
                self._abandoned += len(self._queue) - len(live)
                self._queue = live
                self._cond.notify_all()  # room for blocked submitters
                if not live:
                    return []
            length = self._queue[0].length
            take: list[_Item] = []
            keep: deque[_Item] = deque()
            for it in self._queue:
                if len(take) < self._max_batch and it.length == length:
                    take.append(it)
                else:
                    keep.append(it)
            self._queue = keep
            self._cond.notify_all()
            return take

    def _run(self) -> None:
        while True:
            items = self._take()
            if items is None:
                return
            if not items:
                continue
            t0 = time.perf_counter()
            try:
                z = self._det.infer_logits([it.samples for it in items], max_batch=self._max_batch)
            except Exception as exc:
                logger.warning("spoofsdk: scheduler batch of %d windows failed: %s", len(items), exc)
                for it in items:
                    it.future._fail(exc)
                continue
            ms = (time.perf_counter() - t0) * 1000.0
            with self._cond:
                self._batches += 1
                self._windows += len(items)
                self._largest = max(self._largest, len(items))
            for it, zi in zip(items, z, strict=True):
                it.future._set(it.index, float(zi), ms)

    # ------------------------------------------------------------------ lifecycle
    def stats(self) -> SchedulerStats:
        with self._cond:
            return SchedulerStats(
                batches=self._batches,
                windows=self._windows,
                mean_batch=self._windows / self._batches if self._batches else 0.0,
                largest_batch=self._largest,
                queued=len(self._queue),
                max_queued=self._max_queued,
                rejected=self._rejected,
                abandoned=self._abandoned,
            )

    def close(self, *, drain: bool = True, timeout_s: float | None = None) -> None:
        """Stop accepting work; score (``drain=True``) or fail what is queued; join the workers."""
        with self._cond:
            self._closing = True
            self._drain = drain
            self._cond.notify_all()
        for t in self._workers:
            if t is not threading.current_thread():
                t.join(timeout_s)

    def __enter__(self) -> BatchScheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort: never leave worker threads behind
        try:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
        except Exception:
            pass
