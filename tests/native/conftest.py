"""Fixtures of the native tests: libspoof through cffi in ABI mode (no compiler needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import spoofsdk

REPO = Path(__file__).resolve().parents[2]


def header_path() -> Path:
    """spoof.h as installed beside libspoof (falls back to the source tree)."""
    installed = spoofsdk.native_library_path().parent / "include" / "spoof" / "spoof.h"
    return installed if installed.is_file() else REPO / "native" / "include" / "spoof" / "spoof.h"


def cdef_from_header(text: str) -> str:
    """The declarations of spoof.h as cffi's cdef accepts them (no preprocessor, no macros)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    lines = []
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#") or s in ('extern "C" {', "}"):
            continue
        lines.append(line.replace("SPOOF_API ", ""))
    return "\n".join(lines)


@pytest.fixture(scope="session")
def ffi_lib() -> tuple[Any, Any]:
    cffi = pytest.importorskip("cffi")
    ffi = cffi.FFI()
    ffi.cdef(cdef_from_header(header_path().read_text()))
    lib = ffi.dlopen(str(spoofsdk.native_library_path()))
    return ffi, lib
