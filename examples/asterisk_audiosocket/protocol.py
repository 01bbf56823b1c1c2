"""The AudioSocket wire protocol (Asterisk ``AudioSocket()`` / ``chan_audiosocket``).

Each message is a 3-byte header (1-byte kind, 2-byte big-endian payload length) and the payload:

======  ==========================================================================================
kind    payload
======  ==========================================================================================
0x00    hangup (length 0); Asterisk itself ends a call by closing the socket instead (see below)
0x01    the call's UUID, 16 bytes (binary form); Asterisk sends it first
0x03    one ASCII DTMF digit (added to Asterisk in 2025; older releases never send it)
0x10    audio: signed linear 16-bit little-endian, mono, 8 kHz (``slin``; 20 ms = 320 bytes)
0x11    the same at 12 kHz (``slin12``)
0x12    16 kHz (``slin16``)
0x13    24 kHz (``slin24``)
0x14    32 kHz (``slin32``)
0x15    44.1 kHz (``slin44``)
0x16    48 kHz (``slin48``)
0x17    96 kHz (``slin96``)
0x18    192 kHz (``slin192``)
0xff    error; optional 1-byte code: 0x01 hangup, 0x02 frame forwarding, 0x04 memory
======  ==========================================================================================

Kinds 0x11-0x18 were added to Asterisk in October 2025 ("res_audiosocket: add message types for all
slin sample rates"): ``res_audiosocket.c`` picks the kind from the format of the frame it forwards, so
``AudioSocket()`` (which sets the channel to ``slin``) sends 0x10 and ``chan_audiosocket`` /
ARI ``externalMedia`` send the kind of the format they were created with. Earlier releases send
only 0x10.

How a call ends: ``app_audiosocket`` returns when the channel hangs up and closes the socket without
sending 0x00; ``res_audiosocket`` reads a closed socket as a hang-up too. So a connection closed
(TCP FIN) between two messages is a normal end of call, exactly like 0x00. A connection *reset*, a
socket error, or a close inside a message (truncated header or payload) is a broken connection.

Reference: Asterisk ``include/asterisk/res_audiosocket.h``, ``res/res_audiosocket.c`` and
``apps/app_audiosocket.c``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

__all__ = [
    "AUDIO_KINDS",
    "AUDIO_RATES",
    "ERROR_CODES",
    "KIND_AUDIO",
    "KIND_AUDIO_SLIN12",
    "KIND_AUDIO_SLIN16",
    "KIND_AUDIO_SLIN24",
    "KIND_AUDIO_SLIN32",
    "KIND_AUDIO_SLIN44",
    "KIND_AUDIO_SLIN48",
    "KIND_AUDIO_SLIN96",
    "KIND_AUDIO_SLIN192",
    "KIND_DTMF",
    "KIND_ERROR",
    "KIND_HANGUP",
    "KIND_UUID",
    "Frame",
    "ProtocolError",
    "encode_frame",
    "max_audio_bytes",
    "read_frame",
]

KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_AUDIO = 0x10
KIND_AUDIO_SLIN12 = 0x11
KIND_AUDIO_SLIN16 = 0x12
KIND_AUDIO_SLIN24 = 0x13
KIND_AUDIO_SLIN32 = 0x14
KIND_AUDIO_SLIN44 = 0x15
KIND_AUDIO_SLIN48 = 0x16
KIND_AUDIO_SLIN96 = 0x17
KIND_AUDIO_SLIN192 = 0x18
KIND_ERROR = 0xFF
#: audio kind -> sample rate (Hz)
AUDIO_RATES = {
    KIND_AUDIO: 8000,
    KIND_AUDIO_SLIN12: 12000,
    KIND_AUDIO_SLIN16: 16000,
    KIND_AUDIO_SLIN24: 24000,
    KIND_AUDIO_SLIN32: 32000,
    KIND_AUDIO_SLIN44: 44100,
    KIND_AUDIO_SLIN48: 48000,
    KIND_AUDIO_SLIN96: 96000,
    KIND_AUDIO_SLIN192: 192000,
}
#: sample rate (Hz) -> audio kind
AUDIO_KINDS = {rate: kind for kind, rate in AUDIO_RATES.items()}
KINDS = {
    KIND_HANGUP: "hangup",
    KIND_UUID: "uuid",
    KIND_DTMF: "dtmf",
    KIND_AUDIO: "audio",
    **{kind: f"audio-slin{rate // 1000}" for kind, rate in AUDIO_RATES.items() if kind != KIND_AUDIO},
    KIND_ERROR: "error",
}
ERROR_CODES = {0x00: "none", 0x01: "hangup", 0x02: "frame forwarding", 0x04: "memory"}
HEADER_BYTES = 3
MAX_LENGTH = 0xFFFF


def max_audio_bytes(kind: int, max_audio_ms: int) -> int:
    """Largest payload of audio ``kind`` accepted: ``max_audio_ms`` of audio (even, within 16 bits)."""
    return min(MAX_LENGTH - 1, AUDIO_RATES[kind] * 2 * max_audio_ms // 1000 // 2 * 2)


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


def _check(kind: int, length: int, max_audio_ms: int) -> None:
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
        limit = max_audio_bytes(kind, max_audio_ms)
        if length > limit:
            raise ProtocolError(
                f"audio message of {length} bytes: expected at most {limit} bytes "
                f"({max_audio_ms} ms at {AUDIO_RATES[kind]} Hz)"
            )
        if length % 2:
            raise ProtocolError(
                f"audio message of {length} bytes: expected whole 16-bit samples (an even length)"
            )


async def read_frame(reader: asyncio.StreamReader, *, max_audio_ms: int = 200) -> Frame | None:
    """Read one message; ``None`` when the peer closed the connection between messages (a hang-up).

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
    _check(kind, length, max_audio_ms)
    try:
        payload = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(
            f"truncated {KINDS[kind]} message: expected a {length}-byte payload, given {len(exc.partial)} "
            "bytes before the connection closed"
        ) from None
    return Frame(kind, payload)
