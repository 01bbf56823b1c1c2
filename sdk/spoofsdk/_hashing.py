"""The one sha256-of-a-file helper of spoofsdk, spoof_export and spoof_train.

It lives in the SDK, the lowest layer (spoof_export and spoof_train may import spoofsdk, never the
reverse), and needs nothing but the standard library.
"""

from __future__ import annotations

import hashlib
import os

__all__ = ["sha256_file"]

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the file at ``path`` as 64 lower-case hex digits, read in 1 MiB blocks (the whole file
    is never held in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()
