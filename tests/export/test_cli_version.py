"""spoof-export --version (and of its calibrate command): one line, exit 0, nothing exported; no flag
abbreviations (``--version`` was once taken as ``--version-compatible`` by argparse's prefix matching)."""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import spoof_export
from spoof_export import cli


def _no_export(*args: object, **kwargs: object) -> None:
    raise AssertionError("spoof-export --version must not export")


@pytest.mark.parametrize(
    ("argv", "prog"),
    [
        (["--version"], "spoof-export"),
        (["CKPT", "-o", "out/m", "--version"], "spoof-export"),
        (["CKPT", "-o", "out/m", "--engine", "--version"], "spoof-export"),
        (["calibrate", "--version"], "spoof-export calibrate"),
        (["calibrate", "m.onnx", "--dev", "dev.tsv", "--version"], "spoof-export calibrate"),
        (["fuse", "--version"], "spoof-export fuse"),
        (["fuse", "a.onnx", "b.onnx", "-o", "f.onnx", "--version"], "spoof-export fuse"),
    ],
)
def test_version_prints_one_line_and_exports_nothing(
    argv: list[str], prog: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(spoof_export, "export", _no_export)
    monkeypatch.setenv("COLUMNS", "30")  # argparse's own version action would wrap the line here
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"{prog} {version('spoofsdk')} (onnx ")
    assert out.count("\n") == 1
    assert "onnxruntime " in out
    assert "tensorrt " in out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["CKPT", "-o", "out/m", "--version-c"],  # was --version-compatible
        ["CKPT", "-o", "out/m", "--vers"],  # was ambiguous: --version / --version-compatible
        ["CKPT", "-o", "out/m", "--fp1"],  # was --fp16
        ["calibrate", "m.onnx", "--dev", "dev.tsv", "--thresh", "eer"],  # was --threshold
    ],
)
def test_abbreviated_flags_are_usage_errors(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(spoof_export, "export", _no_export)
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert (
        f"unrecognized arguments: {argv[-1] if argv[-1] != 'eer' else '--thresh'}" in capsys.readouterr().err
    )


def test_console_script_version() -> None:
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "spoof_export.cli", "--version"], capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("spoof-export ")
