"""Progress and the text log of spoof-export: stage lines on the CLI's stderr, PREFIX.export.log, and a
host's logging left as it was."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spoof_export import export
from spoof_export.progress import log_to_file

from .conftest import _tiny_checkpoint

DONE = r"stage {}: done in \d+\.\d s"


def test_cli_reports_stage_and_clip_progress_on_stderr(tiny_checkpoint: Path, labelled_dir: Path, tmp_path):
    """The real CLI in its own process (its logging setup, not pytest's): every stage's start and end
    with its seconds and the dev clips' progress are on stderr; the summary names the log."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "spoof_export.cli",
            str(tiny_checkpoint),
            "-o",
            str(tmp_path / "m"),
            "--dev",
            str(labelled_dir),
            "--calibrate",
            "--no-speech-gate",
            "--latency-repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    err = run.stderr
    for name in ("onnx", "calibrate", "validate"):
        assert f"INFO spoof_export: stage {name}: started" in err
        assert re.search(DONE.format(name), err), name
    assert "dev set: reading: 8/8 clips" in err  # audio.py loading
    assert "scoring m.onnx.partial: 8/8 clips" in err  # calibrate's SDK scoring
    assert re.search(r"torch on dev: \d+ windows: \d+/\d+ batches", err)  # the torch dev logits
    assert "validate: ran m.onnx in ONNX Runtime (1/1)" in err
    assert f"log: {tmp_path / 'm.export.log'}" in run.stdout
    text = (tmp_path / "m.export.log").read_text(encoding="utf-8")
    for name in ("onnx", "calibrate", "validate"):
        assert re.search(r"^\S+ \S+ INFO " + DONE.format(name) + "$", text, re.M), name


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_log_file_gets_info_while_the_hosts_handlers_get_what_they_got_before(tmp_path: Path):
    """A host that set spoof_export to WARNING (the CLI's -q does the same through the root level) sees
    no INFO line, still its warnings; the file has the INFO lines; the logger is restored afterwards."""
    uncalibrated = _tiny_checkpoint(tmp_path / "ckpt")  # no calibration: the export warns
    logger = logging.getLogger("spoof_export")
    seen = _Collect()
    root = logging.getLogger()
    root.addHandler(seen)
    before = (logger.level, logger.propagate, list(logger.handlers))
    logger.setLevel(logging.WARNING)
    try:
        result = export(uncalibrated, output=tmp_path / "q", latency_repeats=1)
        after = (logger.level, logger.propagate, list(logger.handlers))
    finally:
        root.removeHandler(seen)
        logger.setLevel(before[0])
    ours = [r for r in seen.records if r.name == "spoof_export"]
    assert not [r.getMessage() for r in ours if r.levelno < logging.WARNING]
    assert any("UNCALIBRATED" in r.getMessage() for r in ours)  # warnings still reach the host
    assert after == (logging.WARNING, before[1], before[2])
    text = result.paths["log"].read_text(encoding="utf-8")
    assert re.search(DONE.format("onnx"), text)
    assert re.search(DONE.format("validate"), text)
    assert "WARNING the model is UNCALIBRATED" in text


def _log_and_fail(path: Path) -> None:
    logger = logging.getLogger("spoof_export")
    with log_to_file(path):
        logger.info("info line")
        logger.warning("warning line")
        raise RuntimeError("boom")


def test_log_to_file_routes_records_as_before_and_restores_the_logger_on_errors(tmp_path: Path):
    """Unit level, no export: a handler on the spoof_export logger itself and one above it both get what
    they got before (the WARNING, not the INFO); the file gets both; an error inside the block still
    removes the file handler and gives the logger back its level, propagation and handlers."""
    logger = logging.getLogger("spoof_export")
    own, above = _Collect(), _Collect()
    root = logging.getLogger()
    saved = (logger.level, logger.propagate, list(logger.handlers))
    logger.addHandler(own)
    root.addHandler(above)
    logger.setLevel(logging.WARNING)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            _log_and_fail(tmp_path / "a.log")
        state = (logger.level, logger.propagate, list(logger.handlers))
        logger.warning("after the block")
    finally:
        root.removeHandler(above)
        logger.removeHandler(own)
        logger.setLevel(saved[0])
    assert state == (logging.WARNING, saved[1], [*saved[2], own])
    assert [r.getMessage() for r in own.records] == ["warning line", "after the block"]
    assert [r.getMessage() for r in above.records if r.name == "spoof_export"] == [
        "warning line",
        "after the block",
    ]
    text = (tmp_path / "a.log").read_text(encoding="utf-8")
    assert re.search(r"^\S+ \S+ INFO info line$", text, re.M)
    assert re.search(r"^\S+ \S+ WARNING warning line$", text, re.M)
    assert "after the block" not in text
