"""Telephony media-stream WebSocket server (Twilio Media Streams protocol): score every stream.

Run (from the repository root)::

    python -m examples.media_stream_ws --model detector.onnx --port 8765 --out calls.jsonl

Twilio opens one WebSocket per ``<Stream>`` and sends JSON text messages:

* ``connected`` (``protocol``, ``version``), then ``start`` (``streamSid``, ``start.callSid``,
  ``start.tracks``, ``start.mediaFormat`` = ``{"encoding": "audio/x-mulaw", "sampleRate": 8000,
  "channels": 1}``, ``start.customParameters``);
* ``media`` (``media.track`` "inbound" / "outbound", ``media.chunk``, ``media.timestamp``,
  ``media.payload`` = base64 of the raw mu-law bytes, usually 20 ms = 160 bytes);
* ``dtmf``, ``mark`` (acknowledging marks a bidirectional server sent), and finally ``stop``.

Each scored track of a stream is one :class:`~examples.callcentre.CallScorer` (``call_id`` = the
callSid, ``track`` = inbound / outbound). Malformed input (a binary frame, invalid JSON, a message
that is not an object, invalid base64, media or ``stop`` before ``start``, an unsupported media format)
ends that stream: a ``call_error`` event, a verdict for the audio received so far, and the WebSocket
closed with code 1007 (invalid data) or 1008 (protocol violation). A message over
``max_message_bytes`` is closed by websockets with 1009: ``call_error`` ``MessageTooBigError``, reason
``message_too_big``, a WARNING. A stream none of whose tracks is scored gets a ``stream_ignored``
event at ``start`` and a ``connection_closed`` at its end, as does a connection closed before
``start``. Unknown event names are ignored (forward compatibility). SIGINT / SIGTERM finish every
active stream (verdict reason ``shutdown``; a stream already stopping keeps its own) and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import logging
import ssl
import time
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from spoofsdk.errors import SpoofError

from ..callcentre.cli import add_engine_arguments, configure_logging, run_server
from ..callcentre.engine import CallRejectedError, CallScorer, CallTooLongError, ScoringEngine
from ..callcentre.idle import IdleWatchdog

__all__ = ["ENCODINGS", "MediaStreamServer", "MessageTooBigError", "StreamProtocolError", "main"]

logger = logging.getLogger("spoofsdk.examples")

#: mediaFormat.encoding -> spoofsdk session encoding
ENCODINGS = {"audio/x-mulaw": "mulaw", "audio/x-alaw": "alaw"}
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_MESSAGE_TOO_BIG = 1009


class StreamProtocolError(ValueError):
    """A malformed or out-of-order media-stream message; ``close_code`` is the WebSocket close code."""

    def __init__(self, message: str, close_code: int = CLOSE_POLICY) -> None:
        super().__init__(message)
        self.close_code = close_code


class MessageTooBigError(StreamProtocolError):
    """A WebSocket message over ``max_message_bytes``; websockets closed the connection with 1009."""

    def __init__(self, message: str) -> None:
        super().__init__(message, CLOSE_MESSAGE_TOO_BIG)


def _field(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind):
        raise StreamProtocolError(
            f"{where}.{key}: expected a {kind.__name__}, given {type(value).__name__} {value!r:.60}"
        )
    return value


async def _close(ws: ServerConnection, code: int, reason: str) -> None:
    """Close the WebSocket while discarding what the peer still sends.

    Without draining, messages queued after an error (websockets pauses reading when its queue is
    full) would hide the peer's close frame and the closing handshake would wait for close_timeout.
    """

    async def drain() -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.recv()

    drainer = asyncio.create_task(drain())
    try:
        await ws.close(code, reason)
    finally:
        drainer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drainer


class _Stream:
    """The state of one WebSocket stream."""

    def __init__(self) -> None:
        self.stream_sid: str | None = None
        self.call_id: str | None = None
        self.sample_rate = 8000
        self.encoding = "mulaw"
        self.calls: dict[str, CallScorer] = {}
        self.media_messages = 0
        self.ignored_media = 0


class MediaStreamServer:
    """WebSocket server for Twilio-style media streams; one :class:`CallScorer` per scored track.

    ``tracks``: which media tracks to score (default the caller's, ``inbound``).
    ``max_message_bytes``: largest WebSocket message (a 20 ms media message is about 300 bytes).
    ``max_media_bytes``: largest decoded media payload per message.
    """

    def __init__(
        self,
        engine: ScoringEngine,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        tracks: tuple[str, ...] = ("inbound",),
        max_message_bytes: int = 64 * 1024,
        max_media_bytes: int = 8000,
        idle_timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.engine = engine
        self.ssl_context = ssl_context
        self.host = host
        self.port = port
        self.tracks = tracks
        self.max_message_bytes = max_message_bytes
        self.max_media_bytes = max_media_bytes
        self.idle_timeout_s = idle_timeout_s
        self._server: Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._reading: set[asyncio.Task[Any]] = set()  # handlers still reading: close() may cancel these
        self._stopping = False

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            max_size=self.max_message_bytes,
            compression=None,
            ssl=self.ssl_context,
            logger=logging.getLogger("spoofsdk.examples.websockets"),
        )
        sock = next(iter(self._server.sockets)).getsockname()
        self.port = int(sock[1])
        scheme = "wss" if self.ssl_context is not None else "ws"
        logger.info("media-stream WebSocket server listening on %s://%s:%d", scheme, sock[0], self.port)

    async def close(self, grace_s: float = 10.0) -> None:
        """Stop accepting, end every active stream with reason ``shutdown`` (verdicts emitted)."""
        self._stopping = True
        if self._server is not None:
            self._server.close(close_connections=False)
        # cancel only the handlers still reading their call: one that is inside finish() is computing
        # and writing that call's verdict, and close() waits for it instead
        for task in list(self._reading):
            self._reading.discard(task)
            task.cancel()
        handlers = list(self._handlers)
        if handlers:
            await asyncio.wait(handlers, timeout=grace_s)
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), grace_s)

    async def _handle(self, ws: ServerConnection) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._reading.add(task)
        peer = ws.remote_address
        peer_s = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        st = _Stream()
        reason = "disconnect"
        error: BaseException | None = None
        close_code, close_reason = 1000, "stream ended"
        try:
            reason = await self._serve_stream(ws, st, peer_s)
            if reason == "shutdown":
                close_code, close_reason = 1001, "server shutting down"
        except StreamProtocolError as exc:
            reason, error = "protocol_error", exc
            close_code, close_reason = exc.close_code, str(exc)[:120]
            logger.error("%s stream %s: malformed media-stream message: %s", peer_s, st.stream_sid, exc)
        except CallTooLongError as exc:
            reason = "max_duration"
            close_code, close_reason = CLOSE_POLICY, "call too long"
            logger.warning("%s", exc)
        except CallRejectedError as exc:
            reason, close_code, close_reason = "rejected", 1013, "try again later"
            logger.warning("%s: %s", peer_s, exc)
        except asyncio.TimeoutError:  # not the builtin before Python 3.11
            reason, close_code, close_reason = "timeout", 1001, "idle"
            logger.warning("%s stream %s: no message within %g s", peer_s, st.stream_sid, self.idle_timeout_s)
        except (SpoofError, ValueError) as exc:
            reason, error = "error", exc
            close_code, close_reason = 1011, type(exc).__name__
            logger.error("%s stream %s: %s: %s", peer_s, st.stream_sid, type(exc).__name__, exc)
        except ConnectionClosed as exc:
            reason, error = self._closed_by_peer_or_websocket(exc, st, peer_s)
        except asyncio.CancelledError:  # our own close()
            reason, close_code, close_reason = "shutdown", 1001, "server shutting down"
            if hasattr(task, "uncancel"):  # Python >= 3.11
                task.uncancel()
        finally:
            self._reading.discard(task)  # from here on, shutdown waits for this handler
            try:
                if st.calls:
                    await asyncio.gather(*(c.finish(reason, error) for c in st.calls.values()))
                elif error is not None:
                    self.engine.emit(
                        {
                            "event": "call_error",
                            "call_id": st.call_id,
                            "track": None,
                            "error": type(error).__name__,
                            "message": str(error),
                            "meta": {"peer": peer_s, "streamSid": st.stream_sid},
                        }
                    )
                elif reason != "rejected":  # a call_rejected event already said why
                    if st.stream_sid is None:
                        message = f"closed ({reason}) before the start message"
                    else:
                        message = f"no scored track: {st.ignored_media} media messages ignored"
                    self.engine.emit(
                        {
                            "event": "connection_closed",
                            "call_id": st.call_id,
                            "track": None,
                            "source": "media_stream",
                            "reason": reason,
                            "message": message,
                            "meta": {"peer": peer_s, "streamSid": st.stream_sid},
                        }
                    )
            finally:
                await _close(ws, close_code, close_reason)
                self._handlers.discard(task)
                self._reading.discard(task)

    def _closed_by_peer_or_websocket(
        self, exc: ConnectionClosed, st: _Stream, peer_s: str
    ) -> tuple[str, BaseException | None]:
        """Why ``recv`` found the connection closed: (verdict reason, error for a ``call_error``)."""
        sent = exc.sent
        if sent is not None and sent.code == CLOSE_MESSAGE_TOO_BIG:  # websockets enforced max_size
            err: StreamProtocolError = MessageTooBigError(
                f"a WebSocket message over max_message_bytes={self.max_message_bytes} bytes: the connection "
                f"was closed with 1009 ({sent.reason or 'message too big'})"
            )
            logger.warning("%s stream %s: %s", peer_s, st.stream_sid, err)
            return "message_too_big", err
        if sent is not None and exc.rcvd is None and sent.code not in (1000, 1001):
            # websockets failed the connection itself (an invalid frame, invalid UTF-8 ...)
            err = StreamProtocolError(
                f"WebSocket protocol error: the connection was closed with {sent.code} ({sent.reason})",
                sent.code,
            )
            logger.warning("%s stream %s: %s", peer_s, st.stream_sid, err)
            return "protocol_error", err
        logger.info("%s stream %s: connection closed without a stop message: %s", peer_s, st.stream_sid, exc)
        return "disconnect", None

    async def _serve_stream(self, ws: ServerConnection, st: _Stream, peer_s: str) -> str:
        with IdleWatchdog(self.idle_timeout_s) as idle:
            while not self._stopping:
                raw = await idle.read(ws.recv())
                if isinstance(raw, bytes):
                    raise StreamProtocolError(
                        f"expected JSON text messages, given a {len(raw)}-byte binary message",
                        CLOSE_INVALID_DATA,
                    )
                try:
                    msg = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise StreamProtocolError(
                        f"expected a JSON message, given invalid JSON ({exc.msg} at {exc.pos}): {raw[:60]!r}",
                        CLOSE_INVALID_DATA,
                    ) from None
                if not isinstance(msg, dict):
                    raise StreamProtocolError(
                        f"expected a JSON object, given a JSON {type(msg).__name__}", CLOSE_INVALID_DATA
                    )
                event = msg.get("event")
                if event == "media":
                    call = self._media(msg, st)
                    if call is not None:  # a burst of buffered messages: let the scorer run
                        await idle.read(call.pace())
                elif event == "start":
                    self._start(msg, st, peer_s)
                elif event == "stop":
                    if st.stream_sid is None:
                        raise StreamProtocolError("a stop message before the start message")
                    return "stop"
                elif event == "connected":
                    logger.debug(
                        "%s connected: protocol %s %s", peer_s, msg.get("protocol"), msg.get("version")
                    )
                elif event in ("mark", "dtmf"):
                    logger.debug("%s stream %s: %s %s", peer_s, st.stream_sid, event, msg.get(event))
                else:
                    logger.debug("%s stream %s: ignoring unknown event %r", peer_s, st.stream_sid, event)
        return "shutdown"

    def _start(self, msg: dict[str, Any], st: _Stream, peer_s: str) -> None:
        if st.stream_sid is not None:
            raise StreamProtocolError(f"a second start message on stream {st.stream_sid}")
        start = _field(msg, "start", dict, "start")
        sid = msg.get("streamSid") or start.get("streamSid")
        if not isinstance(sid, str) or not sid:
            raise StreamProtocolError(f"start.streamSid: expected a non-empty string, given {sid!r:.60}")
        call_sid = start.get("callSid") or sid
        if not isinstance(call_sid, str):
            raise StreamProtocolError(f"start.callSid: expected a string, given {call_sid!r:.60}")
        fmt = _field(start, "mediaFormat", dict, "start")
        encoding = ENCODINGS.get(str(fmt.get("encoding")))
        rate, channels = fmt.get("sampleRate"), fmt.get("channels", 1)
        if encoding is None or isinstance(rate, bool) or not isinstance(rate, int) or channels != 1:
            raise StreamProtocolError(
                f"start.mediaFormat: expected encoding one of {sorted(ENCODINGS)}, an integer sampleRate and "
                f"channels 1, given {fmt!r:.120}"
            )
        st.stream_sid, st.call_id, st.encoding, st.sample_rate = sid, call_sid, encoding, rate
        tracks = start.get("tracks", ["inbound"])
        meta = {
            "peer": peer_s,
            "streamSid": sid,
            "accountSid": start.get("accountSid"),
            "customParameters": start.get("customParameters", {}),
        }
        for track in tracks if isinstance(tracks, list) else []:
            if track in self.tracks:
                st.calls[track] = self.engine.open_call(
                    call_sid, source="media_stream", track=track, meta=meta
                )
        if not st.calls:
            message = f"none of its tracks {tracks!r} is scored (--tracks {','.join(self.tracks)})"
            logger.warning("stream %s: %s", sid, message)
            self.engine.emit(
                {
                    "event": "stream_ignored",
                    "call_id": call_sid,
                    "track": None,
                    "tracks": tracks,
                    "scored_tracks": list(self.tracks),
                    "message": message,
                    "meta": meta,
                }
            )

    def _media(self, msg: dict[str, Any], st: _Stream) -> CallScorer | None:
        """Feed one media message to its track's call; return that call (None: the track is not scored)."""
        if st.stream_sid is None:
            raise StreamProtocolError("a media message before the start message")
        media = _field(msg, "media", dict, "media")
        payload = _field(media, "payload", str, "media")
        track = media.get("track", "inbound")
        call = st.calls.get(track) if isinstance(track, str) else None
        if len(payload) > self.max_media_bytes * 4 // 3 + 4:
            raise StreamProtocolError(
                f"media.payload: expected at most {self.max_media_bytes} bytes of audio, given "
                f"{len(payload)} base64 characters",
                CLOSE_INVALID_DATA,
            )
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise StreamProtocolError(
                f"media.payload: expected base64, given {payload[:40]!r} ({exc})", CLOSE_INVALID_DATA
            ) from None
        st.media_messages += 1
        if call is None:
            st.ignored_media += 1
            return None
        if data:
            call.feed(data, sample_rate=st.sample_rate, encoding=st.encoding, arrival=time.monotonic())
        return call


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m examples.media_stream_ws",
        description="Score telephony media streams (Twilio Media Streams protocol) for voice spoofing.",
    )
    p.add_argument("--host", default="127.0.0.1", help="listen address (default loopback; put TLS in front)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--tracks", default="inbound", help="comma-separated tracks to score: inbound,outbound")
    p.add_argument("--idle-timeout-s", type=float, default=10.0)
    p.add_argument(
        "--tls-cert", default=None, help="PEM certificate chain: serve wss:// (Twilio requires TLS)"
    )
    p.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    add_engine_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    tracks = tuple(t.strip() for t in args.tracks.split(",") if t.strip())

    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            logger.error("--tls-cert/--tls-key: cannot load %s: %s", args.tls_cert, exc)
            return 2

    return run_server(
        args,
        lambda engine: MediaStreamServer(
            engine,
            host=args.host,
            port=args.port,
            tracks=tracks,
            idle_timeout_s=args.idle_timeout_s,
            ssl_context=context,
        ),
    )
