"""AudioSocket server: score every Asterisk call that connects, with one shared detector.

Run (from the repository root)::

    python -m examples.asterisk_audiosocket --model detector.onnx --port 9092 --out calls.jsonl

Each TCP connection is one call: the UUID message opens it, audio messages are fed to the call's
:class:`~examples.callcentre.CallScorer` (one :class:`~spoofsdk.StreamingSession` on the shared
:class:`~spoofsdk.BatchScheduler`), and hangup, an Asterisk error message, an idle timeout or the
connection closing ends it with a verdict. A malformed message ends that call with a ``call_error``
event and a logged error; the server keeps serving the other calls. SIGINT / SIGTERM stop accepting,
finish every active call (verdict reason ``shutdown``) and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from spoofsdk.errors import SpoofError

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
    ProtocolError,
    read_frame,
)

__all__ = ["AudioSocketServer", "main"]

logger = logging.getLogger("spoofsdk.examples")


class AudioSocketServer:
    """Asyncio TCP server speaking AudioSocket; one :class:`CallScorer` per connection.

    ``max_audio_bytes``: largest audio payload accepted (default 3200 bytes = 200 ms at 8 kHz; Asterisk
    sends 320-byte, 20 ms frames). ``first_message_timeout_s``: the UUID must arrive within this.
    ``idle_timeout_s``: a call with no message for this long is ended (Asterisk sends audio every 20 ms
    while the channel is up).
    """

    def __init__(
        self,
        engine: ScoringEngine,
        *,
        host: str = "127.0.0.1",
        port: int = 9092,
        max_audio_bytes: int = 3200,
        first_message_timeout_s: float = 5.0,
        idle_timeout_s: float = 10.0,
    ) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self.max_audio_bytes = max_audio_bytes
        self.first_message_timeout_s = first_message_timeout_s
        self.idle_timeout_s = idle_timeout_s
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
        call: CallScorer | None = None
        call_id: str | None = None
        reason = "disconnect"
        error: BaseException | None = None
        try:
            if self._stopping:
                return
            first = await asyncio.wait_for(
                read_frame(reader, max_audio_bytes=self.max_audio_bytes), self.first_message_timeout_s
            )
            if first is None:
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
        except CallRejectedError as exc:
            logger.warning("%s: %s", peer_s, exc)
        except asyncio.TimeoutError:  # not the builtin before Python 3.11
            reason = "timeout"
            logger.warning("%s call %s: no message within the timeout; ending the call", peer_s, call_id)
        except (SpoofError, ValueError) as exc:
            reason, error = "error", exc
            logger.error("%s call %s: %s: %s", peer_s, call_id, type(exc).__name__, exc)
        except (ConnectionError, OSError) as exc:
            reason = "disconnect"
            logger.info("%s call %s: connection lost: %s", peer_s, call_id, exc)
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
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                    await writer.wait_closed()
                self._handlers.discard(task)
                self._reading.discard(task)

    async def _serve_call(self, reader: asyncio.StreamReader, call: CallScorer) -> str:
        """Feed the call until it ends; return the reason."""
        with IdleWatchdog(self.idle_timeout_s) as idle:
            while not self._stopping:
                frame = await idle.read(read_frame(reader, max_audio_bytes=self.max_audio_bytes))
                if frame is None:
                    return "disconnect"
                rate = AUDIO_RATES.get(frame.kind)
                if rate is not None:
                    if frame.payload:
                        call.feed(frame.payload, sample_rate=rate, encoding="pcm16", arrival=time.monotonic())
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m examples.asterisk_audiosocket",
        description="Score Asterisk calls streamed over AudioSocket for voice spoofing (JSON-line events).",
    )
    p.add_argument("--host", default="127.0.0.1", help="listen address (default loopback)")
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--max-audio-bytes", type=int, default=3200, help="largest audio payload accepted")
    p.add_argument("--idle-timeout-s", type=float, default=10.0)
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
            max_audio_bytes=args.max_audio_bytes,
            idle_timeout_s=args.idle_timeout_s,
        ),
    )
