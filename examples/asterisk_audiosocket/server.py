"""AudioSocket server: score every Asterisk call that connects, with one shared detector.

Run (from the repository root)::

    python -m examples.asterisk_audiosocket --model detector.onnx --port 9092 --out calls.jsonl

Each TCP connection is one call: the UUID message opens it, audio messages (any of the slin kinds
0x10-0x18; the first one sets the call's rate) are fed to the call's
:class:`~examples.callcentre.CallScorer` (one :class:`~spoofsdk.StreamingSession` on the shared
:class:`~spoofsdk.BatchScheduler`), and the end of the call gives its verdict. The verdict's
``reason`` says how the call ended:

* ``hangup``: a hangup message (0x00), or the connection closed between two messages, which is how
  Asterisk ends every call (``app_audiosocket`` closes the socket without sending 0x00);
* ``disconnect``: the connection broke (reset by the peer, a socket error; logged as a WARNING);
* ``protocol_error``: a malformed message, or the connection closed inside one (``call_error`` event);
* ``unsupported_audio``: audio at a rate the detector's front end cannot take (``call_error`` event);
* ``asterisk_error_0xNN``: Asterisk sent an error message; ``timeout``: nothing received for
  ``idle_timeout_s`` (off by default); ``max_duration``; ``error``: any other failure (``call_error`` event);
* ``shutdown``: SIGINT / SIGTERM, which stop accepting, finish every active call and exit 0.

Note that a crashed Asterisk also closes its sockets (the kernel sends FIN, as nothing we sent is left
unread), so it reads as ``hangup``; a dead host or network is found by TCP keepalive (``keepalive_s``)
and reads as ``disconnect``. Silence is not a dead peer: ``chan_audiosocket`` (ARI ``externalMedia``)
sends only the frames written to its channel, so a bridge where no one talks sends nothing for as long
as that lasts; the idle timeout is therefore off unless asked for.
The server keeps serving the other calls whatever one call does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import time
import uuid
from typing import Any

from spoofsdk.errors import InvalidArgumentError, InvalidAudioError, SpoofError

from ..callcentre.cli import add_engine_arguments, configure_logging, run_server
from ..callcentre.engine import CallRejectedError, CallScorer, CallTooLongError, ScoringEngine
from ..callcentre.idle import IdleWatchdog
from .protocol import (
    AUDIO_RATES,
    ERROR_CODES,
    KIND_DTMF,
    KIND_ERROR,
    KIND_HANGUP,
    KIND_UUID,
    KINDS,
    ProtocolError,
    read_frame,
)

__all__ = ["AudioSocketServer", "UnsupportedAudioError", "main"]

logger = logging.getLogger("spoofsdk.examples")


class UnsupportedAudioError(ValueError):
    """Audio of a kind the detector's front end cannot take (its sample rate); it ends that call."""


class AudioSocketServer:
    """Asyncio TCP server speaking AudioSocket; one :class:`CallScorer` per connection.

    ``max_audio_ms``: longest audio payload accepted, at the kind's rate (default 200 ms = 3200 bytes at
    8 kHz; Asterisk sends 20 ms frames). ``first_message_timeout_s``: the UUID must arrive within this.
    ``idle_timeout_s``: a call with no message for this long is ended, reason ``timeout`` (default
    None: never; ``AudioSocket()`` on an RTP channel sends a frame every 20 ms, but
    ``chan_audiosocket`` / ARI ``externalMedia`` send nothing while their bridge is silent, and a
    server that closes such a call hangs up Asterisk's channel). ``keepalive_s``: TCP keepalive on
    every connection (first probe after this much silence, then 3 probes ``keepalive_s / 3`` apart),
    so that a peer that vanished without closing (host or network down) ends its call as
    ``disconnect``; None turns it off.
    """

    def __init__(
        self,
        engine: ScoringEngine,
        *,
        host: str = "127.0.0.1",
        port: int = 9092,
        max_audio_ms: int = 200,
        first_message_timeout_s: float = 5.0,
        idle_timeout_s: float | None = None,
        keepalive_s: float | None = 10.0,
    ) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        if (
            isinstance(max_audio_ms, bool)
            or not isinstance(max_audio_ms, int)
            or not 1 <= max_audio_ms <= 10_000
        ):
            raise InvalidArgumentError(
                f"max_audio_ms: expected an integer in [1, 10000], given {max_audio_ms!r}"
            )
        self.max_audio_ms = max_audio_ms
        self.first_message_timeout_s = first_message_timeout_s
        self.idle_timeout_s = idle_timeout_s if idle_timeout_s is not None and idle_timeout_s > 0 else None
        if keepalive_s is not None and not keepalive_s >= 1:
            raise InvalidArgumentError(f"keepalive_s: expected None or at least 1 s, given {keepalive_s!r}")
        self.keepalive_s = keepalive_s
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._reading: set[asyncio.Task[Any]] = set()  # handlers still reading: close() may cancel these
        self._stopping = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sock = self._server.sockets[0].getsockname()
        self.port = int(sock[1])
        logger.info("AudioSocket server listening on %s:%d", sock[0], self.port)

    async def close(self, grace_s: float = 10.0) -> None:
        """Stop accepting; end every active call with reason ``shutdown`` (verdicts emitted)."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        # cancel only the handlers still reading their call: one that is inside finish() is computing
        # and writing that call's verdict, and close() waits for it instead
        for task in list(self._reading):
            self._reading.discard(task)
            task.cancel()
        handlers = list(self._handlers)
        if handlers:
            await asyncio.wait(handlers, timeout=grace_s)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._reading.add(task)
        peer = writer.get_extra_info("peername")
        peer_s = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._set_keepalive(writer)
        call: CallScorer | None = None
        call_id: str | None = None
        reason = "disconnect"
        error: BaseException | None = None
        try:
            if self._stopping:
                reason = "shutdown"
                return
            first = await asyncio.wait_for(
                read_frame(reader, max_audio_ms=self.max_audio_ms), self.first_message_timeout_s
            )
            if first is None:
                reason = "hangup"
                logger.info("%s closed before sending a UUID", peer_s)
                return
            if first.kind != KIND_UUID:
                raise ProtocolError(f"expected a UUID message (kind 0x01) first, given {first.name}")
            call_id = str(uuid.UUID(bytes=first.payload))
            call = self.engine.open_call(call_id, source="audiosocket", meta={"peer": peer_s})
            reason = await self._serve_call(reader, call)
        except ProtocolError as exc:
            reason, error = "protocol_error", exc
            logger.error("%s call %s: malformed AudioSocket message: %s", peer_s, call_id, exc)
        except CallTooLongError as exc:
            reason = "max_duration"
            logger.warning("%s", exc)
        except CallRejectedError as exc:  # the engine emitted a call_rejected event
            reason = "rejected"
            logger.warning("%s: %s", peer_s, exc)
        except asyncio.TimeoutError:  # not the builtin before Python 3.11
            reason = "timeout"
            logger.warning("%s call %s: no message within the timeout; ending the call", peer_s, call_id)
        except UnsupportedAudioError as exc:
            reason, error = "unsupported_audio", exc
            logger.error("%s call %s: %s", peer_s, call_id, exc)
        except (SpoofError, ValueError) as exc:
            reason, error = "error", exc
            logger.error("%s call %s: %s: %s", peer_s, call_id, type(exc).__name__, exc)
        except (ConnectionError, OSError) as exc:  # reset or failed: not how Asterisk ends a call
            reason = "disconnect"
            logger.warning("%s call %s: connection broken: %s: %s", peer_s, call_id, type(exc).__name__, exc)
        except asyncio.CancelledError:  # our own close(): finish the call below instead of propagating
            reason = "shutdown"
            if hasattr(task, "uncancel"):  # Python >= 3.11
                task.uncancel()
        finally:
            self._reading.discard(task)  # from here on, shutdown waits for this handler
            try:
                if call is not None:
                    await call.finish(reason, error)
                elif error is not None:
                    self.engine.emit(
                        {
                            "event": "call_error",
                            "call_id": call_id,
                            "track": "inbound",
                            "error": type(error).__name__,
                            "message": str(error),
                            "meta": {"peer": peer_s},
                        }
                    )
                elif reason != "rejected":  # no call was opened: say why the connection ended
                    before = {
                        "hangup": "closed before a UUID message",
                        "timeout": f"no UUID message within {self.first_message_timeout_s:g} s",
                        "shutdown": "the server is shutting down",
                    }
                    self.engine.emit(
                        {
                            "event": "connection_closed",
                            "call_id": call_id,
                            "track": "inbound",
                            "source": "audiosocket",
                            "reason": reason,
                            "message": before.get(reason, f"{reason} before a UUID message"),
                            "meta": {"peer": peer_s},
                        }
                    )
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                    await writer.wait_closed()
                self._handlers.discard(task)
                self._reading.discard(task)

    def _set_keepalive(self, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if self.keepalive_s is None or sock is None:
            return
        idle = max(1, int(self.keepalive_s))
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; macOS has TCP_KEEPALIVE instead
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            if hasattr(socket, "TCP_KEEPINTVL"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // 3))
            if hasattr(socket, "TCP_KEEPCNT"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        except OSError as exc:  # not a TCP socket (tests over other transports): no keepalive
            logger.debug("TCP keepalive not set: %s", exc)

    async def _serve_call(self, reader: asyncio.StreamReader, call: CallScorer) -> str:
        """Feed the call until it ends; return the reason."""
        with IdleWatchdog(self.idle_timeout_s) as idle:
            while not self._stopping:
                frame = await idle.read(read_frame(reader, max_audio_ms=self.max_audio_ms))
                if frame is None:  # closed between messages: how app_audiosocket ends every call
                    logger.debug("call %s: connection closed without a hangup message: hangup", call.call_id)
                    return "hangup"
                rate = AUDIO_RATES.get(frame.kind)
                if rate is not None:
                    if frame.payload:
                        self._feed(call, frame.kind, rate, frame.payload)
                        await idle.read(call.pace())  # a burst of buffered frames: let the scorer run
                elif frame.kind == KIND_HANGUP:
                    return "hangup"
                elif frame.kind == KIND_ERROR:
                    code = frame.payload[0] if frame.payload else 0
                    logger.warning(
                        "call %s: Asterisk reported error 0x%02x (%s); ending the call",
                        call.call_id,
                        code,
                        ERROR_CODES.get(code, "application-specific"),
                    )
                    return f"asterisk_error_0x{code:02x}"
                elif frame.kind == KIND_DTMF:
                    logger.debug("call %s: DTMF %r", call.call_id, frame.payload.decode("ascii", "replace"))
                elif frame.kind == KIND_UUID:
                    raise ProtocolError("a second UUID message on the same connection")
        return "shutdown"

    @staticmethod
    def _feed(call: CallScorer, kind: int, rate: int, payload: bytes) -> None:
        if call.session is not None:
            call.feed(payload, sample_rate=rate, encoding="pcm16", arrival=time.monotonic())
            return
        try:  # the first audio opens the session at the kind's rate
            call.feed(payload, sample_rate=rate, encoding="pcm16", arrival=time.monotonic())
        except InvalidAudioError as exc:
            raise UnsupportedAudioError(
                f"audio kind 0x{kind:02x} ({KINDS[kind]}, {rate} Hz) cannot be scored: {exc}"
            ) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m examples.asterisk_audiosocket",
        description="Score Asterisk calls streamed over AudioSocket for voice spoofing (JSON-line events).",
    )
    p.add_argument("--host", default="127.0.0.1", help="listen address (default loopback)")
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--max-audio-ms", type=int, default=200,
                   help="longest audio payload accepted, at its rate (Asterisk sends 20 ms)")  # fmt: skip
    p.add_argument(
        "--idle-timeout-s",
        type=float,
        default=0.0,
        help="end a call after this long without a message (default 0: never; "
        "chan_audiosocket / ARI externalMedia send nothing while their bridge is silent)",
    )
    p.add_argument("--keepalive-s", type=float, default=10.0,
                   help="TCP keepalive: a peer gone without closing ends its call after about 2x this "
                        "(0: off)")  # fmt: skip
    add_engine_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)

    return run_server(
        args,
        lambda engine: AudioSocketServer(
            engine,
            host=args.host,
            port=args.port,
            max_audio_ms=args.max_audio_ms,
            idle_timeout_s=args.idle_timeout_s,
            keepalive_s=args.keepalive_s or None,
        ),
    )
