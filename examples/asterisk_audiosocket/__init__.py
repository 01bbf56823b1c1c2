"""Asterisk AudioSocket plugin: score live calls for voice spoofing."""

from __future__ import annotations

from .server import AudioSocketServer, main

__all__ = ["AudioSocketServer", "main"]
