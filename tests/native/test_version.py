"""The version is written once (pyproject.toml) and every layer reports the same one."""

from __future__ import annotations

from typing import Any

import tomllib

import spoofsdk
from spoofsdk import _native

from .conftest import REPO


def test_versions_agree(ffi_lib: tuple[Any, Any]) -> None:
    ffi, lib = ffi_lib
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    c_version = ffi.string(lib.spoof_version_string()).decode()
    assert spoofsdk.__version__ == _native.__version__ == _native.version_string() == c_version == pyproject
    assert _native.abi_version() == _native.ABI_VERSION == lib.spoof_abi_version() == 1
