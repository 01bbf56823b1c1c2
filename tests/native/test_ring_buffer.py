"""_native.RingBuffer: hypothesis property tests against a numpy reference model, and a
two-thread stress test (every sample arrives once, in order, or is counted as dropped)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spoofsdk import BufferOverflowError, InvalidArgumentError, InvalidAudioError, _native


class Model:
    """The reference: a plain array of everything pushed, plus head / dropped counters."""

    def __init__(self, capacity: int, policy: str) -> None:
        self.capacity, self.policy = capacity, policy
        self.data = np.zeros(0, np.float32)
        self.head = 0
        self.dropped = 0

    @property
    def tail(self) -> int:
        return len(self.data)

    def push(self, x: np.ndarray) -> bool:
        if self.tail + len(x) - self.head > self.capacity:
            if self.policy == "error":
                return False
            new_head = self.tail + len(x) - self.capacity
            self.dropped += new_head - self.head
            self.head = new_head
        self.data = np.concatenate([self.data, x])
        return True

    def read_ok(self, start: int, n: int) -> bool:
        return self.head <= start and start + n <= self.tail and n >= 0

    def consume_ok(self, new_head: int) -> bool:
        if new_head > self.tail:
            return False
        return new_head >= self.head or self.policy == "drop_oldest"


ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 40)),
        st.tuples(st.just("read"), st.integers(-3, 40), st.integers(-1, 20)),
        st.tuples(st.just("consume"), st.integers(-3, 40)),
        st.tuples(st.just("pop"), st.integers(0, 25)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 32), policy=st.sampled_from(["error", "drop_oldest"]), program=ops)
def test_matches_numpy_model(capacity: int, policy: str, program: list[tuple[object, ...]]) -> None:
    ring = _native.RingBuffer(capacity, policy)
    model = Model(capacity, policy)
    counter = 0
    for op in program:
        if op[0] == "push":
            n = int(op[1])  # type: ignore[call-overload]
            x = np.arange(counter, counter + n, dtype=np.float32)
            counter += n
            if model.push(x):
                ring.push(x)
            else:
                with pytest.raises(BufferOverflowError, match="nothing was written"):
                    ring.push(x)
                counter -= n
        elif op[0] == "read":
            offset, n = int(op[1]), int(op[2])  # type: ignore[call-overload]
            start = model.head + offset
            if model.read_ok(start, n):
                np.testing.assert_array_equal(ring.read(start, n), model.data[start : start + n])
            else:
                with pytest.raises(InvalidArgumentError):
                    ring.read(start, n)
        elif op[0] == "consume":
            new_head = model.head + int(op[1])  # type: ignore[call-overload]
            if model.consume_ok(new_head):
                ring.consume(new_head)
                model.head = max(model.head, new_head)
            else:
                with pytest.raises(InvalidArgumentError, match=r"new_head must be in \[head, tail\]"):
                    ring.consume(new_head)
        else:
            max_n = int(op[1])  # type: ignore[call-overload]
            start, got = ring.pop(max_n)
            n = min(max_n, model.tail - model.head)
            assert start == model.head
            np.testing.assert_array_equal(got, model.data[model.head : model.head + n])
            model.head += n
        assert (ring.head, ring.tail, ring.dropped, ring.capacity) == (
            model.head,
            model.tail,
            model.dropped,
            capacity,
        )


def test_bad_arguments() -> None:
    for cap in (0, -1, 2**40):
        with pytest.raises(InvalidArgumentError, match=r"capacity must be in \[1, 268435456\]") as info:
            _native.RingBuffer(cap)
        assert info.value.code == 1
    with pytest.raises(InvalidArgumentError, match=r"overflow must be 'error' or 'drop_oldest'; got 'wrap'"):
        _native.RingBuffer(4, "wrap")
    ring = _native.RingBuffer(4)
    with pytest.raises(InvalidAudioError, match="must be finite"):
        ring.push(np.array([np.inf], np.float32))
    with pytest.raises(InvalidArgumentError, match=r"n must be >= 0"):
        ring.read(0, -1)
    with pytest.raises(InvalidArgumentError, match=r"max_n must be >= 0"):
        ring.pop(-1)


@pytest.mark.parametrize(("policy", "capacity"), [("error", 64), ("drop_oldest", 64), ("drop_oldest", 5)])
def test_two_thread_stress(policy: str, capacity: int) -> None:
    total = 200_000
    ring = _native.RingBuffer(capacity, policy)
    done = threading.Event()

    def produce() -> None:
        rng = np.random.default_rng(1)
        pos = 0
        while pos < total:
            n = int(min(rng.integers(1, 50), total - pos))
            try:
                ring.push(np.arange(pos, pos + n, dtype=np.float32))
                pos += n
            except BufferOverflowError:
                done.wait(0.00005)
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    received, expected, gaps = 0, 0, 0
    while True:
        finished = done.is_set()
        start, got = ring.pop(37)
        if got.size == 0:
            if finished and ring.head == ring.tail:
                break
            continue
        assert start >= expected, "samples arrive in order, once"
        gaps += start - expected
        np.testing.assert_array_equal(got, np.arange(start, start + got.size, dtype=np.float32))
        received += got.size
        expected = start + got.size
    producer.join()
    assert received + ring.dropped == total
    assert gaps == ring.dropped
    if policy == "error":
        assert ring.dropped == 0
