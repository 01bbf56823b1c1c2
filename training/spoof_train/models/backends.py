"""Back-ends over the hidden-state stack of an SSL backbone.

Every back-end is ``forward(hidden [B, L, T, D], mask [B, T] bool) -> logits [B, 2]`` for any ``T`` and
ignores padded frames (in eval mode, a padded row gives the output of the unpadded row; in training mode
BatchNorm statistics of ``sls`` / ``aasist`` still see the zeroed padding).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spoof_train.errors import ConfigError
from spoof_train.models.config import BACKEND_NAMES
from spoof_train.models.graph import AASISTGraphHead, ResidualBlock2d
from spoof_train.models.masking import NEG_LARGE, lengths_to_mask, masked_mean, masked_softmax, pool_lengths

__all__ = [
    "AASISTBackend",
    "FFNBackend",
    "LayerWeightedBackend",
    "MHFABackend",
    "SLSBackend",
    "build_backend",
]


def _mlp(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 2))


def _pool(x: Tensor, mask: Tensor, pooling: str) -> Tensor:
    mean = masked_mean(x, mask, dim=1)
    if pooling == "mean":
        return mean
    var = masked_mean((x - mean.unsqueeze(1)) ** 2, mask, dim=1)
    return torch.cat([mean, torch.sqrt(var + 1e-5)], dim=-1)


def _check_pooling(pooling: str) -> None:
    if pooling not in ("mean", "mean+std"):
        raise ConfigError(f"pooling must be 'mean' or 'mean+std', got {pooling!r}")


class FFNBackend(nn.Module):
    """Masked pooling of one hidden state (default: the last kept layer) + MLP."""

    def __init__(
        self,
        hidden_size: int,
        num_states: int,
        *,
        hidden: int = 256,
        dropout: float = 0.1,
        pooling: str = "mean",
        layer: int = -1,
    ) -> None:
        super().__init__()
        _check_pooling(pooling)
        if not -num_states <= layer < num_states:
            raise ConfigError(f"ffn layer index must be in [{-num_states}, {num_states - 1}], got {layer}")
        self.layer = layer
        self.pooling = pooling
        self.mlp = _mlp(hidden_size * (2 if pooling == "mean+std" else 1), hidden, dropout)

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        out: Tensor = self.mlp(_pool(hidden[:, self.layer], mask, self.pooling))
        return out


class LayerWeightedBackend(nn.Module):
    """Softmax-weighted sum over all kept hidden states (layer-wise analysis), masked pooling, MLP.

    ``layer_weights()`` returns the softmax weights (index 0 = CNN/positional features, i = layer i).
    ``normalize_layers`` applies a parameter-free LayerNorm to each state before weighting, so the weights
    compare layers on one scale.
    """

    def __init__(
        self,
        hidden_size: int,
        num_states: int,
        *,
        hidden: int = 256,
        dropout: float = 0.1,
        pooling: str = "mean",
        normalize_layers: bool = False,
    ) -> None:
        super().__init__()
        _check_pooling(pooling)
        self.layer_logits = nn.Parameter(torch.zeros(num_states))
        self.normalize_layers = normalize_layers
        self.pooling = pooling
        self.mlp = _mlp(hidden_size * (2 if pooling == "mean+std" else 1), hidden, dropout)

    def layer_weights(self) -> Tensor:
        return torch.softmax(self.layer_logits.detach(), dim=0).cpu()

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        if self.normalize_layers:
            hidden = F.layer_norm(hidden, hidden.shape[-1:])
        w = torch.softmax(self.layer_logits, dim=0)
        x = (hidden * w.view(1, -1, 1, 1)).sum(dim=1)
        out: Tensor = self.mlp(_pool(x, mask, self.pooling))
        return out


class SLSBackend(nn.Module):
    """Sensitive Layer Selection (Zhang et al. 2024, XLS-R + SLS), adapted to variable length and masks.

    Per layer: masked time-average -> FC(D, 1) -> sigmoid = layer weight; weighted sum of the layers
    (frame level) -> BatchNorm2d(1) -> SELU -> max-pool 3x3 (time x feature) -> FC -> SELU -> FC(2).
    The paper flattens the pooled ``201/3 x D/3`` map into ``fc1`` (fixed 4 s input); here ``fc1`` acts on
    the masked time-average of the pooled frames, which is ``fc1`` with its weights shared over time and
    works for any length. Padded frames are set to a large negative value before the max-pool, and only
    pooled frames built from valid frames are averaged.
    """

    def __init__(
        self, hidden_size: int, num_states: int, *, hidden: int = 1024, dropout: float = 0.0
    ) -> None:
        super().__init__()
        del num_states  # one weight per layer comes from fc0 on that layer's features
        self.fc0 = nn.Linear(hidden_size, 1)
        self.first_bn = nn.BatchNorm2d(1)
        self.fc1 = nn.Linear(hidden_size // 3, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc3 = nn.Linear(hidden, 2)

    def layer_scores(self, hidden: Tensor, mask: Tensor) -> Tensor:
        """Per-utterance sigmoid weight of each layer ``[B, L]``."""
        pooled = masked_mean(hidden, mask.unsqueeze(1), dim=2)  # [B, L, D]
        return torch.sigmoid(self.fc0(pooled)).squeeze(-1)

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        w = self.layer_scores(hidden, mask)
        x = (hidden * w[:, :, None, None]).sum(dim=1)  # [B, T, D]
        m = mask[:, None, :, None]
        x = F.selu(self.first_bn((x * m.to(x.dtype).squeeze(1)).unsqueeze(1)))  # [B, 1, T, D]
        low = max(NEG_LARGE, float(torch.finfo(x.dtype).min))  # finite in fp16 too
        x = F.max_pool2d(x.masked_fill(~m, low), (3, 3)).squeeze(1)  # [B, T/3, D/3]
        pooled_mask = lengths_to_mask(pool_lengths(mask.sum(dim=1), 3), x.shape[1])
        x = F.selu(self.fc1(masked_mean(x, pooled_mask, dim=1)))
        out: Tensor = self.fc3(self.drop(x))
        return out


class AASISTBackend(nn.Module):
    """AASIST graph back-end on SSL features (Tak et al. 2022, SSL_Anti-spoofing), masked.

    Last hidden state -> FC(D, 128) -> max-pool 3x3 -> BN -> SELU -> six residual blocks (no time pooling)
    -> BN -> SELU -> attention (1x1 convs) -> attentive pooling over time (spectral nodes) and over features
    (temporal nodes) -> AASIST graph head. ``layer`` picks the hidden state (default: last kept).
    """

    def __init__(
        self,
        hidden_size: int,
        num_states: int,
        *,
        proj_dim: int = 128,
        filts: Sequence[Sequence[int]] = ((1, 32), (32, 32), (32, 64), (64, 64)),
        gat_dims: Sequence[int] = (64, 32),
        pool_ratios: Sequence[float] = (0.5, 0.5, 0.5, 0.5),
        temperatures: Sequence[float] = (2.0, 2.0, 100.0, 100.0),
        layer: int = -1,
        official_conv1_input: bool = False,
    ) -> None:
        super().__init__()
        if not -num_states <= layer < num_states:
            raise ConfigError(f"aasist layer index must be in [{-num_states}, {num_states - 1}], got {layer}")
        if len(filts) != 4:
            raise ConfigError(f"aasist filts needs 4 (in, out) pairs, got {list(filts)}")
        self.layer = layer
        self.LL = nn.Linear(hidden_size, proj_dim)
        self.first_bn = nn.BatchNorm2d(1)
        blocks = [
            tuple(filts[0]),
            tuple(filts[1]),
            tuple(filts[2]),
            tuple(filts[3]),
            tuple(filts[3]),
            tuple(filts[3]),
        ]
        self.encoder = nn.ModuleList(
            ResidualBlock2d(
                int(ci), int(co), first=i == 0, pool=False, official_conv1_input=official_conv1_input
            )
            for i, (ci, co) in enumerate(blocks)
        )
        channels = int(filts[3][1])
        self.first_bn1 = nn.BatchNorm2d(channels)
        self.attention = nn.Sequential(
            nn.Conv2d(channels, 128, kernel_size=(1, 1)),
            nn.SELU(),
            nn.BatchNorm2d(128),
            nn.Conv2d(128, channels, kernel_size=(1, 1)),
        )
        self.head = AASISTGraphHead(channels, proj_dim // 3, gat_dims, pool_ratios, temperatures)

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        x = self.LL(hidden[:, self.layer])  # [B, T, P]
        x = x * mask.unsqueeze(-1).to(x.dtype)
        x = F.max_pool2d(x.transpose(1, 2).unsqueeze(1), (3, 3))  # [B, 1, P/3, T/3]
        lens = pool_lengths(mask.sum(dim=1), 3)
        m4 = lengths_to_mask(lens, x.shape[-1])[:, None, None, :]
        x = F.selu(self.first_bn(x)) * m4.to(x.dtype)
        for block in self.encoder:
            x, lens = block(x, lens)
        x = F.selu(self.first_bn1(x)) * m4.to(x.dtype)
        w = self.attention(x)
        w_time = masked_softmax(w, m4, dim=-1)  # attention over valid frames
        e_s = (x * w_time).sum(dim=-1).transpose(1, 2)  # [B, P/3, C]
        w_freq = torch.softmax(w, dim=-2)
        e_t = (x * w_freq).sum(dim=-2).transpose(1, 2)  # [B, T/3, C]
        out: Tensor = self.head(e_s, e_t, m4[:, 0, 0, :])
        return out


class MHFABackend(nn.Module):
    """Multi-head factorized attentive pooling (Peng et al. 2022), masked, + classifier.

    Keys and values are two separate softmax-weighted sums over the layers, compressed to
    ``compression_dim``; ``heads`` attention heads over time (from the keys) pool the values; the
    concatenated heads go through FC(``embed_dim``) -> ReLU -> dropout -> FC(2).
    """

    def __init__(
        self,
        hidden_size: int,
        num_states: int,
        *,
        heads: int = 8,
        compression_dim: int = 128,
        embed_dim: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.weights_k = nn.Parameter(torch.zeros(num_states))
        self.weights_v = nn.Parameter(torch.zeros(num_states))
        self.cmp_linear_k = nn.Linear(hidden_size, compression_dim)
        self.cmp_linear_v = nn.Linear(hidden_size, compression_dim)
        self.att_head = nn.Linear(compression_dim, heads)
        self.pooling_fc = nn.Linear(heads * compression_dim, embed_dim)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(embed_dim, 2)

    def layer_weights(self) -> Tensor:
        """Softmax layer weights of the keys and values ``[2, L]``."""
        w = torch.stack([self.weights_k.detach(), self.weights_v.detach()])
        return torch.softmax(w, dim=-1).cpu()

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        k = torch.einsum("bltd,l->btd", hidden, torch.softmax(self.weights_k, dim=0))
        v = torch.einsum("bltd,l->btd", hidden, torch.softmax(self.weights_v, dim=0))
        k = self.cmp_linear_k(k)
        v = self.cmp_linear_v(v)
        att = masked_softmax(self.att_head(k), mask, dim=1)  # [B, T, H]
        pooled = torch.einsum("bth,btc->bhc", att, v).flatten(1)
        out: Tensor = self.classifier(self.drop(F.relu(self.pooling_fc(pooled))))
        return out


_BACKENDS: dict[str, type[nn.Module]] = {
    "ffn": FFNBackend,
    "layer-weighted": LayerWeightedBackend,
    "sls": SLSBackend,
    "aasist": AASISTBackend,
    "mhfa": MHFABackend,
}
assert tuple(_BACKENDS) == BACKEND_NAMES


def backend_options(name: str) -> dict[str, Any]:
    """Keyword options of back-end ``name`` with their defaults."""
    if name not in _BACKENDS:
        raise ConfigError(f"unknown back-end {name!r}; expected one of {BACKEND_NAMES}")
    sig = inspect.signature(_BACKENDS[name].__init__)
    return {p.name: p.default for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def build_backend(
    name: str, hidden_size: int, num_states: int, config: dict[str, Any] | None = None
) -> nn.Module:
    """Instantiate back-end ``name`` for hidden states of width ``hidden_size`` and ``num_states`` entries."""
    options = backend_options(name)
    config = dict(config or {})
    unknown = sorted(set(config) - set(options))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for back-end {name!r}; expected a subset of {sorted(options)}"
        )
    return _BACKENDS[name](hidden_size, num_states, **config)
