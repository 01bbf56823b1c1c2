"""Analysis tools of spoof_train: layer-weight analysis (which SSL layers matter) and explainability
(Integrated Gradients over time and over a time-frequency representation).

Submodules import torch lazily inside functions; importing this package is cheap.
"""

from __future__ import annotations
