"""Media-stream WebSocket plugin (Twilio Media Streams protocol): score live calls for voice spoofing."""

from __future__ import annotations

from .server import MediaStreamServer, StreamProtocolError, main

__all__ = ["MediaStreamServer", "StreamProtocolError", "main"]
