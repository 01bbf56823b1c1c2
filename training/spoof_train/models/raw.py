"""SSL-free raw-waveform detectors: AASIST / AASIST-L (Jung et al. 2022) and RawNet2 (Tak et al. 2021).

Both take ``(wave [B, T], lengths [B] | None)`` at 16 kHz and return logits ``[B, 2]`` (bonafide, spoof).
Any input length at least ``min_samples`` works; padded rows give the same output as the unpadded row in
eval mode (the masks follow the valid samples through every convolution, pooling, attention and the GRU).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spoof_train.errors import ConfigError, DataError
from spoof_train.models.graph import AASISTGraphHead, ResidualBlock2d, SincFilterbank
from spoof_train.models.masking import lengths_to_mask, masked_mean, pool_lengths

__all__ = ["AASIST", "RawNet2"]


def _lengths(wave: Tensor, lengths: Tensor | None) -> Tensor:
    if lengths is None:
        return torch.full((wave.shape[0],), wave.shape[1], dtype=torch.long, device=wave.device)
    return lengths.to(torch.long)


class AASIST(nn.Module):
    """Raw-waveform AASIST. Defaults are the published AASIST; AASIST-L is a config (see presets).

    Sinc front end (70 fixed mel-spaced filters of 129 taps) -> |.| -> max-pool 3x3 -> BN -> SELU -> six
    residual blocks (each max-pools time by 3) -> spectral nodes (max over time) and temporal nodes (max over
    filters) -> AASIST graph head.
    """

    def __init__(
        self,
        *,
        filts: Sequence[object] = (70, (1, 32), (32, 32), (32, 64), (64, 64)),
        first_conv: int = 128,
        gat_dims: Sequence[int] = (64, 32),
        pool_ratios: Sequence[float] = (0.5, 0.7, 0.5, 0.5),
        temperatures: Sequence[float] = (2.0, 2.0, 100.0, 100.0),
        sample_rate: int = 16000,
        official_conv1_input: bool = False,
    ) -> None:
        super().__init__()
        n_sinc = int(filts[0])  # type: ignore[call-overload]
        blocks = [tuple(int(c) for c in f) for f in filts[1:]]  # type: ignore[attr-defined]
        if len(blocks) != 4:
            raise ConfigError(f"AASIST filts needs 1 + 4 entries, got {list(filts)}")
        self.conv_time = SincFilterbank(n_sinc, first_conv, sample_rate)
        self.first_bn = nn.BatchNorm2d(1)
        chans = [blocks[0], blocks[1], blocks[2], blocks[3], blocks[3], blocks[3]]
        self.encoder = nn.ModuleList(
            ResidualBlock2d(ci, co, first=i == 0, pool=True, official_conv1_input=official_conv1_input)
            for i, (ci, co) in enumerate(chans)
        )
        self.head = AASISTGraphHead(blocks[3][1], n_sinc // 3, gat_dims, pool_ratios, temperatures)
        # Shortest input giving one temporal node: the sinc taps plus 3 (first pool) * 3**6 (blocks) samples.
        self.min_samples = self.conv_time.kernel_size - 1 + 3 * 3 ** len(chans)

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        if wave.dim() != 2 or wave.shape[1] < self.min_samples:
            raise DataError(
                f"AASIST needs wave [batch, samples] with at least {self.min_samples} samples, "
                f"got shape {tuple(wave.shape)}"
            )
        lens = _lengths(wave, lengths)
        x = self.conv_time(wave.unsqueeze(1))  # [B, F, T']
        lens = (lens - (self.conv_time.kernel_size - 1)).clamp(min=0)
        x = F.max_pool2d(torch.abs(x).unsqueeze(1), (3, 3))  # [B, 1, F/3, T'/3]
        lens = pool_lengths(lens, 3)
        x = F.selu(self.first_bn(x))
        x = x * lengths_to_mask(lens, x.shape[-1])[:, None, None, :].to(x.dtype)
        for block in self.encoder:
            x, lens = block(x, lens)
        mask_t = lengths_to_mask(lens, x.shape[-1])
        e = torch.abs(x)  # zero at padded frames, so max over time ignores them exactly
        e_s = e.amax(dim=3).transpose(1, 2)  # [B, F, C] spectral nodes
        e_t = e.amax(dim=2).transpose(1, 2)  # [B, T, C] temporal nodes
        out: Tensor = self.head(e_s, e_t, mask_t)
        return out


class _RawNetBlock(nn.Module):
    """RawNet2 residual block (BN -> LeakyReLU(0.3) -> conv3 -> BN -> LeakyReLU -> conv3, 1x1 shortcut,
    max-pool 3) followed by filter-wise feature map scaling (FMS: ``x * s + s``, ``s`` = sigmoid(FC(mean))).
    """

    def __init__(self, cin: int, cout: int, *, first: bool, official_conv1_input: bool) -> None:
        super().__init__()
        self.official_conv1_input = official_conv1_input
        self.bn1 = None if first else nn.BatchNorm1d(cin)
        self.conv1 = nn.Conv1d(cin, cout, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, kernel_size=3, padding=1)
        self.conv_downsample = nn.Conv1d(cin, cout, kernel_size=1) if cin != cout else None
        self.fc_attention = nn.Linear(cout, cout)

    def forward(self, x: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        m = lengths_to_mask(lens, x.shape[-1]).unsqueeze(1).to(x.dtype)
        skip_bn1 = self.bn1 is None or self.official_conv1_input
        out = x if skip_bn1 else F.leaky_relu(self.bn1(x), 0.3) * m  # type: ignore[misc]
        out = self.conv1(out)
        out = F.leaky_relu(self.bn2(out), 0.3) * m
        out = self.conv2(out)
        identity = x if self.conv_downsample is None else self.conv_downsample(x)
        out = F.max_pool1d((out + identity) * m, 3)
        lens = pool_lengths(lens, 3)
        mask = lengths_to_mask(lens, out.shape[-1])
        scale = torch.sigmoid(self.fc_attention(masked_mean(out.transpose(1, 2), mask, dim=1))).unsqueeze(-1)
        out = (out * scale + scale) * mask.unsqueeze(1).to(out.dtype)
        return out, lens


class RawNet2(nn.Module):
    """RawNet2 for anti-spoofing (ASVspoof 2021 baseline topology).

    Sinc filters (fixed, mel-spaced) -> |.| -> max-pool 3 -> BN -> SELU -> ``blocks[0]`` residual blocks of
    ``channels[0]`` and ``blocks[1]`` of ``channels[1]`` with FMS -> BN -> SELU -> GRU -> last valid step ->
    FC -> FC(2). The GRU output is read at each row's last valid frame (the GRU is causal, so padding after
    it cannot change it).
    """

    def __init__(
        self,
        *,
        sinc_filters: int = 20,
        first_conv: int = 1024,
        channels: Sequence[int] = (20, 128),
        blocks: Sequence[int] = (2, 4),
        gru_node: int = 1024,
        gru_layers: int = 3,
        fc_node: int = 1024,
        sample_rate: int = 16000,
        official_conv1_input: bool = False,
    ) -> None:
        super().__init__()
        self.sinc_conv = SincFilterbank(sinc_filters, first_conv, sample_rate)
        self.first_bn = nn.BatchNorm1d(sinc_filters)
        layers: list[_RawNetBlock] = []
        cin = sinc_filters
        for group, (count, cout) in enumerate(zip(blocks, channels, strict=True)):
            for i in range(count):
                layers.append(
                    _RawNetBlock(
                        cin, cout, first=group == 0 and i == 0, official_conv1_input=official_conv1_input
                    )
                )
                cin = cout
        self.blocks = nn.ModuleList(layers)
        self.bn_before_gru = nn.BatchNorm1d(cin)
        self.gru = nn.GRU(input_size=cin, hidden_size=gru_node, num_layers=gru_layers, batch_first=True)
        self.fc1_gru = nn.Linear(gru_node, fc_node)
        self.fc2_gru = nn.Linear(fc_node, 2)
        self.min_samples = self.sinc_conv.kernel_size - 1 + 3 ** (len(layers) + 1)

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        if wave.dim() != 2 or wave.shape[1] < self.min_samples:
            raise DataError(
                f"RawNet2 needs wave [batch, samples] with at least {self.min_samples} samples, "
                f"got shape {tuple(wave.shape)}"
            )
        lens = _lengths(wave, lengths)
        x = self.sinc_conv(wave.unsqueeze(1))
        lens = (lens - (self.sinc_conv.kernel_size - 1)).clamp(min=0)
        x = F.max_pool1d(torch.abs(x), 3)
        lens = pool_lengths(lens, 3)
        x = F.selu(self.first_bn(x)) * lengths_to_mask(lens, x.shape[-1]).unsqueeze(1).to(x.dtype)
        for block in self.blocks:
            x, lens = block(x, lens)
        x = F.selu(self.bn_before_gru(x)).transpose(1, 2)  # [B, T, C]
        out, _ = self.gru(x)
        last = (lens - 1).clamp(min=0)
        out = torch.gather(out, 1, last.view(-1, 1, 1).expand(-1, 1, out.shape[-1])).squeeze(1)
        logits: Tensor = self.fc2_gru(self.fc1_gru(out))
        return logits
