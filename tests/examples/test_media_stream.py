"""Media-stream WebSocket plugin (Twilio Media Streams protocol): sessions, tracks, malformed input."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import ssl
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from ex_helpers import arun, by_kind, call_audio, running

from examples.callcentre.g711 import mulaw_encode
from examples.simulate_calls import media_stream_call, twilio_messages

websockets = pytest.importorskip("websockets", reason="the examples extra (websockets) is not installed")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

CALL = "CA" + "1" * 32
STREAM = "MZ" + "2" * 32


async def _session(port: int, messages: Sequence[str | bytes]) -> tuple[int | None, str]:
    """Send messages, then wait for the server to close; return (close code, reason)."""
    async with connect(f"ws://127.0.0.1:{port}/media", compression=None) as ws:
        try:
            for m in messages:
                await ws.send(m)
            await asyncio.wait_for(ws.recv(), 10.0)
        except ConnectionClosed:
            pass
        await ws.wait_closed()
        return ws.close_code, ws.close_reason or ""


def _offline(detector: Any, pcm: Any) -> Any:
    with detector.stream(8000, encoding="mulaw") as s:
        s.push(mulaw_encode(pcm))
        return s.flush()


def test_twilio_session_scores_like_offline(detector: Any) -> None:
    pcm = call_audio(3.1, seed=21)
    msgs: list[str | bytes] = list(twilio_messages(CALL, STREAM, pcm))
    # a mark acknowledgement, a DTMF and an unknown future event mid-stream are accepted
    msgs[10:10] = [
        json.dumps(
            {"event": "mark", "sequenceNumber": "9", "streamSid": STREAM, "mark": {"name": "greeting"}}
        ),
        json.dumps({"event": "dtmf", "streamSid": STREAM, "dtmf": {"track": "inbound_track", "digit": "7"}}),
        json.dumps({"event": "someFutureEvent", "streamSid": STREAM}),
    ]

    async def go() -> tuple[list[dict[str, Any]], tuple[int | None, str]]:
        async with running(detector, "media_stream") as (server, events):
            closed = await _session(server.port, msgs)
            return events, closed

    events, (code, _) = arun(go())
    assert code == 1000
    assert not by_kind(events, "call_error")
    ref = _offline(detector, pcm)
    (start,) = by_kind(events, "call_start")
    assert (start["call_id"], start["track"], start["encoding"], start["sample_rate"]) == (
        CALL,
        "inbound",
        "mulaw",
        8000,
    )
    assert start["meta"]["streamSid"] == STREAM
    assert start["meta"]["customParameters"] == {"simulated": "true"}
    windows = by_kind(events, "window", CALL)
    assert [w["logit"] for w in windows] == pytest.approx([w.logit for w in ref.windows], rel=1e-4, abs=1e-5)
    (v,) = by_kind(events, "verdict", CALL)
    assert v["reason"] == "stop"
    assert v["spoof_prob"] == pytest.approx(ref.spoof_prob, rel=1e-4, abs=1e-6)
    assert v["received_s"] == pytest.approx(3.1)


def test_both_tracks_are_scored_separately(detector: Any) -> None:
    inbound, outbound = call_audio(2.0, seed=31), call_audio(2.0, seed=32)
    start = json.loads(twilio_messages(CALL, STREAM, inbound[:160])[1])
    start["start"]["tracks"] = ["inbound", "outbound"]
    msgs = [json.dumps(start)]
    for track, pcm in (("inbound", inbound), ("outbound", outbound)):
        mu = mulaw_encode(pcm)
        for k in range(0, len(mu), 160):
            payload = base64.b64encode(mu[k : k + 160]).decode()
            media = {"track": track, "chunk": str(k // 160 + 1), "timestamp": str(k // 8), "payload": payload}
            msgs.append(json.dumps({"event": "media", "streamSid": STREAM, "media": media}))
    msgs.append(json.dumps({"event": "stop", "streamSid": STREAM, "stop": {"callSid": CALL}}))

    async def go() -> list[dict[str, Any]]:
        async with running(detector, "media_stream", tracks=("inbound", "outbound")) as (server, events):
            await _session(server.port, msgs)
            return events

    events = arun(go())
    verdicts = {v["track"]: v for v in by_kind(events, "verdict", CALL)}
    assert set(verdicts) == {"inbound", "outbound"}
    for track, pcm in (("inbound", inbound), ("outbound", outbound)):
        assert verdicts[track]["spoof_prob"] == pytest.approx(_offline(detector, pcm).spoof_prob, rel=1e-4)


def _start_msg(**fmt: Any) -> str:
    m = json.loads(twilio_messages(CALL, STREAM, call_audio(0.02, 0))[1])
    m["start"]["mediaFormat"].update(fmt)
    return json.dumps(m)


GOOD_START = _start_msg()
MEDIA_1S = [m for m in twilio_messages(CALL, STREAM, call_audio(1.0, 2)) if '"media"' in m]


@pytest.mark.parametrize(
    ("bad", "code", "match"),
    [
        ("{not json", 1007, r"expected a JSON message, given invalid JSON"),
        ("[1, 2]", 1007, r"expected a JSON object, given a JSON list"),
        (b"\x00\x01binary", 1007, r"expected JSON text messages, given a 8-byte binary message"),
        (
            json.dumps({"event": "media", "media": {"payload": "@@not base64@@"}}),
            1007,
            r"media.payload: expected base64",
        ),
        (
            json.dumps({"event": "media", "media": {"payload": 5}}),
            1008,
            r"media.payload: expected a str",
        ),
        (GOOD_START, 1008, r"a second start message"),
    ],
    ids=["json", "not-object", "binary", "base64", "payload-type", "second-start"],
)
def test_malformed_message_ends_the_stream(detector: Any, bad: str | bytes, code: int, match: str) -> None:
    async def go() -> tuple[list[dict[str, Any]], tuple[int | None, str]]:
        async with running(detector, "media_stream") as (server, events):
            closed = await _session(server.port, [GOOD_START, *MEDIA_1S, bad, *MEDIA_1S])
            # the server keeps serving: a clean stream afterwards gets its verdict
            await media_stream_call(
                f"ws://127.0.0.1:{server.port}/", "CA" + "9" * 32, call_audio(1.0, 3), realtime=False
            )
            return events, closed

    events, (close_code, _) = arun(go())
    assert close_code == code
    (err,) = by_kind(events, "call_error")
    assert err["call_id"] == CALL
    assert re.search(match, err["message"]), err["message"]
    (v,) = by_kind(events, "verdict", CALL)
    assert v["reason"] == "protocol_error"
    assert v["received_s"] == pytest.approx(1.0)  # audio before the bad message was kept and scored
    assert v["label"] in ("spoof", "bonafide")
    (v2,) = by_kind(events, "verdict", "CA" + "9" * 32)
    assert v2["reason"] == "stop"


@pytest.mark.parametrize(
    ("messages", "code", "match"),
    [
        (MEDIA_1S[:1], 1008, r"a media message before the start message"),
        ([_start_msg(encoding="audio/x-l16")], 1008, r"start.mediaFormat: expected encoding one of"),
        ([_start_msg(channels=2)], 1008, r"channels 1, given"),
        ([json.dumps({"event": "start", "start": {"mediaFormat": {}}})], 1008, r"start.streamSid: expected"),
    ],
    ids=["media-first", "encoding", "stereo", "no-sid"],
)
def test_bad_stream_setup_is_rejected(detector: Any, messages: list[str], code: int, match: str) -> None:
    async def go() -> tuple[list[dict[str, Any]], tuple[int | None, str]]:
        async with running(detector, "media_stream") as (server, events):
            return events, await _session(server.port, messages)

    events, (close_code, _) = arun(go())
    assert close_code == code
    (err,) = by_kind(events, "call_error")
    assert re.search(match, err["message"]), err["message"]
    assert not by_kind(events, "verdict")


def test_alaw_stream_and_abrupt_disconnect(detector: Any) -> None:
    """An A-law stream (other carriers) closed without a stop message still gets its verdict."""
    pcm = call_audio(1.6, seed=41)
    import numpy as np

    # A-law of the same audio via the reference decoder table: encode by nearest code
    from spoofsdk.audio import decode

    table = (decode(bytes(range(256)), "alaw") * 32768).astype(np.float64)
    order = np.argsort(table)
    idx = np.clip(np.searchsorted(table[order], pcm.astype(np.float64)), 0, 255)
    alaw = order[idx].astype(np.uint8).tobytes()
    start = json.loads(_start_msg(encoding="audio/x-alaw"))
    msgs = [json.dumps(start)]
    for k in range(0, len(alaw), 160):
        media = {"track": "inbound", "payload": base64.b64encode(alaw[k : k + 160]).decode()}
        msgs.append(json.dumps({"event": "media", "streamSid": STREAM, "media": media}))

    async def go() -> list[dict[str, Any]]:
        async with running(detector, "media_stream") as (server, events):
            async with connect(f"ws://127.0.0.1:{server.port}/", compression=None) as ws:
                for m in msgs:
                    await ws.send(m)
            # the client closed without "stop"
            for _ in range(500):
                if by_kind(events, "verdict"):
                    break
                await asyncio.sleep(0.01)
            return events

    events = arun(go())
    (v,) = by_kind(events, "verdict")
    with detector.stream(8000, encoding="alaw") as s:
        s.push(alaw)
        ref = s.flush()
    assert v["reason"] == "disconnect"
    assert v["spoof_prob"] == pytest.approx(ref.spoof_prob, rel=1e-4)


def test_shutdown_closes_streams_with_verdicts(detector: Any) -> None:
    async def go() -> tuple[list[dict[str, Any]], int | None]:
        async with (
            running(detector, "media_stream") as (server, events),
            connect(f"ws://127.0.0.1:{server.port}/", compression=None) as ws,
        ):
            for m in [GOOD_START, *MEDIA_1S, *MEDIA_1S]:
                await ws.send(m)
            while not by_kind(events, "window"):
                await asyncio.sleep(0.01)
            await server.close()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5.0)
            return events, ws.close_code

    events, code = arun(go())
    assert code == 1001
    (v,) = by_kind(events, "verdict")
    assert v["reason"] == "shutdown"
    assert 1.0 <= v["received_s"] <= 2.0  # the server stops reading at shutdown
    assert v["duration_s"] == pytest.approx(v["received_s"])  # and scores everything it received


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_wss_with_tls(detector: Any, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    pcm = call_audio(1.2, seed=51)

    async def go() -> list[dict[str, Any]]:
        async with running(detector, "media_stream", ssl_context=server_ctx) as (server, events):
            await media_stream_call(f"wss://127.0.0.1:{server.port}/", CALL, pcm, realtime=False,
                                    ssl_context=client_ctx)  # fmt: skip
            return events

    (v,) = by_kind(arun(go()), "verdict")
    assert v["reason"] == "stop"
    assert v["spoof_prob"] == pytest.approx(_offline(detector, pcm).spoof_prob, rel=1e-4)


def test_shutdown_while_a_stream_stops_keeps_its_verdict(detector: Any) -> None:
    """Issue 21 fault 1: close() used to cancel a handler already inside finish(): no verdict at all."""
    import threading

    from test_audiosocket import _gate_flush

    gate = threading.Event()
    pcm = call_audio(2.0, seed=62)
    msgs = twilio_messages(CALL, STREAM, pcm)

    async def go() -> list[dict[str, Any]]:
        async with (
            running(detector, "media_stream") as (server, events),
            connect(f"ws://127.0.0.1:{server.port}/", compression=None) as ws,
        ):
            for m in msgs[:-1]:
                await ws.send(m)
            _, gated = await _gate_flush(server.engine, gate)
            await ws.send(msgs[-1])  # stop
            while not gated.flushing.is_set():
                await asyncio.sleep(0.01)
            closing = asyncio.create_task(server.close())
            await asyncio.sleep(0.2)
            gate.set()
            await closing
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5.0)
            return events

    events = arun(go())
    (v,) = by_kind(events, "verdict")
    assert v["reason"] == "stop"
    assert "detail" not in v
    assert v["spoof_prob"] == pytest.approx(_offline(detector, pcm).spoof_prob, rel=1e-4)


def test_a_burst_is_scored_not_dropped_on_an_idle_server(detector: Any) -> None:
    """Issue 21 fault 3: buffered WebSocket messages were read without yielding to the scorer task."""
    from examples.callcentre.engine import EngineConfig

    pcm = call_audio(20.0, seed=72)

    async def go() -> list[dict[str, Any]]:
        config = EngineConfig(max_pending_s=1.0)
        async with running(detector, "media_stream", config=config) as (server, events):
            await media_stream_call(f"ws://127.0.0.1:{server.port}/", CALL, pcm, realtime=False)
            return events

    events = arun(go())
    (v,) = by_kind(events, "verdict")
    assert v["dropped_s"] == 0.0
    assert v["spoof_prob"] == pytest.approx(_offline(detector, pcm).spoof_prob, rel=1e-4)
    assert v["n_windows"] == len(_offline(detector, pcm).windows)


def test_an_oversized_message_gives_a_call_error(detector: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 21 fault 6: a message over 64 KiB closed with 1009 but read as a plain disconnect."""
    big = json.dumps({"event": "media", "streamSid": STREAM, "media": {"payload": "A" * 70_000}})

    async def go() -> tuple[list[dict[str, Any]], tuple[int | None, str]]:
        async with running(detector, "media_stream") as (server, events):
            closed = await _session(server.port, [GOOD_START, *MEDIA_1S, big])
            while not by_kind(events, "verdict"):
                await asyncio.sleep(0.01)
            return events, closed

    events, (code, _) = arun(go())
    assert code == 1009
    (err,) = by_kind(events, "call_error")
    assert (err["call_id"], err["error"]) == (CALL, "MessageTooBigError")
    assert "a WebSocket message over max_message_bytes=65536 bytes" in err["message"]
    (v,) = by_kind(events, "verdict")
    assert v["reason"] == "message_too_big"
    assert v["received_s"] == pytest.approx(1.0)
    warnings = [
        r for r in caplog.records if r.levelname == "WARNING" and "max_message_bytes" in r.getMessage()
    ]
    assert warnings


def test_a_stream_with_no_scored_track_gives_events(detector: Any) -> None:
    """Issue 21 fault 6: a stream whose only track is not scored was silently ignored."""
    start = json.loads(GOOD_START)
    start["start"]["tracks"] = ["outbound"]
    media = [m.replace('"track": "inbound"', '"track": "outbound"') for m in MEDIA_1S]
    stop = json.dumps({"event": "stop", "streamSid": STREAM, "stop": {"callSid": CALL}})

    async def go() -> tuple[list[dict[str, Any]], tuple[int | None, str]]:
        async with running(detector, "media_stream") as (server, events):
            return events, await _session(server.port, [json.dumps(start), *media, stop])

    events, (code, _) = arun(go())
    assert code == 1000
    (ign,) = by_kind(events, "stream_ignored")
    assert (ign["call_id"], ign["tracks"], ign["scored_tracks"]) == (CALL, ["outbound"], ["inbound"])
    assert "none of its tracks ['outbound'] is scored" in ign["message"]
    (end,) = by_kind(events, "connection_closed")
    assert (end["call_id"], end["reason"]) == (CALL, "stop")
    assert "50 media messages ignored" in end["message"]
    assert not by_kind(events, "verdict")


def test_stop_before_start_gives_a_call_error(detector: Any) -> None:
    """Issue 21 fault 6: "stop" before "start" closed the stream with no event."""
    stop = json.dumps({"event": "stop", "streamSid": STREAM, "stop": {"callSid": CALL}})

    async def go() -> tuple[list[dict[str, Any]], tuple[int | None, str]]:
        async with running(detector, "media_stream") as (server, events):
            return events, await _session(server.port, [stop])

    events, (code, _) = arun(go())
    assert code == 1008
    (err,) = by_kind(events, "call_error")
    assert err["message"] == "a stop message before the start message"
    assert not by_kind(events, "verdict")


def test_a_connection_closed_before_start_gives_an_event(detector: Any) -> None:
    async def go() -> list[dict[str, Any]]:
        async with running(detector, "media_stream") as (server, events):
            async with connect(f"ws://127.0.0.1:{server.port}/", compression=None) as ws:
                await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            while not by_kind(events, "connection_closed"):
                await asyncio.sleep(0.01)
            return events

    (end,) = by_kind(arun(go()), "connection_closed")
    assert end["call_id"] is None
    assert end["reason"] == "disconnect"
    assert "before the start message" in end["message"]
