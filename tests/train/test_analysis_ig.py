"""Integrated Gradients: completeness (sum of attributions = f(x) - f(baseline)), convergence, errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
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


def test_ig_progress_bar_on_stderr_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    f = _score(_net())
    x = torch.randn(4000, generator=torch.Generator().manual_seed(4))
    integrated_gradients(f, x, steps=16, batch_size=4, progress=True, desc="IG test")
    assert re.search(r"IG test: 100%.*17/17", capsys.readouterr().err)
    integrated_gradients(f, x, steps=16, batch_size=4)
    assert capsys.readouterr().err == ""


def test_explain_file_shows_the_progress_of_each_view(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import soundfile as sf

    from spoof_train.analysis.explain import explain_file

    wav = tmp_path / "a.wav"
    t = np.arange(8000) / 16000
    sf.write(wav, (0.2 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000)
    explain_file(tiny_checkpoint, wav, tmp_path / "out", steps=4, batch_size=5, n_fft=256)
    err = capsys.readouterr().err
    assert re.search(r"IG time: 100%.*5/5", err)
    assert re.search(r"IG time-frequency: 100%.*5/5", err)
    explain_file(tiny_checkpoint, wav, tmp_path / "out", steps=4, batch_size=5, n_fft=256, progress=False)
    assert "IG time" not in capsys.readouterr().err


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


def _explain_fig(tf_map: np.ndarray | None):  # type: ignore[no-untyped-def]
    from spoof_train.analysis.explain import _explain_figure

    sr, hop = 16000, 160
    rng = np.random.default_rng(0)
    wave = rng.normal(0, 0.1, int(2.94 * sr))
    frames = rng.normal(0, 1, int(np.ceil(wave.size / hop)))
    spec = np.fft.rfft(rng.normal(0, 1, (368, 512)), axis=1).T * 1e-6  # [F, N], a quiet complex STFT
    spec[:, :10] = 0.0  # digital silence: -inf dB without a floor
    result = {"target": "bonafide", "score": 1.0, "time": {"relative_delta": 0.01}}
    return _explain_figure(
        wave=wave,
        sr=sr,
        frames=frames,
        hop=hop,
        spec=None if tf_map is None else spec,
        tf_map=tf_map,
        result=result,
    ), wave.size / sr


@pytest.mark.parametrize("with_tf", [True, False])
def test_explain_figure_panels_share_the_time_axis(with_tf: bool) -> None:
    import matplotlib.pyplot as plt

    tf_map = np.random.default_rng(1).normal(0, 1, (257, 368)) if with_tf else None
    fig, duration = _explain_fig(tf_map)
    try:
        panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        assert len(panels) == (4 if with_tf else 2)
        for ax in panels:
            assert ax.get_xlim() == pytest.approx((0.0, duration))
        fig.canvas.draw()  # the drawn panels line up too (a colourbar on one must not narrow it alone)
        x = np.array([(ax.get_position().x0, ax.get_position().x1) for ax in panels])
        assert np.ptp(x, axis=0) == pytest.approx([0.0, 0.0], abs=1e-3)
    finally:
        plt.close(fig)


def test_explain_figure_colourbars_db_floor_and_robust_ig_scale() -> None:
    import matplotlib.pyplot as plt

    from spoof_train.analysis.explain import SPEC_FLOOR_DB

    rng = np.random.default_rng(2)
    tf_map = rng.normal(0, 1, (257, 368))
    tf_map[100, 100] = 1000.0  # one outlier bin must not set the colour scale
    fig, _ = _explain_fig(tf_map)
    try:
        bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
        assert len(bars) == 2
        assert all(bar.get_ylabel() for bar in bars)
        spec_ax, ig_ax = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"][2:]
        (spec_im,) = spec_ax.get_images()
        assert spec_im.get_clim() == (-SPEC_FLOOR_DB, 0.0)
        assert float(np.min(spec_im.get_array())) >= -SPEC_FLOOR_DB
        (ig_im,) = ig_ax.get_images()
        lo, hi = ig_im.get_clim()
        assert lo == -hi
        assert 2.0 < hi < 4.0  # about the 99th percentile of |N(0, 1)|, not the outlier's 1000
        # most bins are visibly coloured: beyond 10 % of the scale (with max-scaling < 1 % would be)
        assert np.mean(np.abs(tf_map) > 0.1 * hi) > 0.7
    finally:
        plt.close(fig)
