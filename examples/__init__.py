"""Call-centre plugins and examples built on spoofsdk (run from the repository root: python -m examples.X)."""

from __future__ import annotations
