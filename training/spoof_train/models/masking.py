"""Mask helpers shared by the back-ends and raw-waveform models.

All masks are boolean tensors (True = valid). Nothing here branches on tensor values in Python, so the
functions trace into ONNX graphs with dynamic batch and time axes.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "NEG_LARGE",
    "lengths_to_mask",
    "masked_max",
    "masked_mean",
    "masked_softmax",
    "pool_lengths",
]

# A finite "minus infinity" for masked logits: -inf turns a fully masked softmax into NaN and some ONNX
# runtimes fold it badly; -1e9 in float32 underflows exp() to exactly 0 next to any valid entry. Half
# precision (AMP) uses its lowest finite value instead, since -1e9 would overflow to -inf there.
NEG_LARGE = -1.0e9


def _neg_large(dtype: torch.dtype) -> float:
    """``NEG_LARGE``, or the dtype's lowest finite value when -1e9 would overflow (fp16 under AMP)."""
    return max(NEG_LARGE, float(torch.finfo(dtype).min)) if dtype.is_floating_point else NEG_LARGE


def lengths_to_mask(lengths: Tensor, max_len: int | Tensor) -> Tensor:
    """``[B]`` valid lengths -> ``[B, max_len]`` bool mask (True where ``index < length``)."""
    # a 0-d Tensor max_len keeps the length symbolic in a traced export; torch's stub only allows numbers
    steps = torch.arange(max_len, device=lengths.device)  # type: ignore[arg-type]
    return steps.unsqueeze(0) < lengths.unsqueeze(1)


def pool_lengths(lengths: Tensor, kernel: int, stride: int | None = None, *, padding: int = 0) -> Tensor:
    """Output lengths of a floor-mode pooling / convolution of ``kernel`` and ``stride`` over ``lengths``.

    For a valid row of ``n`` steps, the first ``(n + 2 * padding - kernel) // stride + 1`` outputs of the
    padded batch are computed from valid steps only, so they equal the outputs of the unpadded row.
    """
    stride = kernel if stride is None else stride
    out = torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1
    return out.clamp(min=0)


def masked_mean(x: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Mean of ``x`` over ``dim`` counting only positions where ``mask`` (broadcast to ``x``) is True.

    A row without valid positions gives zeros (not NaN).
    """
    m = mask.to(x.dtype)
    while m.dim() < x.dim():
        m = m.unsqueeze(-1)
    total = (x * m).sum(dim=dim)
    count = m.sum(dim=dim).clamp(min=1.0)
    return total / count


def masked_max(x: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Max of ``x`` over ``dim`` ignoring masked positions (an all-masked row gives ``NEG_LARGE``)."""
    m = mask
    while m.dim() < x.dim():
        m = m.unsqueeze(-1)
    return x.masked_fill(~m, _neg_large(x.dtype)).amax(dim=dim)


def masked_softmax(logits: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Softmax over ``dim`` with masked positions given exactly zero weight."""
    m = mask
    while m.dim() < logits.dim():
        m = m.unsqueeze(-1)
    weights = torch.softmax(logits.masked_fill(~m, _neg_large(logits.dtype)), dim=dim)
    return weights * m.to(weights.dtype)
