"""BatchScheduler: many concurrent calls batched into shared inference, back-pressure, shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest
from sdk_models import requires_native

from spoofsdk import BatchScheduler, Detector
from spoofsdk.errors import InvalidArgumentError, InvalidAudioError, OverloadError, SchedulerClosedError

SR = 16000


class _SlowDetector:
    """Stands in for a Detector whose inference blocks until released (to fill the queue)."""

    max_batch = 4

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.batches: list[int] = []

    def infer_logits(self, windows: Sequence[np.ndarray], *, max_batch: int | None = None) -> np.ndarray:
        self.started.set()
        assert self.release.wait(10)
        self.batches.append(len(windows))
        return np.array([float(w[0]) for w in windows])


@requires_native
def test_64_concurrent_calls(detector: Detector, speechlike: np.ndarray) -> None:
    """64 calls push 20 ms frames from 64 threads; every window is scored once, reaches its own call,
    and equals unbatched scoring."""
    rng = np.random.default_rng(11)
    calls = [
        (speechlike[: int(rng.integers(8000, speechlike.size))] * rng.uniform(0.1, 1.0)).astype(np.float32)
        for _ in range(64)
    ]
    expected = [detector.score(c, SR) for c in calls]
    finals: dict[int, object] = {}
    pushed: dict[int, list[object]] = {}
    errors: list[BaseException] = []
    with BatchScheduler(detector, max_batch=16, max_wait_ms=5.0) as sched:
        barrier = threading.Barrier(64)

        def call(i: int) -> None:
            try:
                with sched.stream(SR, encoding="float32") as sess:
                    barrier.wait()
                    got = []
                    for k in range(0, calls[i].size, 320):
                        got += sess.push(calls[i][k : k + 320])
                    pushed[i] = got
                    finals[i] = sess.flush()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        stats = sched.stats()
    assert not errors, errors[:3]
    total = 0
    for i in range(64):
        final, ref = finals[i], expected[i]
        assert [(w.start_s, w.end_s) for w in final.windows] == [(w.start_s, w.end_s) for w in ref.windows]
        np.testing.assert_allclose(
            [w.logit for w in final.windows], [w.logit for w in ref.windows], atol=1e-5
        )
        assert tuple(pushed[i]) == final.windows[: len(pushed[i])]
        total += len(final.windows)
    assert stats.windows == total  # each window scored exactly once
    assert stats.batches < total  # and batched across calls
    assert stats.largest_batch > 1
    assert stats.queued == 0


def test_back_pressure_raise_and_block() -> None:
    det = _SlowDetector()
    w = [np.full(10, 1.0, np.float32)]
    sched = BatchScheduler(det, max_batch=4, max_queue=4, on_full="raise", max_wait_ms=0)  # type: ignore[arg-type]
    first = sched.submit(w)
    assert det.started.wait(5)  # the worker holds the first window; the queue is empty again
    futures = [sched.submit(w) for _ in range(4)]
    with pytest.raises(OverloadError, match=r"scheduler queue full \(4 of 4 windows queued, 1 submitted\)"):
        sched.submit(w)
    assert sched.stats().rejected == 1
    det.release.set()
    assert first.result(5)[0].tolist() == [1.0]
    assert all(f.result(5)[0].tolist() == [1.0] for f in futures)
    sched.close()

    det2 = _SlowDetector()
    blocking = BatchScheduler(det2, max_batch=4, max_queue=4, timeout_s=0.2, max_wait_ms=0)  # type: ignore[arg-type]
    blocking.submit(w)
    assert det2.started.wait(5)
    for _ in range(4):
        blocking.submit(w)
    t0 = time.monotonic()
    with pytest.raises(OverloadError, match=r"queue stayed full for 0.2 s"):
        blocking.submit(w)
    assert time.monotonic() - t0 >= 0.19
    # room appears while a submitter waits: it gets in
    releaser = threading.Timer(0.05, det2.release.set)
    releaser.start()
    blocking._timeout = 5.0
    blocking.submit(w).result(5)
    blocking.close()


def test_windows_whose_waiter_timed_out_are_dropped_not_inferred() -> None:
    """An overloaded scheduler must not spend its worker on scores nobody waits for any more."""
    det = _SlowDetector()
    sched = BatchScheduler(det, max_batch=4, max_queue=64, max_wait_ms=0)  # type: ignore[arg-type]
    running = sched.submit([np.full(10, 1.0, np.float32)])
    assert det.started.wait(5)
    late = sched.submit([np.full(10, 2.0, np.float32)] * 3)
    with pytest.raises(OverloadError, match=r"not scored within 0.05 s.*still queued are dropped"):
        late.result(0.05)
    kept = sched.submit([np.full(10, 3.0, np.float32)])
    det.release.set()
    assert running.result(5)[0].tolist() == [1.0]
    assert kept.result(5)[0].tolist() == [3.0]
    stats = sched.stats()
    assert stats.abandoned == 3
    assert stats.windows == 2  # the abandoned windows never reached the model
    assert det.batches == [1, 1]
    sched.close()


def test_shutdown_drain_and_cancel() -> None:
    det = _SlowDetector()
    sched = BatchScheduler(det, max_batch=4, max_queue=64, max_wait_ms=0)  # type: ignore[arg-type]
    running = sched.submit([np.full(10, 2.0, np.float32)])
    assert det.started.wait(5)
    queued = sched.submit([np.full(10, 3.0, np.float32)] * 3)
    closer = threading.Thread(target=sched.close, kwargs={"drain": False})
    closer.start()
    time.sleep(0.05)
    det.release.set()
    closer.join(5)
    assert running.result(5)[0].tolist() == [2.0]
    with pytest.raises(SchedulerClosedError, match="shut down before scoring"):
        queued.result(5)
    with pytest.raises(SchedulerClosedError, match="the batching scheduler is shut down"):
        sched.submit([np.zeros(10, np.float32)])

    det2 = _SlowDetector()
    det2.release.set()
    sched2 = BatchScheduler(det2, max_batch=4, max_wait_ms=50)  # type: ignore[arg-type]
    futs = [sched2.submit([np.full(10, float(i), np.float32)]) for i in range(10)]
    sched2.close(drain=True)
    assert [f.result(1)[0][0] for f in futs] == list(range(10))
    assert sum(det2.batches) == 10
    assert max(det2.batches) <= 4
    assert not any(t.is_alive() for t in sched2._workers)


def test_groups_equal_lengths() -> None:
    det = _SlowDetector()
    det.release.set()
    sched = BatchScheduler(det, max_batch=4, max_wait_ms=200)  # type: ignore[arg-type]
    fut = sched.submit([np.full(n, float(n), np.float32) for n in (10, 20, 10, 20, 10)])
    z, ms = fut.result(5)
    sched.close()
    assert z.tolist() == [10.0, 20.0, 10.0, 20.0, 10.0]  # order preserved per submission
    assert sorted(det.batches) == [2, 3]  # one batch per window length
    assert len(ms) == 5


@requires_native
def test_errors_reach_the_submitter(detector: Detector) -> None:
    with BatchScheduler(detector) as sched:
        with pytest.raises(InvalidAudioError, match="expected at least 400 samples"):
            sched.infer([np.zeros(100, np.float32)])
        assert sched.infer([np.zeros(1000, np.float32)])[0].shape == (1,)  # the worker survived


@requires_native
def test_bad_scheduler_arguments(detector: Detector, tiny_model: object) -> None:
    for kwargs, match in [
        ({"max_batch": 0}, r"max_batch: expected an integer in \[1, "),
        ({"max_batch": 8, "max_queue": 4}, r"max_queue: expected an integer >= max_batch \(8\)"),
        ({"on_full": "drop"}, "on_full: expected 'block' or 'raise', given 'drop'"),
        ({"timeout_s": 0}, "timeout_s: expected a positive number of seconds"),
        ({"num_workers": 0}, r"num_workers: expected an integer in \[1, 64\]"),
        ({"max_wait_ms": -1}, "max_wait_ms: expected 0..1000 ms"),
    ]:
        with pytest.raises(InvalidArgumentError, match=match):
            BatchScheduler(detector, **kwargs)  # type: ignore[arg-type]
    other = Detector(tiny_model, backend="cpu", num_threads=1, speech_gate=False)  # type: ignore[arg-type]
    with BatchScheduler(other) as sched, pytest.raises(InvalidArgumentError, match="same Detector"):
        detector.stream(SR, scheduler=sched)
