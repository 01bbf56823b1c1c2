"""Helpers of the examples lane (imported by the tests; conftest puts this folder on sys.path)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def arun(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run a coroutine on a fresh event loop with a hard bound."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def call_audio(seconds: float, seed: int) -> np.ndarray:
    """Deterministic speech-like 8 kHz int16 call audio (different per seed)."""
    from examples.simulate_calls import synth_audio

    return synth_audio("tones", seconds, seed)


def by_kind(events: list[dict[str, Any]], kind: str, call_id: str | None = None) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == kind and (call_id is None or e.get("call_id") == call_id)]


@contextlib.asynccontextmanager
async def running(
    detector: Any,
    kind: str = "audiosocket",
    *,
    config: Any = None,
    scheduler: dict[str, Any] | None = None,
    **server_options: Any,
) -> AsyncIterator[tuple[Any, list[dict[str, Any]]]]:
    """A loopback server (``audiosocket`` or ``media_stream``) on an ephemeral port, and its event list."""
    from examples.callcentre.engine import EngineConfig, ScoringEngine

    cls: Any
    if kind == "audiosocket":
        from examples.asterisk_audiosocket.server import AudioSocketServer

        cls = AudioSocketServer
    else:
        from examples.media_stream_ws.server import MediaStreamServer  # needs websockets

        cls = MediaStreamServer

    events: list[dict[str, Any]] = []
    engine = ScoringEngine(
        detector,
        config=config or EngineConfig(max_calls=32),
        on_event=events.append,
        scheduler_options=scheduler or {"max_wait_ms": 1.0},
    )
    server = cls(engine, port=0, **server_options)
    await server.start()
    try:
        yield server, events
    finally:
        await server.close()
        await engine.shutdown()


try:
    import websockets  # noqa: F401

    HAVE_WEBSOCKETS = True
except ImportError:  # the examples extra is not installed
    HAVE_WEBSOCKETS = False
