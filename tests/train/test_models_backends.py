"""Back-ends over hidden-state stacks: shapes for any length, masks, gradients, determinism, errors."""

from __future__ import annotations

import pytest
import torch

from spoof_train.errors import ConfigError
from spoof_train.models import BACKEND_NAMES, backend_options, build_backend, build_detector

D, L = 48, 4  # hidden size, entries in the stack (3 layers + CNN features)


def _make(name: str, seed: int = 0, **cfg: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_backend(name, D, L, dict(cfg))


def _stack(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, L, frames, D, generator=gen)


@pytest.mark.parametrize("name", BACKEND_NAMES)
@pytest.mark.parametrize("frames", [9, 50, 201, 333])
def test_any_length_gives_two_logits(name: str, frames: int) -> None:
    backend = _make(name).eval()
    x = _stack(3, frames)
    mask = torch.ones(3, frames, dtype=torch.bool)
    with torch.no_grad():
        out = backend(x, mask)
    assert out.shape == (3, 2)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_padding_does_not_change_a_row(name: str) -> None:
    backend = _make(name, seed=1).eval()
    frames, valid = 120, 77
    x = _stack(2, frames, seed=2)
    x[1, :, valid:] = 100.0 * torch.randn(L, frames - valid, D)  # garbage in the padding
    mask = torch.ones(2, frames, dtype=torch.bool)
    mask[1, valid:] = False
    with torch.no_grad():
        batch = backend(x, mask)
        alone = backend(x[1:2, :, :valid], torch.ones(1, valid, dtype=torch.bool))
        first = backend(x[0:1], mask[0:1])
    assert (batch[1] - alone[0]).abs().max().item() <= 1e-5
    assert (batch[0] - first[0]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_gradients_reach_every_parameter(name: str) -> None:
    backend = _make(name, seed=3).train()
    x = _stack(4, 60, seed=4).requires_grad_(True)
    mask = torch.ones(4, 60, dtype=torch.bool)
    mask[2, 40:] = False
    loss = torch.nn.functional.cross_entropy(backend(x, mask), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    assert x.grad is not None
    assert x.grad.abs().sum() > 0
    assert x.grad[2, :, 40:].abs().max() == 0  # padded frames get no gradient
    for pname, p in backend.named_parameters():
        assert p.grad is not None, f"{name}: {pname} has no gradient (would break DDP)"


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_deterministic_given_a_seed(name: str) -> None:
    a, b, c = _make(name, seed=5).eval(), _make(name, seed=5).eval(), _make(name, seed=6).eval()
    x = _stack(2, 64, seed=6)
    mask = torch.ones(2, 64, dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(a(x, mask), b(x, mask))
        assert not torch.equal(a(x, mask), c(x, mask))


def test_layer_weights_are_a_distribution_over_kept_states(tiny_config: object) -> None:
    cfg = tiny_config("xlsr-tiny", "layer-weighted")  # type: ignore[operator]
    model = build_detector(cfg, seed=0)
    w = model.layer_weights()
    assert w.shape == (cfg.kept_layers + 1,)
    assert torch.allclose(w.sum(), torch.tensor(1.0))
    assert torch.allclose(w, torch.full_like(w, 1.0 / w.numel()))  # uniform at initialisation
    mhfa = build_detector(tiny_config("xlsr-tiny", "mhfa"), seed=0)  # type: ignore[operator]
    assert mhfa.layer_weights().shape == (2, cfg.kept_layers + 1)
    ffn = build_detector(tiny_config("xlsr-tiny", "ffn"), seed=0)  # type: ignore[operator]
    with pytest.raises(
        ConfigError, match="back-end 'ffn' has no layer weights; expected 'layer-weighted' or 'mhfa'"
    ):
        ffn.layer_weights()


def test_layer_weighted_learns_to_prefer_the_informative_layer() -> None:
    """Only layer 2 carries the label: training must move the softmax weight towards it."""
    torch.manual_seed(0)
    backend = build_backend("layer-weighted", D, L, {"hidden": 16, "dropout": 0.0})
    opt = torch.optim.Adam(backend.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(1)
    for _ in range(60):
        y = torch.randint(0, 2, (16,), generator=gen)
        x = torch.randn(16, L, 20, D, generator=gen)
        x[:, 2, :, 0] += 3.0 * (2 * y.float() - 1).unsqueeze(1)
        loss = torch.nn.functional.cross_entropy(backend(x, torch.ones(16, 20, dtype=torch.bool)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = backend.layer_weights()
    assert int(w.argmax()) == 2
    assert w[2] > 1.0 / L


def test_unknown_backend_and_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown back-end 'ffnn'; expected one of \('ffn'"):
        build_backend("ffnn", D, L)
    with pytest.raises(
        ConfigError, match=r"unknown option\(s\) \['hiden'\] for back-end 'ffn'; expected a subset"
    ):
        build_backend("ffn", D, L, {"hiden": 3})
    with pytest.raises(ConfigError, match=r"ffn layer index must be in \[-4, 3\], got 4"):
        build_backend("ffn", D, L, {"layer": 4})
    with pytest.raises(ConfigError, match="pooling must be 'mean' or 'mean\\+std'"):
        build_backend("layer-weighted", D, L, {"pooling": "max"})
    assert backend_options("mhfa") == {"heads": 8, "compression_dim": 128, "embed_dim": 256, "dropout": 0.1}


def test_ffn_mean_std_pooling_and_layer_choice() -> None:
    backend = _make("ffn", pooling="mean+std", layer=0).eval()
    x = _stack(2, 30)
    mask = torch.ones(2, 30, dtype=torch.bool)
    with torch.no_grad():
        out = backend(x, mask)
        x2 = x.clone()
        x2[:, 1:] = 0.0  # only layer 0 is read
        assert torch.allclose(out, backend(x2, mask))


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_a_row_without_valid_frames_gives_finite_logits(name: str) -> None:
    """A clip shorter than the receptive field inside a longer batch must not poison the batch with NaN."""
    backend = _make(name, seed=7).eval()
    x = _stack(2, 40, seed=8)
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1] = False
    with torch.no_grad():
        out = backend(x, mask)
        alone = backend(x[:1], mask[:1])
    assert torch.isfinite(out).all()
    assert (out[0] - alone[0]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_half_precision_masks_stay_finite(name: str) -> None:
    """-1e9 overflows float16: masked logits use the dtype's lowest finite value (AMP-safe)."""
    from spoof_train.models.masking import masked_softmax

    logits = torch.randn(2, 5, dtype=torch.float16)
    mask = torch.tensor([[True, True, False, False, False], [False] * 5])
    w = masked_softmax(logits, mask, dim=1)
    assert torch.isfinite(w).all()
    assert torch.allclose(w[0].float().sum(), torch.tensor(1.0), atol=1e-3)
    assert w[1].abs().max() == 0
    backend = _make(name, seed=9).eval().to(torch.bfloat16)
    x = _stack(2, 40, seed=10).to(torch.bfloat16)
    m = torch.ones(2, 40, dtype=torch.bool)
    m[1, 25:] = False
    with torch.no_grad():
        assert torch.isfinite(backend(x, m).float()).all()
