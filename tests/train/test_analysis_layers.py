"""Layer analysis: the N recommendation rule and the report files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spoof_train.analysis.layers import recommend_layers, write_layer_report
from spoof_train.errors import ConfigError


def test_coverage_rule() -> None:
    # hidden states 0 (CNN) .. 6; mass 0.05, 0.10, 0.40, 0.30, 0.10, 0.03, 0.02
    w = [0.05, 0.10, 0.40, 0.30, 0.10, 0.03, 0.02]
    rec = recommend_layers(w, coverage=0.9)
    assert rec["recommended_layers"] == 4  # 0.05+0.10+0.40+0.30+0.10 = 0.95 >= 0.9; up to 3 only 0.85
    assert recommend_layers(w, coverage=0.85)["recommended_layers"] == 3
    assert rec["top_layer"] == 2
    assert rec["total_layers"] == 6
    assert rec["cumulative"][-1] == pytest.approx(1.0)
    assert recommend_layers(w, coverage=1.0)["recommended_layers"] == 6


def test_unnormalised_and_multi_run_weights() -> None:
    runs = np.array(
        [[2.0, 6.0, 1.0, 1.0], [0.0, 8.0, 1.0, 1.0]]
    )  # means 0.1, 0.7, 0.1, 0.1 after normalising
    rec = recommend_layers(runs / runs.sum(axis=1, keepdims=True), coverage=0.8)
    assert rec["recommended_layers"] == 1
    assert rec["weights"] == pytest.approx([0.1, 0.7, 0.1, 0.1])


def test_at_least_one_layer_is_kept() -> None:
    assert recommend_layers([0.95, 0.03, 0.02], coverage=0.9)["recommended_layers"] == 1


def test_knee_of_a_front_loaded_curve() -> None:
    w = [0.02, 0.3, 0.3, 0.3, 0.02, 0.02, 0.02, 0.02]
    assert recommend_layers(w)["knee_layers"] == 3


@pytest.mark.parametrize(
    ("weights", "coverage", "match"),
    [
        ([1.0], 0.9, "a vector over >= 2 hidden states"),
        ([0.5, -0.1, 0.6], 0.9, "non-negative"),
        ([0.5, float("nan")], 0.9, "finite"),
        ([0.5, 0.5], 0.0, r"coverage: expected a fraction in \(0, 1\]"),
    ],
)
def test_errors(weights: list[float], coverage: float, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        recommend_layers(weights, coverage=coverage)


def test_report_files(tmp_path: Path) -> None:
    w = np.array([[0.05, 0.10, 0.40, 0.30, 0.10, 0.05], [0.10, 0.20, 0.30, 0.20, 0.10, 0.10]])
    rep = write_layer_report(w, tmp_path, coverage=0.9, labels=["seed 0", "seed 1"])
    png = (tmp_path / "layer_weights.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "layer_weights.md").read_text()
    assert "| hidden state | seed 0 | seed 1 | mean | cumulative |" in md
    assert f"N = {rep['recommended_layers']}" in md
    data = json.loads((tmp_path / "layer_weights.json").read_text())
    assert data["runs"]["seed 1"] == pytest.approx(list(w[1]))
    assert data["recommended_layers"] == recommend_layers(w.mean(axis=0), 0.9)["recommended_layers"]
    with pytest.raises(ConfigError, match="expected 2 labels, got 1"):
        write_layer_report(w, tmp_path, labels=["one"])


def test_flat_weights_warn_and_peaked_ones_do_not(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from spoof_train.analysis.layers import FLAT_TOLERANCE

    flat = np.array([0.198, 0.202, 0.199, 0.201, 0.200])  # what a barely trained back-end learned
    rep = recommend_layers(flat)
    assert rep["near_uniform"] is True
    assert rep["uniform_distance"] < FLAT_TOLERANCE
    assert "near-uniform" in rep["warning"]
    with caplog.at_level("WARNING", logger="spoof_train"):
        out = write_layer_report(flat, tmp_path)
    assert "near-uniform" in caplog.text
    assert json.loads((tmp_path / "layer_weights.json").read_text())["near_uniform"] is True
    assert "**Warning:**" in (tmp_path / "layer_weights.md").read_text()
    assert out["warning"] == rep["warning"]
    # a peaked curve (most mass in layers 2-3), and one just past the tolerance, are not flagged
    peaked = recommend_layers([0.05, 0.10, 0.40, 0.30, 0.10, 0.05])
    assert peaked["near_uniform"] is False
    assert peaked["warning"] is None
    edge = np.full(5, 0.2) + np.array([0.06, 0.0, 0.0, 0.0, -0.06])  # first prefix 6 % above uniform
    assert recommend_layers(edge)["near_uniform"] is False


def test_heatmap_has_mean_row_and_labelled_colourbar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.figure

    saved: list[matplotlib.figure.Figure] = []
    real_savefig = matplotlib.figure.Figure.savefig

    def keep(self: matplotlib.figure.Figure, *a: object, **k: object) -> None:
        saved.append(self)
        real_savefig(self, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    w = np.array([[0.05, 0.10, 0.40, 0.30, 0.10, 0.05], [0.10, 0.20, 0.30, 0.20, 0.10, 0.10]])
    write_layer_report(w, tmp_path, labels=["seed 0", "seed 1"])
    (fig,) = saved
    heat, bar = fig.axes
    assert bar.get_label() == "<colorbar>"
    assert "weight" in bar.get_ylabel()
    assert [t.get_text() for t in heat.get_yticklabels()] == ["seed 0", "seed 1", "mean"]
    (im,) = heat.get_images()
    assert np.asarray(im.get_array())[-1] == pytest.approx(w.mean(axis=0))
