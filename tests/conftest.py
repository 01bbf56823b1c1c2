"""Shared pytest fixtures: the corpus location and lane skips.

Area-specific fixtures (tiny ONNX models, tiny torch backbones) live in tests/<area>/conftest.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS_DIR = Path(os.environ.get("SPOOF_CORPUS_DIR", REPO_ROOT.parent / "shared" / "data" / "corpus-v1"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """../shared/data/corpus-v1 (or $SPOOF_CORPUS_DIR); tests that use it skip cleanly when it is absent."""
    if not (CORPUS_DIR / "MANIFEST.tsv").is_file():
        pytest.skip(
            f"corpus-v1 not found at {CORPUS_DIR} (set SPOOF_CORPUS_DIR); a fresh clone has no ../shared"
        )
    return CORPUS_DIR
