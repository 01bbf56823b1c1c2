"""Integrated Gradients: completeness (sum of attributions = f(x) - f(baseline)), convergence, errors."""

from __future__ import annotations

import pytest
import torch

from spoof_train.analysis.explain import integrated_gradients, stft_integrated_gradients
from spoof_train.errors import ConfigError


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv1d(1, 8, 64, stride=16),
        torch.nn.Tanh(),
        torch.nn.AdaptiveAvgPool1d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 2),
    )


def _score(net: torch.nn.Module):  # type: ignore[no-untyped-def]
    def f(w: torch.Tensor) -> torch.Tensor:
        logits = net(w.unsqueeze(1))
        return logits[:, 0] - logits[:, 1]

    return f


def test_linear_function_is_exact() -> None:
    w = torch.tensor([0.5, -2.0, 3.0])
    f = lambda p: p @ w  # noqa: E731
    x = torch.tensor([1.0, 2.0, -1.0])
    base = torch.tensor([0.5, 0.0, 1.0])
    res = integrated_gradients(f, x, base, steps=1)
    torch.testing.assert_close(res.attributions, (x - base) * w)
    assert abs(res.delta) < 1e-6


def test_quadratic_trapezoid_matches_closed_form() -> None:
    # f = sum x^2, baseline 0: IG_i = x_i^2 exactly (the gradient is linear along the path).
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    res = integrated_gradients(lambda p: (p**2).sum(-1), x, steps=4)
    torch.testing.assert_close(res.attributions, x**2)


@pytest.mark.parametrize("method", ["trapezoid", "riemann"])
def test_completeness_on_a_network_and_convergence(method: str) -> None:
    f = _score(_net())
    x = torch.randn(4000, generator=torch.Generator().manual_seed(1))
    coarse = integrated_gradients(f, x, steps=4, method=method)
    fine = integrated_gradients(f, x, steps=64, method=method)
    gap = fine.f_input - fine.f_baseline
    assert abs(float(fine.attributions.double().sum()) - gap) == pytest.approx(abs(fine.delta), abs=1e-9)
    assert fine.relative_delta < 1e-3
    assert abs(fine.delta) < abs(coarse.delta)  # the quadrature error shrinks with more steps


def test_stft_view_is_complete() -> None:
    f = _score(_net())
    x = torch.randn(4000, generator=torch.Generator().manual_seed(2))
    res, spec = stft_integrated_gradients(f, x, n_fft=256, steps=32)
    assert res.attributions.shape == (129, spec.shape[1], 2)
    # f(x) through istft(stft(x)) equals f(x) directly (perfect reconstruction) ...
    assert res.f_input == pytest.approx(float(f(x.unsqueeze(0)).detach()[0]), abs=1e-4)
    # ... and the bins' attributions add up to f(x) - f(silence).
    assert res.relative_delta < 1e-2


def test_power_grid_is_the_same_integral() -> None:
    f = _score(_net())
    x = torch.randn(4000, generator=torch.Generator().manual_seed(3))
    uniform = integrated_gradients(f, x, steps=96, batch_size=32)
    cubic = integrated_gradients(f, x, steps=96, power=3.0, batch_size=32)
    torch.testing.assert_close(cubic.attributions, uniform.attributions, rtol=2e-2, atol=1e-5)
    assert cubic.relative_delta < 1e-3
    riemann = integrated_gradients(f, x, steps=64, power=2.0, method="riemann", batch_size=32)
    assert riemann.relative_delta < 1e-2


def test_scale_invariant_model_needs_a_noise_baseline() -> None:
    """A normalising front end is scale-invariant: from digital silence the gradients carry nothing and the
    attributions cannot add up; the noise baseline with the t^3 grid restores completeness."""
    from spoof_train.analysis.explain import make_baseline

    net = _net()

    def f(w: torch.Tensor) -> torch.Tensor:
        w = w / (w.std(dim=-1, keepdim=True) + 1e-5)  # like GroupNorm over time
        logits = net(w.unsqueeze(1))
        return logits[:, 0] - logits[:, 1]

    x = torch.randn(4000, generator=torch.Generator().manual_seed(4))
    from_silence = integrated_gradients(f, x, make_baseline(x, "zeros"), steps=32)
    from_noise = integrated_gradients(f, x, make_baseline(x, "noise"), steps=32, power=3.0)
    assert from_silence.relative_delta > 0.5
    assert from_noise.relative_delta < 0.05
    with pytest.raises(ConfigError, match="baseline: expected 'noise' or 'zeros'"):
        make_baseline(x, "pink")


def test_errors() -> None:
    f = lambda p: p.sum(-1)  # noqa: E731
    with pytest.raises(ConfigError, match="steps: expected an integer >= 1, got 0"):
        integrated_gradients(f, torch.ones(3), steps=0)
    with pytest.raises(ConfigError, match="method: expected 'trapezoid' or 'riemann'"):
        integrated_gradients(f, torch.ones(3), method="simpson")
    with pytest.raises(ConfigError, match=r"baseline: expected shape \(3,\), got \(4,\)"):
        integrated_gradients(f, torch.ones(3), torch.zeros(4))
    with pytest.raises(ConfigError, match="power: expected a number >= 1"):
        integrated_gradients(f, torch.ones(3), power=0.5)
    with pytest.raises(ConfigError, match="one scalar per row"):
        integrated_gradients(lambda p: p, torch.ones(3))
