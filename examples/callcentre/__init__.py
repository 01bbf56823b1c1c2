"""Shared parts of the call-centre plugins: per-call scoring engine, event sink, CLI plumbing, G.711."""

from __future__ import annotations

from .engine import (
    CallRejectedError,
    CallScorer,
    CallTooLongError,
    EngineConfig,
    Event,
    EventCallback,
    JsonLinesSink,
    PendingAudio,
    ScoringEngine,
)

__all__ = [
    "CallRejectedError",
    "CallScorer",
    "CallTooLongError",
    "EngineConfig",
    "Event",
    "EventCallback",
    "JsonLinesSink",
    "PendingAudio",
    "ScoringEngine",
]
