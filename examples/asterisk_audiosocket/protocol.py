"""The AudioSocket wire protocol (Asterisk ``AudioSocket()`` / ``chan_audiosocket``).

Each message is a 3-byte header (1-byte kind, 2-byte big-endian payload length) and the payload:

======  ==========================================================================================
kind    payload
======  ==========================================================================================
0x00    hangup (length 0); closing the socket also ends the call
0x01    the call's UUID, 16 bytes (binary form); Asterisk sends it first
0x03    one ASCII DTMF digit (added to Asterisk in 2025; older releases never send it)
0x10    audio: signed linear 16-bit little-endian, 8 kHz, mono (20 ms = 320 bytes)
0x11    audio: the same at 16 kHz (``slin16``; recent Asterisk only)
0xff    error; optional 1-byte code: 0x01 hangup, 0x02 frame forwarding, 0x04 memory
======  ==========================================================================================

Reference: Asterisk ``include/asterisk/res_audiosocket.h`` and ``res/res_audiosocket.c``, and the
protocol description of the CyCoreSystems/audiosocket Go library.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

__all__ = [
    "AUDIO_RATES",
    "ERROR_CODES",
    "KIND_AUDIO",
    "KIND_AUDIO_SLIN16",
    "KIND_DTMF",
    "KIND_ERROR",
    "KIND_HANGUP",
    "KIND_UUID",
    "Frame",
    "ProtocolError",
    "encode_frame",
    "read_frame",
]

KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_AUDIO = 0x10
KIND_AUDIO_SLIN16 = 0x11
KIND_ERROR = 0xFF
AUDIO_RATES = {KIND_AUDIO: 8000, KIND_AUDIO_SLIN16: 16000}
KINDS = {
    KIND_HANGUP: "hangup",
    KIND_UUID: "uuid",
    KIND_DTMF: "dtmf",
    KIND_AUDIO: "audio",
    KIND_AUDIO_SLIN16: "audio-slin16",
    KIND_ERROR: "error",
}
ERROR_CODES = {0x00: "none", 0x01: "hangup", 0x02: "frame forwarding", 0x04: "memory"}
HEADER_BYTES = 3
MAX_LENGTH = 0xFFFF


class ProtocolError(ValueError):
    """A malformed or out-of-order AudioSocket message; it ends that call (never the server)."""


@dataclass(frozen=True)
class Frame:
    kind: int
    payload: bytes

    @property
    def name(self) -> str:
        return KINDS.get(self.kind, f"0x{self.kind:02x}")


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    if not 0 <= kind <= 0xFF:
        raise ValueError(f"kind: expected 0..255, given {kind}")
    if len(payload) > MAX_LENGTH:
        raise ValueError(f"payload: expected at most {MAX_LENGTH} bytes, given {len(payload)}")
    return bytes((kind,)) + len(payload).to_bytes(2, "big") + bytes(payload)


def _check(kind: int, length: int, max_audio_bytes: int) -> None:
    if kind not in KINDS:
        known = ", ".join(f"0x{k:02x}" for k in KINDS)
        raise ProtocolError(f"unknown message kind 0x{kind:02x} (length {length}): expected one of {known}")
    if kind == KIND_UUID and length != 16:
        raise ProtocolError(f"UUID message: expected a 16-byte payload, given {length} bytes")
    if kind == KIND_HANGUP and length != 0:
        raise ProtocolError(f"hangup message: expected an empty payload, given {length} bytes")
    if kind == KIND_DTMF and length != 1:
        raise ProtocolError(f"DTMF message: expected a 1-byte payload, given {length} bytes")
    if kind == KIND_ERROR and length > 16:
        raise ProtocolError(f"error message: expected at most a 16-byte code, given {length} bytes")
    if kind in AUDIO_RATES:
        if length > max_audio_bytes:
            raise ProtocolError(
                f"audio message of {length} bytes: expected at most {max_audio_bytes} bytes "
                f"({max_audio_bytes // 2 * 1000 // AUDIO_RATES[kind]} ms)"
            )
        if length % 2:
            raise ProtocolError(
                f"audio message of {length} bytes: expected whole 16-bit samples (an even length)"
            )


async def read_frame(reader: asyncio.StreamReader, *, max_audio_bytes: int = 3200) -> Frame | None:
    """Read one message; ``None`` when the peer closed the connection between messages.

    Raises :class:`ProtocolError` for an unknown kind, a payload length that does not fit its kind
    (checked from the header before the payload is read, so a bogus length allocates nothing) or a
    connection closed inside a message.
    """
    try:
        header = await reader.readexactly(HEADER_BYTES)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ProtocolError(
            f"truncated message header: expected {HEADER_BYTES} bytes, given {len(exc.partial)} before the "
            "connection closed"
        ) from None
    kind = header[0]
    length = int.from_bytes(header[1:3], "big")
    _check(kind, length, max_audio_bytes)
    try:
        payload = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(
            f"truncated {KINDS[kind]} message: expected a {length}-byte payload, given {len(exc.partial)} "
            "bytes before the connection closed"
        ) from None
    return Frame(kind, payload)
