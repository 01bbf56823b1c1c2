"""``--version`` for the project's command lines (spoof-train, spoof-export): one unwrapped line, exit 0."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

__all__ = ["PrintVersion"]


class PrintVersion(argparse.Action):
    """``--version``: one unwrapped line on stdout, exit 0 (argparse's own action wraps the line)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        self.version = kwargs.pop("version")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(self.version)
        parser.exit()
