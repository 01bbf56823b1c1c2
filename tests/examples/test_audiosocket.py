"""AudioSocket plugin: protocol parsing, per-call scoring, malformed input, concurrency, lifecycle."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from typing import Any

import numpy as np
import pytest
from ex_helpers import arun, by_kind, call_audio, running

from examples.asterisk_audiosocket.protocol import (
    AUDIO_RATES,
    KIND_AUDIO,
    KIND_AUDIO_SLIN12,
    KIND_AUDIO_SLIN16,
    KIND_AUDIO_SLIN192,
    KIND_DTMF,
    KIND_ERROR,
    KIND_HANGUP,
    KIND_UUID,
    Frame,
    ProtocolError,
    encode_frame,
    read_frame,
)
from examples.callcentre.engine import EngineConfig, PendingAudio
from examples.simulate_calls import audiosocket_call
from spoofsdk.errors import InvalidArgumentError

UID = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")


async def _parse(data: bytes, **kw: Any) -> list[Frame | None]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    out: list[Frame | None] = []
    while True:
        f = await read_frame(reader, **kw)
        out.append(f)
        if f is None:
            return out


def test_read_frame_parses_every_kind() -> None:
    audio = np.arange(160, dtype="<i2").tobytes()
    data = b"".join(
        [
            encode_frame(KIND_UUID, UID.bytes),
            encode_frame(KIND_AUDIO, audio),
            encode_frame(KIND_AUDIO_SLIN16, audio),
            encode_frame(KIND_DTMF, b"5"),
            encode_frame(KIND_ERROR, b"\x02"),
            encode_frame(KIND_HANGUP),
        ]
    )
    frames = arun(_parse(data))
    assert frames[-1] is None
    assert [(f.kind, f.payload) for f in frames[:-1] if f is not None] == [
        (KIND_UUID, UID.bytes),
        (KIND_AUDIO, audio),
        (KIND_AUDIO_SLIN16, audio),
        (KIND_DTMF, b"5"),
        (KIND_ERROR, b"\x02"),
        (KIND_HANGUP, b""),
    ]
    assert encode_frame(KIND_AUDIO, b"\x01\x02")[:3] == b"\x10\x00\x02"  # big-endian length


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x42\x00\x00", r"unknown message kind 0x42 \(length 0\): expected one of 0x00"),
        (b"\x01\x00\x0f" + b"u" * 15, r"UUID message: expected a 16-byte payload, given 15 bytes"),
        (b"\x10\x0f\xa0" + b"\0" * 4000, r"audio message of 4000 bytes: expected at most 3200 bytes"),
        (b"\x10\x00\x03abc", r"expected whole 16-bit samples \(an even length\)"),
        (b"\x10\x01", r"truncated message header: expected 3 bytes, given 2"),
        (b"\x10\x01\x40" + b"\0" * 100, r"truncated audio message: expected a 320-byte payload, given 100"),
        (b"\x00\x00\x01x", r"hangup message: expected an empty payload, given 1 bytes"),
        (b"\x03\x00\x02ab", r"DTMF message: expected a 1-byte payload, given 2 bytes"),
    ],
    ids=[
        "bad-kind",
        "uuid-length",
        "oversized",
        "odd-audio",
        "short-header",
        "short-payload",
        "hangup",
        "dtmf",
    ],
)
def test_read_frame_rejects_malformed(data: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        arun(_parse(data))


def test_pending_audio_drops_oldest_whole_frames() -> None:
    p = PendingAudio(1000)
    dropped = [p.put(bytes([i]) * 320, float(i)) for i in range(10)]
    assert p.nbytes == 960
    assert sum(dropped) == p.dropped_bytes == 3200 - 960
    assert p.dropped_frames == 7
    frames = p.take_all()
    assert [f[0][0] for f in frames] == [7, 8, 9]  # the newest frames survive, in order
    assert p.nbytes == 0
    with pytest.raises(
        InvalidArgumentError, match=r"frame of 1001 bytes: expected at most the pending bound"
    ):
        p.put(b"\0" * 1001, 0.0)


def _check_against_offline(
    detector: Any, events: list[dict[str, Any]], call_id: str, pcm: np.ndarray
) -> None:
    ref = detector.score(pcm, sample_rate=8000)
    windows = by_kind(events, "window", call_id)
    assert [w["end_s"] for w in windows] == pytest.approx([w.end_s for w in ref.windows], abs=1e-6)
    assert [w["logit"] for w in windows] == pytest.approx([w.logit for w in ref.windows], rel=1e-4, abs=1e-5)
    assert all(w["latency_ms"] is not None and w["latency_ms"] >= 0 for w in windows)
    (verdict,) = by_kind(events, "verdict", call_id)
    assert verdict["n_windows"] == len(ref.windows)
    assert verdict["spoof_prob"] == pytest.approx(ref.spoof_prob, rel=1e-4, abs=1e-6)
    assert verdict["label"] == ref.label
    assert verdict["duration_s"] == pytest.approx(pcm.size / 8000)
    assert verdict["dropped_s"] == 0.0


def test_call_scores_equal_offline_scoring(detector: Any, caplog: pytest.LogCaptureFixture) -> None:
    pcm = call_audio(3.3, seed=1)

    async def go() -> list[dict[str, Any]]:
        async with running(detector) as (server, events):
            await audiosocket_call("127.0.0.1", server.port, str(UID), pcm, realtime=False)
            return events

    events = arun(go())
    _check_against_offline(detector, events, str(UID), pcm)
    (start,) = by_kind(events, "call_start")
    assert (start["sample_rate"], start["encoding"], start["source"]) == (8000, "pcm16", "audiosocket")
    (verdict,) = by_kind(events, "verdict")
    assert verdict["reason"] == "hangup"
    assert not by_kind(events, "call_error")
    # 20 ms frames: most pushes cannot complete a window and skip the thread pool, and none that
    # was predicted so completed one
    assert verdict["pushes_inline"] >= verdict["pushes"] - 2 * verdict["n_windows"] - 2
    assert "an inline push completed a window" not in caplog.text


def test_concurrent_calls_each_get_their_own_results(detector: Any) -> None:
    calls = {str(uuid.uuid4()): call_audio(2.0 + 0.25 * i, seed=10 + i) for i in range(6)}

    async def go() -> tuple[list[dict[str, Any]], Any]:
        async with running(detector, scheduler={"max_wait_ms": 5.0}) as (server, events):
            await asyncio.gather(
                *(
                    audiosocket_call("127.0.0.1", server.port, cid, pcm, realtime=False)
                    for cid, pcm in calls.items()
                )
            )
            return events, server.engine.scheduler.stats()

    events, stats = arun(go())
    for cid, pcm in calls.items():
        _check_against_offline(detector, events, cid, pcm)
    probs = {by_kind(events, "verdict", cid)[0]["spoof_prob"] for cid in calls}
    assert len(probs) == len(calls)  # different audio, different scores: nothing was mixed up
    assert stats.windows == len(by_kind(events, "window"))  # every window went through the shared scheduler


async def _raw_call(port: int, data: bytes, *, close_after: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    if close_after:
        writer.write_eof()
    rest = await asyncio.wait_for(reader.read(), 10.0)  # the server closes the connection
    writer.close()
    await writer.wait_closed()
    return rest


# 1 s of speech-like audio in 20 ms messages (a detector with speech gating leaves silence or a constant
# signal unscored: "undetermined")
_PCM_1S = call_audio(1.0, seed=9).astype("<i2").tobytes()
AUDIO_1S = b"".join(encode_frame(KIND_AUDIO, _PCM_1S[k : k + 320]) for k in range(0, len(_PCM_1S), 320))


@pytest.mark.parametrize(
    ("tail", "match"),
    [
        (b"\x42\x00\x00", r"unknown message kind 0x42"),
        (b"\x10\x40\x00" + b"\0" * 64, r"audio message of 16384 bytes: expected at most 3200"),
        (b"\x10\x01\x40" + b"\0" * 10, r"truncated audio message"),
        (bytes(range(256)) * 4, r"hangup message: expected an empty payload, given 258 bytes"),
        (encode_frame(KIND_UUID, uuid.uuid4().bytes), r"a second UUID message"),
    ],
    ids=["bad-kind", "oversized", "truncated", "garbage", "second-uuid"],
)
def test_malformed_message_ends_only_that_call(detector: Any, tail: bytes, match: str) -> None:
    good_id, bad_id = str(uuid.uuid4()), str(uuid.uuid4())
    good_pcm = call_audio(1.5, seed=3)

    async def go() -> list[dict[str, Any]]:
        async with running(detector) as (server, events):
            good = asyncio.create_task(
                audiosocket_call("127.0.0.1", server.port, good_id, good_pcm, realtime=True)
            )
            await _raw_call(server.port, encode_frame(KIND_UUID, uuid.UUID(bad_id).bytes) + AUDIO_1S + tail)
            await good
            # the server still takes new calls afterwards
            await audiosocket_call("127.0.0.1", server.port, str(UID), call_audio(1.0, 4), realtime=False)
            return events

    events = arun(go())
    (err,) = by_kind(events, "call_error")
    assert err["call_id"] == bad_id
    assert err["error"] == "ProtocolError"
    assert re.search(match, err["message"]), err["message"]
    (bad_verdict,) = by_kind(events, "verdict", bad_id)
    assert bad_verdict["reason"] == "protocol_error"
    assert bad_verdict["received_s"] == pytest.approx(1.0)  # the audio before the bad message was scored
    assert bad_verdict["n_windows"] >= 1
    for cid in (good_id, str(UID)):
        (v,) = by_kind(events, "verdict", cid)
        assert v["reason"] == "hangup"
        assert v["label"] in ("spoof", "bonafide")


def test_audio_before_uuid_is_rejected(detector: Any, caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> list[dict[str, Any]]:
        async with running(detector) as (server, events):
            await _raw_call(server.port, AUDIO_1S)
            return events

    events = arun(go())
    (err,) = by_kind(events, "call_error")
    assert err["call_id"] is None
    assert "expected a UUID message (kind 0x01) first, given audio" in err["message"]
    assert not by_kind(events, "verdict")
    assert "malformed AudioSocket message" in caplog.text


@pytest.mark.parametrize(
    ("body", "reason", "label", "detail"),
    [
        (AUDIO_1S * 2, "hangup", None, None),  # app_audiosocket closes the socket: a normal hang-up
        (AUDIO_1S + encode_frame(KIND_ERROR, b"\x02"), "asterisk_error_0x02", None, None),
        (
            encode_frame(KIND_AUDIO, b"\0\1" * 40) + encode_frame(KIND_HANGUP),
            "hangup",
            "undetermined",
            r"expected at least 400 samples|no window held speech",  # without / with speech gating
        ),
        (
            encode_frame(KIND_DTMF, b"#") + encode_frame(KIND_HANGUP),
            "hangup",
            "undetermined",
            r"no audio received",
        ),
    ],
    ids=["closed-without-hangup", "asterisk-error", "too-short", "no-audio"],
)
def test_call_endings(detector: Any, body: bytes, reason: str, label: str | None, detail: str | None) -> None:
    async def go() -> list[dict[str, Any]]:
        async with running(detector) as (server, events):
            await _raw_call(server.port, encode_frame(KIND_UUID, UID.bytes) + body)
            return events

    events = arun(go())
    assert not by_kind(events, "call_error")
    (v,) = by_kind(events, "verdict")
    assert v["reason"] == reason
    if label is None:
        assert v["label"] in ("spoof", "bonafide")
        assert v["n_windows"] >= 1
    else:
        assert v["label"] == label
        assert v["spoof_prob"] is None
        assert detail is not None
        assert re.search(detail, v["detail"]), v["detail"]


def test_idle_call_times_out(detector: Any) -> None:
    async def go() -> list[dict[str, Any]]:
        async with running(detector, idle_timeout_s=0.3) as (server, events):
            await _raw_call(server.port, encode_frame(KIND_UUID, UID.bytes) + AUDIO_1S, close_after=False)
            return events

    (v,) = by_kind(arun(go()), "verdict")
    assert v["reason"] == "timeout"
    assert v["n_windows"] >= 1


def test_a_silent_call_is_kept_and_dead_peers_are_left_to_tcp_keepalive(
    detector: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Silence is not a dead peer: chan_audiosocket / ARI externalMedia send nothing while their bridge
    is silent (seen with Asterisk 22.10.1; tests/examples/test_asterisk_real.py), so by default no idle
    timeout ends a call; TCP keepalive on every accepted connection finds a peer that vanished."""
    import socket

    from examples.asterisk_audiosocket.server import AudioSocketServer, build_parser

    assert build_parser().parse_args([]).idle_timeout_s == 0  # the CLI's 0 = never
    seen: list[tuple[int, int, int, int]] = []
    set_keepalive = AudioSocketServer._set_keepalive

    def spy(self: AudioSocketServer, writer: asyncio.StreamWriter) -> None:
        set_keepalive(self, writer)
        sock = writer.get_extra_info("socket")
        seen.append(
            (
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            )
        )

    monkeypatch.setattr(AudioSocketServer, "_set_keepalive", spy)

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
        async with running(detector) as (server, events):
            assert server.idle_timeout_s is None
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(encode_frame(KIND_UUID, UID.bytes) + AUDIO_1S)
            await writer.drain()
            await asyncio.sleep(1.5)  # silence longer than the watchdog's re-arm period of a 1 s timeout
            during = list(events)
            writer.write(AUDIO_1S)
            writer.write_eof()
            await asyncio.wait_for(reader.read(), 10.0)
            writer.close()
            await writer.wait_closed()
            return during, events, server

    during, events, _ = arun(go())
    assert not by_kind(during, "verdict")  # still open after the silence
    (v,) = by_kind(events, "verdict")
    assert v["reason"] == "hangup"
    assert v["received_s"] == pytest.approx(2.0)
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert seen == [(1, 10, 3, 3)]
    with pytest.raises(InvalidArgumentError, match=r"keepalive_s: expected None or at least 1 s, given 0"):
        AudioSocketServer(None, keepalive_s=0)  # type: ignore[arg-type]


def test_shutdown_finishes_active_calls(detector: Any) -> None:
    async def go() -> tuple[list[dict[str, Any]], bytes]:
        async with running(detector) as (server, events):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(encode_frame(KIND_UUID, UID.bytes) + AUDIO_1S * 3)
            await writer.drain()
            while len(by_kind(events, "window")) < 3:  # >= 2 s received and scored, call still up
                await asyncio.sleep(0.01)
            await server.close()
            rest = await asyncio.wait_for(reader.read(), 5.0)  # closed by the server
            writer.close()
            return events, rest

    events, rest = arun(go())
    assert rest == b""
    (v,) = by_kind(events, "verdict")
    assert v["reason"] == "shutdown"
    assert 2.0 <= v["received_s"] <= 3.0
    assert v["duration_s"] == pytest.approx(v["received_s"])  # everything received was scored
    assert v["n_windows"] >= 3


def test_calls_over_capacity_are_rejected(detector: Any) -> None:
    async def go() -> list[dict[str, Any]]:
        async with running(detector, config=EngineConfig(max_calls=1)) as (server, events):
            first = asyncio.create_task(
                audiosocket_call("127.0.0.1", server.port, str(UID), call_audio(1.0, 5), realtime=True)
            )
            await asyncio.sleep(0.3)
            await _raw_call(server.port, encode_frame(KIND_UUID, uuid.uuid4().bytes) + AUDIO_1S)
            await first
            return events

    events = arun(go())
    (rej,) = by_kind(events, "call_rejected")
    assert "at capacity (1 concurrent calls)" in rej["message"]
    (v,) = by_kind(events, "verdict")
    assert v["call_id"] == str(UID)
    assert v["reason"] == "hangup"


def test_memory_bound_drops_oldest_audio_when_scoring_stalls(detector: Any) -> None:
    """With inference stalled, a call keeps at most max_pending_s of audio and counts what it dropped."""
    release = threading.Event()

    async def go() -> list[dict[str, Any]]:
        config = EngineConfig(max_calls=1, max_pending_s=0.5)
        async with running(detector, config=config) as (server, events):
            loop = asyncio.get_running_loop()
            blockers = [loop.run_in_executor(server.engine.executor, release.wait, 10.0) for _ in range(3)]
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(encode_frame(KIND_UUID, UID.bytes) + AUDIO_1S * 3 + encode_frame(KIND_HANGUP))
            await writer.drain()
            t0 = time.monotonic()
            while not server.engine._calls or time.monotonic() - t0 < 1.0:
                await asyncio.sleep(0.02)
            release.set()
            await asyncio.gather(*blockers)
            await asyncio.wait_for(reader.read(), 10.0)
            writer.close()
            return events

    (v,) = by_kind(arun(go()), "verdict")
    assert v["received_s"] == pytest.approx(3.0)
    # the reader hands the scorer the audio up to the push that completes the first window (~1 s), waits
    # for it at most as long as the pending audio lasts (0.25 s), then reads on: max_pending_s (0.5 s)
    # waits and the rest is dropped
    assert 1.0 <= v["dropped_s"] <= 2.0, v
    assert v["duration_s"] == pytest.approx(v["received_s"] - v["dropped_s"])
    assert v["label"] in ("spoof", "bonafide")  # 0.5 s >= the model's minimum: scored as one window


def test_push_interval_coalesces_frames_without_changing_scores(detector: Any) -> None:
    pcm = call_audio(1.6, seed=7)

    async def go(interval_ms: float) -> list[dict[str, Any]]:
        config = EngineConfig(push_interval_ms=interval_ms)
        async with running(detector, config=config) as (server, events):
            await audiosocket_call("127.0.0.1", server.port, str(UID), pcm, realtime=True)
            return events

    every, coalesced = arun(go(0.0)), arun(go(100.0))
    (v0,), (v1,) = by_kind(every, "verdict"), by_kind(coalesced, "verdict")
    assert v0["pushes"] >= 60  # one push per 20 ms frame (a starved loop may merge a few)
    assert v1["pushes"] <= 20  # at most one per 100 ms (+ the last)
    assert [w["logit"] for w in by_kind(coalesced, "window")] == pytest.approx(
        [w["logit"] for w in by_kind(every, "window")], rel=1e-5
    )
    assert v1["spoof_prob"] == pytest.approx(v0["spoof_prob"], rel=1e-5)


def test_engine_config_validation() -> None:
    with pytest.raises(InvalidArgumentError, match=r"push_interval_ms: expected 0..1000 ms, given -1"):
        EngineConfig(push_interval_ms=-1)
    with pytest.raises(
        InvalidArgumentError, match=r"max_calls: expected an integer in \[1, 100000\], given 0"
    ):
        EngineConfig(max_calls=0)
    with pytest.raises(InvalidArgumentError, match=r"max_pending_s: expected a positive number of seconds"):
        EngineConfig(max_pending_s=0)
    with pytest.raises(InvalidArgumentError, match=r"max_lag_ms: expected 0..60000 ms, given True"):
        EngineConfig(max_lag_ms=True)


def test_engine_checks_the_scheduler_queue_against_the_pending_bound(detector: Any) -> None:
    from examples.callcentre.engine import ScoringEngine

    with pytest.raises(InvalidArgumentError, match=r"max_queue: expected >= 22 windows .* given 16"):
        ScoringEngine(detector, config=EngineConfig(max_pending_s=10), scheduler_options={"max_queue": 16})


class _SheddingSession:
    """Wraps a session; its Nth push raises the scheduler's OverloadError (back-pressure)."""

    def __init__(self, inner: Any, fail_at: int) -> None:
        self.inner, self.fail_at, self.n = inner, fail_at, 0

    def push(self, data: bytes) -> Any:
        self.n += 1
        if self.n == self.fail_at:
            from spoofsdk.errors import OverloadError

            raise OverloadError("submit: scheduler queue full (test)")
        return self.inner.push(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_shed_push_is_counted_and_the_call_goes_on(detector: Any, caplog: pytest.LogCaptureFixture) -> None:
    from examples.callcentre.engine import ScoringEngine

    async def go() -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        engine = ScoringEngine(detector, on_event=events.append)
        try:
            call = engine.open_call("c1", source="test")
            pcm = call_audio(2.0, 1).astype("<i2").tobytes()
            frames = [pcm[k : k + 320] for k in range(0, len(pcm), 320)]
            call.feed(frames[0], sample_rate=8000, encoding="pcm16")
            call.session = _SheddingSession(call.session, fail_at=3)  # type: ignore[assignment]
            for frame in frames[1:]:
                await asyncio.sleep(0)  # one push per frame: let the scorer task take each
                call.feed(frame, sample_rate=8000, encoding="pcm16")
            await call.finish("hangup")
        finally:
            await engine.shutdown()
        return events

    events = arun(go())
    (ov,) = by_kind(events, "overload")
    assert "scheduler queue full" in ov["message"]
    (v,) = by_kind(events, "verdict")
    assert v["pushes_shed"] == 1
    assert v["received_s"] == pytest.approx(2.0)
    assert v["label"] in ("spoof", "bonafide")  # the call went on and was scored
    assert "push shed by the scheduler" in caplog.text


def test_event_hook_sync_async_and_failing(detector: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The callback hook gets every event; an async hook is scheduled; a raising hook only logs."""
    from examples.callcentre.engine import ScoringEngine

    seen: list[str] = []
    async_seen: list[str] = []

    def failing(event: dict[str, Any]) -> None:
        seen.append(event["event"])
        raise RuntimeError("hook bug")

    async def slow_hook(event: dict[str, Any]) -> None:
        await asyncio.sleep(0.01)
        async_seen.append(event["event"])

    async def go(hook: Any) -> None:
        engine = ScoringEngine(detector, on_event=hook)
        try:
            call = engine.open_call("c2", source="test")
            call.feed(call_audio(1.2, 2).astype("<i2").tobytes(), sample_rate=8000, encoding="pcm16")
            await call.finish("hangup")
        finally:
            await engine.shutdown()  # waits for pending async hooks

    arun(go(failing))
    assert seen[0] == "call_start"
    assert seen[-1] == "verdict"
    assert "on_event callback raised RuntimeError: hook bug" in caplog.text
    arun(go(slow_hook))
    assert async_seen[0] == "call_start"
    assert async_seen.count("verdict") == 1


def test_admission_by_event_loop_lag(detector: Any) -> None:
    """With max_lag_ms, new calls are refused while the loop runs late, and accepted again after."""
    from examples.callcentre.engine import CallRejectedError, ScoringEngine

    async def go() -> tuple[float, str, float]:
        events: list[dict[str, Any]] = []
        engine = ScoringEngine(detector, config=EngineConfig(max_lag_ms=100), on_event=events.append)
        try:
            first = engine.open_call("c1", source="test")  # starts the monitor
            for _ in range(2):
                await asyncio.sleep(0.12)
                time.sleep(0.35)  # a starved process: the loop cannot run its timers
            await asyncio.sleep(0.01)  # the monitor's overdue timer runs
            peak = engine.loop_lag_ms
            with pytest.raises(CallRejectedError, match=r"overloaded: the process runs \d+ ms behind"):
                engine.open_call("c2", source="test")
            (rej,) = by_kind(events, "call_rejected")
            deadline = time.monotonic() + 10
            while engine.current_lag_ms() > 100 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            second = engine.open_call("c3", source="test")  # recovered: accepted
            await first.finish("hangup")
            await second.finish("hangup")
            return peak, rej["message"], engine.current_lag_ms()
        finally:
            await engine.shutdown()

    peak, message, after = arun(go())
    assert peak > 100  # measured when the call was refused
    assert "max_lag_ms=100" in message
    assert after <= 100


def test_admission_by_late_scores(detector: Any) -> None:
    """Late window scores (inference backlog) also refuse new calls, until they are older than 2 s."""
    from examples.callcentre.engine import CallRejectedError, ScoringEngine

    async def go() -> str:
        engine = ScoringEngine(detector, config=EngineConfig(max_lag_ms=500))
        engine.lag_horizon_s = 0.3
        try:
            for ms in (900.0, 1200.0, 100.0):
                engine.record_window_latency(ms)
            assert engine.current_lag_ms() == 900.0  # the median of the recent scores
            with pytest.raises(CallRejectedError, match=r"runs 900 ms behind \(max_lag_ms=500\)") as info:
                engine.open_call("c1", source="test")
            await asyncio.sleep(0.35)  # those scores are now older than the horizon
            call = engine.open_call("c1", source="test")
            await call.finish("hangup")
            return str(info.value)
        finally:
            await engine.shutdown()

    assert "rejected" in arun(go())


class _GatedFlush:
    """Wraps a session; ``flush`` waits for ``gate`` (a hang-up whose verdict is still being computed)."""

    def __init__(self, inner: Any, gate: threading.Event) -> None:
        self.inner, self.gate = inner, gate
        self.flushing = threading.Event()

    def flush(self) -> Any:
        self.flushing.set()
        self.gate.wait(20.0)
        return self.inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def _gate_flush(engine: Any, gate: threading.Event) -> tuple[Any, _GatedFlush]:
    """Wait for the one active call to open its session, then gate that session's flush."""
    while not engine._calls or next(iter(engine._calls.values())).session is None:
        await asyncio.sleep(0.01)
    (call,) = engine._calls.values()
    gated = _GatedFlush(call.session, gate)
    call.session = gated
    return call, gated


def test_shutdown_while_a_call_hangs_up_keeps_its_verdict(detector: Any) -> None:
    """Issue 21 fault 1: close() used to cancel a handler already inside finish(): no verdict at all."""
    gate = threading.Event()
    pcm = call_audio(2.0, seed=61)

    async def go() -> list[dict[str, Any]]:
        async with running(detector) as (server, events):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            frames = b"".join(
                encode_frame(KIND_AUDIO, pcm[k : k + 160].astype("<i2").tobytes())
                for k in range(0, 16000, 160)
            )
            writer.write(encode_frame(KIND_UUID, UID.bytes) + frames)
            await writer.drain()
            _, gated = await _gate_flush(server.engine, gate)
            writer.write(encode_frame(KIND_HANGUP))
            await writer.drain()
            while not gated.flushing.is_set():  # the handler is inside finish(), computing the verdict
                await asyncio.sleep(0.01)
            closing = asyncio.create_task(server.close())  # SIGTERM arrives now
            await asyncio.sleep(0.2)
            gate.set()
            await closing
            await asyncio.wait_for(reader.read(), 5.0)
            writer.close()
            return events

    events = arun(go())
    (v,) = by_kind(events, "verdict")
    assert v["reason"] == "hangup"
    assert "detail" not in v
    assert v["spoof_prob"] == pytest.approx(detector.score(pcm, sample_rate=8000).spoof_prob, rel=1e-4)


def test_engine_shutdown_waits_for_a_call_inside_finish(detector: Any) -> None:
    """A call already finishing when shutdown() starts gets its own verdict, scored, exactly once."""
    from examples.callcentre.engine import ScoringEngine

    gate = threading.Event()

    async def go() -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        engine = ScoringEngine(detector, on_event=events.append)
        call = engine.open_call("c-fin", source="test")
        call.feed(call_audio(1.5, 3).astype("<i2").tobytes(), sample_rate=8000, encoding="pcm16")
        _, gated = await _gate_flush(engine, gate)
        hangup = asyncio.create_task(call.finish("hangup"))
        while not gated.flushing.is_set():
            await asyncio.sleep(0.01)
        timer = threading.Timer(0.3, gate.set)
        timer.start()
        await engine.shutdown()
        first = await hangup
        timer.join()
        assert first["reason"] == "hangup"
        assert await call.finish("again") is first  # idempotent: the same verdict, no second event
        return events

    events = arun(go())
    (v,) = by_kind(events, "verdict")
    assert v["reason"] == "hangup"
    assert "detail" not in v
    assert v["label"] in ("spoof", "bonafide")


def test_a_burst_is_scored_not_dropped_on_an_idle_server(detector: Any) -> None:
    """Issue 21 fault 3: a burst of buffered frames was read without yielding to the scorer task, so the
    pending bound dropped audio although the CPU was free."""
    pcm = call_audio(20.0, seed=71)

    async def go() -> list[dict[str, Any]]:
        async with running(detector, config=EngineConfig(max_pending_s=1.0)) as (server, events):
            await audiosocket_call("127.0.0.1", server.port, str(UID), pcm, realtime=False)
            return events

    events = arun(go())
    (v,) = by_kind(events, "verdict")
    assert v["dropped_s"] == 0.0
    _check_against_offline(detector, events, str(UID), pcm)


def test_audio_kinds_follow_asterisk() -> None:
    """Issue 21 fault 4: res_audiosocket.h (Asterisk, October 2025) numbers the slin kinds 0x10-0x18."""
    assert AUDIO_RATES == {
        0x10: 8000,
        0x11: 12000,
        0x12: 16000,
        0x13: 24000,
        0x14: 32000,
        0x15: 44100,
        0x16: 48000,
        0x17: 96000,
        0x18: 192000,
    }
    assert (KIND_AUDIO, KIND_AUDIO_SLIN12, KIND_AUDIO_SLIN16, KIND_AUDIO_SLIN192) == (0x10, 0x11, 0x12, 0x18)


@pytest.mark.parametrize("kind", sorted(AUDIO_RATES), ids=lambda k: f"0x{k:02x}")
def test_every_audio_kind_is_scored_at_its_rate(detector: Any, kind: int) -> None:
    """A call in any slin kind is scored at that kind's rate, equal to offline scoring of the same audio."""
    from examples.simulate_calls import audiosocket_call
    from spoofsdk.audio import resample

    rate = AUDIO_RATES[kind]
    # speech-like audio at the kind's rate (the speech gate leaves a plain tone unscored)
    base = call_audio(1.6, seed=kind).astype(np.float32) / 32768
    pcm = np.round(resample(base, 8000, rate) * 32767).clip(-32768, 32767).astype(np.int16)

    async def go() -> list[dict[str, Any]]:
        async with running(detector) as (server, events):
            await audiosocket_call("127.0.0.1", server.port, str(UID), pcm, realtime=False, sample_rate=rate)
            return events

    events = arun(go())
    assert not by_kind(events, "call_error")
    (start,) = by_kind(events, "call_start")
    assert start["sample_rate"] == rate
    ref = detector.score(pcm, sample_rate=rate)
    (v,) = by_kind(events, "verdict")
    assert v["reason"] == "hangup"
    assert v["received_s"] == pytest.approx(pcm.size / rate)
    assert v["n_windows"] == len(ref.windows)
    assert v["label"] == ref.label != "undetermined"
    assert v["spoof_prob"] == pytest.approx(ref.spoof_prob, rel=1e-4, abs=1e-6)


def test_audio_at_a_rate_the_front_end_cannot_take_is_a_clear_error(
    detector: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Every AudioSocket rate is within the SDK's 4-384 kHz today; a front end that refused one (here: a
    bound lowered to 96 kHz) ends that call with a call_error event, never the server."""
    import spoofsdk.audio

    monkeypatch.setattr(spoofsdk.audio, "MAX_SAMPLE_RATE", 96000)
    bad = str(uuid.uuid4())

    async def go() -> list[dict[str, Any]]:
        async with running(detector) as (server, events):
            await _raw_call(
                server.port,
                encode_frame(KIND_UUID, uuid.UUID(bad).bytes)
                + encode_frame(KIND_AUDIO_SLIN192, b"\0" * 7680),
            )
            await audiosocket_call("127.0.0.1", server.port, str(UID), call_audio(1.2, 5), realtime=False)
            return events

    events = arun(go())
    (err,) = by_kind(events, "call_error")
    assert (err["call_id"], err["error"]) == (bad, "UnsupportedAudioError")
    assert re.search(
        r"audio kind 0x18 \(audio-slin192, 192000 Hz\) cannot be scored: "
        r"sample_rate: expected 4000\.\.96000 Hz",
        err["message"],
    ), err["message"]
    (v,) = by_kind(events, "verdict", bad)
    assert (v["reason"], v["label"]) == ("unsupported_audio", "undetermined")
    (ok,) = by_kind(events, "verdict", str(UID))
    assert ok["label"] in ("spoof", "bonafide")  # the server went on
    assert "cannot be scored" in caplog.text


def test_a_reset_connection_is_a_disconnect_not_a_hangup(
    detector: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Closed between messages = Asterisk's normal hang-up; reset (RST) = a broken connection."""
    import socket
    import struct

    async def go() -> list[dict[str, Any]]:
        async with running(detector) as (server, events):
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(encode_frame(KIND_UUID, UID.bytes) + AUDIO_1S * 2)
            await writer.drain()
            while len(by_kind(events, "window")) < 2:  # the server has read the audio
                await asyncio.sleep(0.01)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # close with linger 0: RST
            while not by_kind(events, "verdict"):
                await asyncio.sleep(0.01)
            return events

    (v,) = by_kind(arun(go()), "verdict")
    assert v["reason"] == "disconnect"
    assert v["label"] in ("spoof", "bonafide")
    assert "connection broken: ConnectionResetError" in caplog.text


@pytest.mark.parametrize(
    ("data", "reason", "message"),
    [(b"", "hangup", "closed before a UUID message"), (None, "timeout", "no UUID message within 0.3 s")],
    ids=["closed", "silent"],
)
def test_a_connection_without_a_call_gives_an_event(
    detector: Any, data: bytes | None, reason: str, message: str
) -> None:
    """Issue 21 fault 6: every close says why, also of a connection that never opened a call."""

    async def go() -> list[dict[str, Any]]:
        async with running(detector) as (server, events):
            server.first_message_timeout_s = 0.3
            await _raw_call(server.port, data or b"", close_after=data is not None)
            return events

    events = arun(go())
    (end,) = by_kind(events, "connection_closed")
    assert (end["call_id"], end["reason"], end["message"]) == (None, reason, message)
    assert not by_kind(events, "verdict")
