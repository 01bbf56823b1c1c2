"""A C99 program (native/tests/c_api_test.c) compiled with the system C compiler against the
installed header and libspoof, then run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import spoofsdk

from .conftest import REPO, header_path


def test_c99_program_against_installed_library(tmp_path: Path) -> None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler on PATH (scripts/setup.sh installs build-essential)")
    lib = spoofsdk.native_library_path()
    include = header_path().parents[1]
    exe = tmp_path / "c_api_test"
    build = subprocess.run(
        [cc, "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", f"-I{include}",
         str(REPO / "native" / "tests" / "c_api_test.c"), "-o", str(exe),
         str(lib), f"-Wl,-rpath,{lib.parent}", "-lm"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"c_api_test: ok (libspoof {spoofsdk.__version__}, ABI 1)")
