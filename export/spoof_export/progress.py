"""Progress and the text log of an export, through the ``spoof_export`` logger.

* :func:`progress`: a ``tick(done)`` callback that logs ``WHAT: done/total UNIT, rate`` at most every
  ``every`` seconds and at the end (dev-clip scoring, audio reading, ONNX Runtime runs).
* :func:`announce`: ``stage NAME: started`` / ``stage NAME: done in S s`` (``failed after S s (Error)``)
  around a stage of :mod:`spoof_export.stages` or another long step.
* :func:`log_to_file`: while it is open, every INFO (or finer) record of the ``spoof_export`` logger also
  goes to a text file with timestamps, whatever the logger's level; what reaches the handlers above it
  (the CLI's stderr, a host's logging setup, pytest's ``caplog``) is exactly what reached them before.
  The handler is removed and the logger restored on the way out, also on errors.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from spoofsdk._logfile import log_to_file as _log_to_file

__all__ = ["LOG_FORMAT", "announce", "file_only", "log_to_file", "progress"]

log = logging.getLogger("spoof_export")

#: Lines of the text log: ``2026-12-07 13:50:01,123 INFO stage onnx: done in 1.2 s``.
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def progress(what: str, total: int, *, unit: str = "clips", every: float = 10.0) -> Callable[[int], None]:
    """A callback ``tick(done)`` logging ``WHAT: done/total UNIT, R UNIT/s`` at INFO when ``every`` seconds
    have passed since the last line, and always when ``done == total``."""
    t0 = last = time.perf_counter()

    def tick(done: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if done == total or now - last >= every:
            last = now
            rate = done / max(now - t0, 1e-9)
            log.info("%s: %d/%d %s, %.1f %s/s", what, done, total, unit, rate, unit)

    return tick


@contextmanager
def announce(name: str, *, kind: str = "stage") -> Iterator[None]:
    """Log ``KIND NAME: started`` on entry and ``KIND NAME: done in S s`` on exit (INFO); an exception is
    logged as ``KIND NAME: failed after S s (ErrorType)`` and re-raised."""
    t0 = time.perf_counter()
    log.info("%s %s: started", kind, name)
    try:
        yield
    except BaseException as exc:
        log.info("%s %s: failed after %.1f s (%s)", kind, name, time.perf_counter() - t0, type(exc).__name__)
        raise
    log.info("%s %s: done in %.1f s", kind, name, time.perf_counter() - t0)


@contextmanager
def log_to_file(path: str | os.PathLike[str], *, mode: str = "w") -> Iterator[logging.FileHandler]:
    """Copy the ``spoof_export`` logger's records into ``path`` while the block runs (see
    :func:`spoofsdk._logfile.log_to_file`); yields the handler (:func:`file_only` writes a line to it
    alone)."""
    with _log_to_file(log, path, fmt=LOG_FORMAT, mode=mode) as handler:
        yield handler


def file_only(handler: logging.Handler, level: int, msg: str, *args: object) -> None:
    """Write one record to ``handler`` alone (not to stderr): what the CLI already prints another way."""
    handler.handle(log.makeRecord(log.name, level, __file__, 0, msg, args, None))
