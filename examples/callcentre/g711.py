"""G.711 mu-law encoding of int16 audio for the simulators and tests: spoofsdk's encoder and decoder."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from spoofsdk.audio import g711_encode

__all__ = ["mulaw_encode"]


def mulaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """ITU-T G.711 mu-law bytes of int16 samples (:func:`spoofsdk.audio.g711_encode`)."""
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError(f"pcm: expected a 1-D int16 array, given {pcm.dtype} with shape {pcm.shape}")
    return g711_encode(pcm, "mulaw").tobytes()
