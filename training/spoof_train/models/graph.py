"""AASIST building blocks with padding masks: residual encoder, graph attention, graph pooling, readout.

Architecture after Jung et al. 2022 (AASIST, clovaai/aasist) and Tak et al. 2022 (SSL + AASIST), adapted so
that every operation honours a validity mask over time frames / graph nodes:

- convolutions see exact zeros at padded frames (the block re-masks before each convolution), so the frames
  of a padded row equal those of the unpadded row in eval mode;
- graph pooling keeps the node tensor size and sorts nodes by score (masked nodes last) and marks the top
  ``max(floor(n_valid * ratio), 1)`` as valid, which is the official ``top-k`` for an unpadded row;
- attention softmaxes, BatchNorm statistics (training) and readouts skip masked nodes.

No Python branch depends on tensor values; node counts depend on shapes only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spoof_train.models.masking import lengths_to_mask, masked_mean, masked_softmax, pool_lengths

__all__ = [
    "AASISTGraphHead",
    "GraphAttentionLayer",
    "GraphPool",
    "HtrgGraphAttentionLayer",
    "MaskedBatchNorm1d",
    "ResidualBlock2d",
    "SincFilterbank",
]


class SincFilterbank(nn.Module):
    """Fixed mel-spaced band-pass sinc filters (AASIST / RawNet2 front end), Hamming-windowed, no bias.

    The filters are a non-persistent buffer computed from the config (not trained, not saved).
    """

    filters: Tensor  # the registered buffer (nn.Module.__getattr__ is typed Tensor | Module)

    def __init__(self, out_channels: int, kernel_size: int, sample_rate: int = 16000) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            kernel_size += 1  # odd length: symmetric, zero-phase filters (as the reference implementations)
        self.out_channels = out_channels
        self.kernel_size = kernel_size

        def to_mel(hz: np.ndarray) -> np.ndarray:
            return 2595.0 * np.log10(1.0 + hz / 700.0)

        def to_hz(mel: np.ndarray) -> np.ndarray:
            return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

        nfft = 512
        f = int(sample_rate / 2) * np.linspace(0.0, 1.0, nfft // 2 + 1)
        fmel = to_mel(f)
        edges = to_hz(np.linspace(fmel.min(), fmel.max(), out_channels + 1))
        support = np.arange(-(kernel_size - 1) / 2, (kernel_size - 1) / 2 + 1)
        window = np.hamming(kernel_size)
        bank = np.zeros((out_channels, kernel_size), dtype=np.float64)
        for i in range(out_channels):
            fmin, fmax = edges[i], edges[i + 1]
            high = (2 * fmax / sample_rate) * np.sinc(2 * fmax * support / sample_rate)
            low = (2 * fmin / sample_rate) * np.sinc(2 * fmin * support / sample_rate)
            bank[i] = window * (high - low)
        self.register_buffer(
            "filters", torch.tensor(bank, dtype=torch.float32).unsqueeze(1), persistent=False
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 1, T]`` -> ``[B, out_channels, T - kernel_size + 1]`` (valid convolution)."""
        return F.conv1d(x, self.filters)


class ResidualBlock2d(nn.Module):
    """AASIST residual block over ``[B, C, F, T]`` with a time mask.

    Pre-activation as the papers describe it (BN -> SELU -> conv -> BN -> SELU -> conv, plus a 1x3
    projection shortcut when channels change), then max-pool ``(1, 3)`` over time if ``pool``. The official
    code feeds the *un-normalised* input to ``conv1`` (the ``bn1`` output is discarded);
    ``official_conv1_input=True`` reproduces that (``bn1`` then has no gradient: use
    ``find_unused_parameters`` under DDP).
    """

    def __init__(
        self, cin: int, cout: int, *, first: bool, pool: bool, official_conv1_input: bool = False
    ) -> None:
        super().__init__()
        self.first = first
        self.pool = pool
        self.official_conv1_input = official_conv1_input
        self.bn1 = None if first else nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, kernel_size=(2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, kernel_size=(2, 3), padding=(0, 1))
        self.conv_downsample = (
            nn.Conv2d(cin, cout, kernel_size=(1, 3), padding=(0, 1)) if cin != cout else None
        )

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` must be zero at padded frames; returns ``(y, lengths_out)`` with ``y`` zero at padding."""
        m = lengths_to_mask(lengths, x.shape[-1])[:, None, None, :].to(x.dtype)
        identity = x
        skip_bn1 = self.bn1 is None or self.official_conv1_input
        out = x if skip_bn1 else F.selu(self.bn1(x)) * m  # type: ignore[misc]
        out = self.conv1(out)
        out = F.selu(self.bn2(out)) * m
        out = self.conv2(out)
        if self.conv_downsample is not None:
            identity = self.conv_downsample(identity)
        out = (out + identity) * m
        if self.pool:
            out = F.max_pool2d(out, (1, 3))
            lengths = pool_lengths(lengths, 3)
            out = out * lengths_to_mask(lengths, out.shape[-1])[:, None, None, :].to(out.dtype)
        return out, lengths


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over the feature axis of node tensors ``[B, N, D]`` whose statistics skip masked nodes.

    Same parameters and buffers as ``nn.BatchNorm1d(D)``; eval mode uses the running statistics (so a
    node's output never depends on the other nodes).
    """

    def forward_masked(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.training:
            m = mask.unsqueeze(-1).to(x.dtype)
            count = m.sum().clamp(min=1.0)
            mean = (x * m).sum(dim=(0, 1)) / count
            var = (((x - mean) ** 2) * m).sum(dim=(0, 1)) / count
            if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
                with torch.no_grad():
                    momentum = 0.1 if self.momentum is None else self.momentum
                    unbiased = var * count / (count - 1.0).clamp(min=1.0)
                    self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                    self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
                    if self.num_batches_tracked is not None:
                        self.num_batches_tracked.add_(1)
        else:
            assert self.running_mean is not None
            assert self.running_var is not None
            mean, var = self.running_mean, self.running_var
        y = (x - mean) / torch.sqrt(var + self.eps)
        if self.affine:
            y = y * self.weight + self.bias
        return y


def _xavier_param(*size: int) -> nn.Parameter:
    p = nn.Parameter(torch.empty(*size))
    nn.init.xavier_normal_(p)
    return p


class GraphAttentionLayer(nn.Module):
    """Graph attention over one node type (AASIST GAT-S / GAT-T), masked."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = _xavier_param(out_dim, 1)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = MaskedBatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(p=0.2)
        self.temp = float(temperature)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = self.input_drop(x)
        pair = x.unsqueeze(2) * x.unsqueeze(1)  # [B, N, N, D]
        scores = torch.matmul(torch.tanh(self.att_proj(pair)), self.att_weight).squeeze(-1) / self.temp
        att = masked_softmax(scores, mask.unsqueeze(1), dim=-1)  # row i attends over valid nodes j
        out = self.proj_with_att(torch.matmul(att, x)) + self.proj_without_att(x)
        out = F.selu(self.bn.forward_masked(out, mask))
        return out * mask.unsqueeze(-1).to(out.dtype)


class HtrgGraphAttentionLayer(nn.Module):
    """Heterogeneous graph attention over temporal + spectral nodes with a master node (AASIST HS-GAL)."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.proj_type1 = nn.Linear(in_dim, in_dim)
        self.proj_type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_projM = nn.Linear(in_dim, out_dim)
        self.att_weight11 = _xavier_param(out_dim, 1)
        self.att_weight22 = _xavier_param(out_dim, 1)
        self.att_weight12 = _xavier_param(out_dim, 1)
        self.att_weightM = _xavier_param(out_dim, 1)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.proj_with_attM = nn.Linear(in_dim, out_dim)
        self.proj_without_attM = nn.Linear(in_dim, out_dim)
        self.bn = MaskedBatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(p=0.2)
        self.temp = float(temperature)

    def forward(
        self, x1: Tensor, mask1: Tensor, x2: Tensor, mask2: Tensor, master: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        n1 = x1.shape[1]
        x = torch.cat([self.proj_type1(x1), self.proj_type2(x2)], dim=1)
        mask = torch.cat([mask1, mask2], dim=1)
        x = self.input_drop(x)
        n = x.shape[1]
        # One attention weight vector per edge type (11, 22, 12/21), combined without in-place writes.
        pair = torch.tanh(self.att_proj(x.unsqueeze(2) * x.unsqueeze(1)))  # [B, N, N, out]
        weights = torch.cat([self.att_weight11, self.att_weight22, self.att_weight12], dim=1)
        s = torch.matmul(pair, weights)  # [B, N, N, 3]
        is1 = torch.arange(n, device=x.device) < n1
        both1 = is1.unsqueeze(1) & is1.unsqueeze(0)
        both2 = (~is1).unsqueeze(1) & (~is1).unsqueeze(0)
        scores = torch.where(both1, s[..., 0], torch.where(both2, s[..., 1], s[..., 2])) / self.temp
        att = masked_softmax(scores, mask.unsqueeze(1), dim=-1)
        # Master node: attention over the valid nodes.
        am = torch.matmul(torch.tanh(self.att_projM(x * master)), self.att_weightM) / self.temp  # [B, N, 1]
        am = masked_softmax(am.squeeze(-1), mask, dim=-1)
        master = self.proj_with_attM(torch.matmul(am.unsqueeze(1), x)) + self.proj_without_attM(master)
        out = self.proj_with_att(torch.matmul(att, x)) + self.proj_without_att(x)
        out = F.selu(self.bn.forward_masked(out, mask))
        out = out * mask.unsqueeze(-1).to(out.dtype)
        return out[:, :n1], out[:, n1:], master


class GraphPool(nn.Module):
    """Score-based graph pooling: keep the top ``max(floor(n_valid * ratio), 1)`` nodes of each row.

    Nodes are scaled by their sigmoid score and sorted by it (masked nodes last); the tensor keeps its node
    count and the returned mask marks the kept nodes. For an unpadded row this is the official top-k.
    """

    def __init__(self, ratio: float, in_dim: int, p: float = 0.3) -> None:
        super().__init__()
        self.ratio = float(ratio)
        self.proj = nn.Linear(in_dim, 1)
        self.drop: nn.Module = nn.Dropout(p=p) if p > 0 else nn.Identity()

    def forward(self, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        scores = torch.sigmoid(self.proj(self.drop(h)))  # [B, N, 1] in (0, 1)
        key = scores.squeeze(-1).masked_fill(~mask, -1.0)
        # topk over all nodes = a descending sort that both ONNX exporters support (argsort(stable) is not).
        order = torch.topk(key, k=key.shape[1], dim=1).indices
        out = torch.gather(h * scores, 1, order.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
        n_valid = mask.sum(dim=1).to(torch.float64)
        keep = torch.floor(n_valid * self.ratio).to(torch.long).clamp(min=1)
        new_mask = lengths_to_mask(keep, h.shape[1]) & (torch.gather(mask, 1, order))
        return out * new_mask.unsqueeze(-1).to(out.dtype), new_mask


class AASISTGraphHead(nn.Module):
    """Spectro-temporal graph back-end of AASIST: GAT-S, GAT-T, two HS-GAL branches, readout, classifier."""

    def __init__(
        self,
        channels: int,
        spectral_nodes: int,
        gat_dims: Sequence[int] = (64, 32),
        pool_ratios: Sequence[float] = (0.5, 0.7, 0.5, 0.5),
        temperatures: Sequence[float] = (2.0, 2.0, 100.0, 100.0),
    ) -> None:
        super().__init__()
        g0, g1 = int(gat_dims[0]), int(gat_dims[1])
        self.pos_S = nn.Parameter(torch.randn(1, spectral_nodes, channels))
        self.master1 = nn.Parameter(torch.randn(1, 1, g0))
        self.master2 = nn.Parameter(torch.randn(1, 1, g0))
        self.GAT_layer_S = GraphAttentionLayer(channels, g0, temperatures[0])
        self.GAT_layer_T = GraphAttentionLayer(channels, g0, temperatures[1])
        self.HtrgGAT_layer_ST11 = HtrgGraphAttentionLayer(g0, g1, temperatures[2])
        self.HtrgGAT_layer_ST12 = HtrgGraphAttentionLayer(g1, g1, temperatures[2])
        self.HtrgGAT_layer_ST21 = HtrgGraphAttentionLayer(g0, g1, temperatures[2])
        self.HtrgGAT_layer_ST22 = HtrgGraphAttentionLayer(g1, g1, temperatures[2])
        self.pool_S = GraphPool(pool_ratios[0], g0, 0.3)
        self.pool_T = GraphPool(pool_ratios[1], g0, 0.3)
        self.pool_hS1 = GraphPool(pool_ratios[2], g1, 0.3)
        self.pool_hT1 = GraphPool(pool_ratios[2], g1, 0.3)
        self.pool_hS2 = GraphPool(pool_ratios[2], g1, 0.3)
        self.pool_hT2 = GraphPool(pool_ratios[2], g1, 0.3)
        self.drop = nn.Dropout(0.5)
        self.drop_way = nn.Dropout(0.2)
        self.out_layer = nn.Linear(5 * g1, 2)

    def _branch(
        self, which: int, master: Tensor, nodes: tuple[Tensor, Tensor, Tensor, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        out_t, mask_t, out_s, mask_s = nodes
        first: HtrgGraphAttentionLayer = getattr(self, f"HtrgGAT_layer_ST{which}1")
        second: HtrgGraphAttentionLayer = getattr(self, f"HtrgGAT_layer_ST{which}2")
        pool_s: GraphPool = getattr(self, f"pool_hS{which}")
        pool_t: GraphPool = getattr(self, f"pool_hT{which}")
        t1, s1, master = first(out_t, mask_t, out_s, mask_s, master)
        s1, ms = pool_s(s1, mask_s)
        t1, mt = pool_t(t1, mask_t)
        t_aug, s_aug, m_aug = second(t1, mt, s1, ms, master)
        return t1 + t_aug, mt, s1 + s_aug, ms, master + m_aug

    def forward(self, e_s: Tensor, e_t: Tensor, mask_t: Tensor) -> Tensor:
        """``e_s [B, spectral_nodes, C]``, ``e_t [B, T, C]`` with ``mask_t [B, T]`` -> logits ``[B, 2]``."""
        batch = e_t.shape[0]
        mask_s = torch.ones(batch, e_s.shape[1], dtype=torch.bool, device=e_s.device)
        gat_s = self.GAT_layer_S(e_s + self.pos_S, mask_s)
        out_s, mask_s = self.pool_S(gat_s, mask_s)
        gat_t = self.GAT_layer_T(e_t, mask_t)
        out_t, mask_t = self.pool_T(gat_t, mask_t)
        master1 = self.master1.expand(batch, -1, -1)
        master2 = self.master2.expand(batch, -1, -1)
        nodes = (out_t, mask_t, out_s, mask_s)
        t1, mt1, s1, ms1, master1 = self._branch(1, master1, nodes)
        t2, _, s2, _, master2 = self._branch(2, master2, nodes)
        # Both branches keep the same number of valid nodes per row, so their masks agree.
        out_t = torch.maximum(self.drop_way(t1), self.drop_way(t2))
        out_s = torch.maximum(self.drop_way(s1), self.drop_way(s2))
        master = torch.maximum(self.drop_way(master1), self.drop_way(master2))
        mt = mt1.unsqueeze(-1).to(out_t.dtype)
        ms = ms1.unsqueeze(-1).to(out_s.dtype)
        t_max = (out_t.abs() * mt).amax(dim=1)
        t_avg = masked_mean(out_t, mt1, dim=1)
        s_max = (out_s.abs() * ms).amax(dim=1)
        s_avg = masked_mean(out_s, ms1, dim=1)
        hidden = torch.cat([t_max, t_avg, s_max, s_avg, master.squeeze(1)], dim=1)
        out: Tensor = self.out_layer(self.drop(hidden))
        return out
