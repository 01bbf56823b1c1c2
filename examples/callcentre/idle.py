"""Idle timeout for a connection handler without a task per read (``asyncio.wait_for`` creates one).

Servers read a frame every 20 ms per call; wrapping each read in ``wait_for`` costs a task per frame
and, before Python 3.12, can swallow a cancellation that races with a completed read. The watchdog
instead re-arms one timer per ``timeout_s / 4`` and cancels the handler task once nothing was
received for ``timeout_s``; :meth:`IdleWatchdog.read` turns that cancellation into
:class:`asyncio.TimeoutError` and lets every other cancellation (shutdown) through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["IdleWatchdog"]

T = TypeVar("T")


class IdleWatchdog:
    """``timeout_s`` None or <= 0: no timeout (:meth:`read` only awaits)."""

    def __init__(self, timeout_s: float | None) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("IdleWatchdog: expected to be created inside a task")
        self._task = task
        self._loop = asyncio.get_running_loop()
        self.timeout_s = timeout_s if timeout_s is not None and timeout_s > 0 else None
        self.fired = False
        self._last = self._loop.time()
        self._handle: asyncio.TimerHandle | None = None
        if self.timeout_s is not None:
            self._handle = self._loop.call_later(self.timeout_s / 4, self._check)

    def _check(self) -> None:
        assert self.timeout_s is not None
        if self._loop.time() - self._last >= self.timeout_s:
            self.fired = True
            self._handle = None
            self._task.cancel()
        else:
            self._handle = self._loop.call_later(self.timeout_s / 4, self._check)

    def touch(self) -> None:
        self._last = self._loop.time()

    async def read(self, awaitable: Awaitable[T]) -> T:
        """Await one read; mark activity; raise :class:`asyncio.TimeoutError` when the watchdog fired."""
        try:
            value = await awaitable
        except asyncio.CancelledError:
            if self.fired:
                if hasattr(self._task, "uncancel"):  # Python >= 3.11
                    self._task.uncancel()
                raise asyncio.TimeoutError(f"nothing received for {self.timeout_s or 0:g} s") from None
            raise
        self._last = self._loop.time()
        return value

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def __enter__(self) -> IdleWatchdog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
