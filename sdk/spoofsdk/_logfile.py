"""A text log of a job beside its outputs: while a block runs, one logger's records also go to a file.

Used by ``spoof_export`` (``PREFIX.export.log``, ``MODEL.calibration.log``) and ``spoof_train`` (the run
folder's ``train.log``): the file gets INFO and up (DEBUG too when the logger is set to DEBUG) whatever the
console shows, and every handler that saw the logger's records before (the CLI's stderr, a host's logging
set-up, pytest's ``caplog``) gets exactly what it got before. Everything is restored on the way out, also
on errors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LOG_FORMAT", "log_to_file"]

#: ``2026-12-07 13:50:01,123 INFO spoof_train: epoch 1: ...``
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Forward(logging.Handler):
    """Passes a record at or above ``threshold`` (the logger's effective level before :func:`log_to_file`
    lowered it) on as the logger would have: to its own earlier ``handlers`` (each at its level) and, when
    it propagated, to its ``parent``'s."""

    def __init__(
        self, threshold: int, handlers: list[logging.Handler], parent: logging.Logger | None
    ) -> None:
        super().__init__()
        self.threshold = threshold
        self.handlers = handlers
        self.parent_logger = parent

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < self.threshold:
            return
        found = 0  # as logging.Logger.callHandlers: the handlers up the chain, else the last resort
        handlers, parent = self.handlers, self.parent_logger
        while True:
            for h in handlers:
                found += 1
                if record.levelno >= h.level:
                    h.handle(record)
            if parent is None:
                break
            handlers, parent = parent.handlers, parent.parent if parent.propagate else None
        last = logging.lastResort
        if not found and last is not None and record.levelno >= last.level:
            last.handle(record)


@contextmanager
def log_to_file(
    log: logging.Logger, path: str | os.PathLike[str], *, fmt: str = LOG_FORMAT, mode: str = "w"
) -> Iterator[logging.FileHandler]:
    """Copy ``log``'s records (INFO and up, DEBUG too when the logger is set to DEBUG) into ``path``
    (``mode`` ``"w"``: a new log, ``"a"``: append; lines formatted by ``fmt``) while the block runs;
    yields the file's handler."""
    handler = logging.FileHandler(Path(path), mode=mode, encoding="utf-8")
    handler.setFormatter(logging.Formatter(fmt))
    level, propagate, moved = log.level, log.propagate, list(log.handlers)
    effective = log.getEffectiveLevel()
    forward = None
    if effective > logging.INFO:
        # The file wants INFO; every handler that saw this logger's records must not get more than before:
        # lower the logger's level and route the records they would have got through one forwarding
        # handler in their place.
        forward = _Forward(effective, moved, log.parent if propagate else None)
        for h in moved:
            log.removeHandler(h)
        log.setLevel(logging.INFO)
        log.propagate = False
        log.addHandler(forward)
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        handler.close()
        if forward is not None:
            log.removeHandler(forward)
            for h in moved:
                log.addHandler(h)
            log.setLevel(level)
            log.propagate = propagate
