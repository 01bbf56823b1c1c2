"""G.711 mu-law encoder (numpy) for the simulators and tests; decoding is spoofsdk's (native)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["mulaw_encode"]

_BIAS = 0x84
_CLIP = 32635


def mulaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """ITU-T G.711 mu-law bytes of int16 samples (the segment/mantissa form used by telephony)."""
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError(f"pcm: expected a 1-D int16 array, given {pcm.dtype} with shape {pcm.shape}")
    x = pcm.astype(np.int32)
    sign = (x < 0).astype(np.int32) << 7
    mag = np.minimum(np.abs(x), _CLIP) + _BIAS
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    out: bytes = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()
    return out
