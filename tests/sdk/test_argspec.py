"""Signature parity (python-soundfile style): score(), stream(), StreamingSession and the CLI agree."""

from __future__ import annotations

import inspect

from spoofsdk import BatchScheduler, Detector, StreamingSession
from spoofsdk.cli import build_parser, score_files


def _params(func: object) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_score_and_stream_share_options_and_defaults() -> None:
    score, stream = _params(Detector.score), _params(Detector.stream)
    shared = set(score) & set(stream) - {"self"}
    assert shared == {"sample_rate", "aggregate"}
    for name in shared:
        assert score[name].default == stream[name].default, name
        assert score[name].kind == stream[name].kind, name


def test_stream_forwards_every_session_option() -> None:
    stream = _params(Detector.stream)
    session = _params(StreamingSession.__init__)
    assert list(stream)[1:] == list(session)[2:]  # minus self / (self, detector)
    for name, p in stream.items():
        if name != "self":
            assert session[name].default == p.default, name
            assert session[name].kind == p.kind, name
    assert _params(BatchScheduler.stream)["sample_rate"].default == stream["sample_rate"].default


def test_cli_flags_cover_score_files() -> None:
    dests = {a.dest for a in build_parser()._actions}
    renamed = {"num_threads": "threads", "recursive": "no_recursive"}
    params = _params(score_files)
    for name in params:
        assert renamed.get(name, name) in dests, name
    ctor = _params(Detector.__init__)
    for name in ("backend", "device_id", "num_threads", "window_s", "hop_s", "aggregate", "threshold"):
        assert params[name].default == ctor[name].default, name
