"""Tests of spoof_train.metrics: hand-derived score sets, ties, errors and brute-force cross-checks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spoof_train.errors import MetricError
from spoof_train.metrics import (
    ASVSPOOF5_COST,
    act_dcf,
    asv_error_rates,
    calibrate,
    cllr,
    compute_det_curve,
    compute_eer,
    min_dcf,
    min_tdcf,
    min_tdcf_from_rates,
    per_attack_eer,
    plot_det,
    threshold_at_far,
)

# Interleaved: sorted 0s 1b 2s 3b 4s 5b 6s 7b.
# DET points (miss, fa): (0,1) (0,.75) (.25,.75) (.25,.5) (.5,.5) ...

BONA = [1.0, 3.0, 5.0, 7.0]
SPOOF = [0.0, 2.0, 4.0, 6.0]


def brute_eer(bona: np.ndarray, spoof: np.ndarray) -> tuple[float, float]:
    """Independent O(n^2) EER: every realisable threshold, rule 'bona fide when score > t'."""
    cands = np.concatenate(([min(bona.min(), spoof.min()) - 1.0], np.unique(np.concatenate((bona, spoof)))))
    best = (math.inf, 0.0, 0.0)
    for t in cands:  # ascending, so the first minimum wins as in the official argmin
        miss = sum(1 for b in bona if b <= t) / len(bona)
        fa = sum(1 for s in spoof if s > t) / len(spoof)
        if abs(miss - fa) < best[0]:
            best = (abs(miss - fa), (miss + fa) / 2, t)
    return best[1], best[2]


def brute_min_dcf(
    bona: np.ndarray, spoof: np.ndarray, p: float = 0.05, cm: float = 1.0, cf: float = 10.0
) -> float:
    cands = np.concatenate(([-np.inf], np.unique(np.concatenate((bona, spoof)))))
    costs = [cm * (1 - p) * np.mean(bona <= t) + cf * p * np.mean(spoof > t) for t in cands]
    return float(min(costs) / min(cm * (1 - p), cf * p))


def test_eer_interleaved_by_hand() -> None:
    eer, thr = compute_eer(BONA, SPOOF)
    assert eer == pytest.approx(0.5)
    assert thr == 3.0


def test_eer_rates_do_not_cross_exactly() -> None:
    # sorted 0s 1b 1.5s 2b 3s: (0,1) (0,2/3) (.5,2/3) (.5,1/3) (1,1/3) (1,0); first min |d| = 1/6 at t = 1
    eer, thr = compute_eer([1.0, 2.0], [0.0, 1.5, 3.0])
    assert eer == pytest.approx((0.5 + 2 / 3) / 2)
    assert thr == 1.0


def test_eer_perfect_and_reversed_separation() -> None:
    eer, thr = compute_eer([1.0, 2.0, 3.0], [-1.0, 0.0])
    assert eer == 0.0
    assert 0.0 <= thr < 1.0
    eer_rev, _ = compute_eer([-1.0, 0.0], [1.0, 2.0, 3.0])
    assert eer_rev == 1.0


def test_constant_scores_merge_vs_official_ties() -> None:
    eer, thr = compute_eer([0.3] * 5, [0.3] * 7)
    assert eer == 0.5  # chance: no threshold can split equal scores
    assert thr < 0.3
    eer_off, thr_off = compute_eer([0.3] * 5, [0.3] * 7, ties="official")
    # the official stable sort places an (unrealisable) point inside the tie where miss = fa = 1
    assert eer_off == 1.0
    assert thr_off == 0.3


def test_partial_ties_by_hand() -> None:
    # bona {1, 2, 2}, spoof {2, 0}: merged points (0,1) (0,.5) [t=0] (1/3,.5) [t=1] (1,0) [t=2]
    det = compute_det_curve([1.0, 2.0, 2.0], [2.0, 0.0])
    assert det.thresholds[1:].tolist() == [0.0, 1.0, 2.0]
    assert det.miss.tolist() == pytest.approx([0, 0, 1 / 3, 1])
    assert det.fa.tolist() == pytest.approx([1, 0.5, 0.5, 0])
    eer, thr = compute_eer([1.0, 2.0, 2.0], [2.0, 0.0])
    assert eer == pytest.approx((1 / 3 + 0.5) / 2)
    assert thr == 1.0


def test_official_mode_equals_merge_without_ties() -> None:
    rng = np.random.default_rng(1)
    bona, spoof = rng.normal(1, 1, 301), rng.normal(-1, 1, 207)
    assert compute_eer(bona, spoof) == compute_eer(bona, spoof, ties="official")
    assert min_dcf(bona, spoof) == min_dcf(bona, spoof, ties="official")


@pytest.mark.parametrize("seed", range(6))
def test_eer_and_min_dcf_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    nb, ns = rng.integers(1, 60, size=2)
    # rounded scores force many ties within and across classes
    bona = np.round(rng.normal(0.7, 1.0, nb), 1)
    spoof = np.round(rng.normal(-0.5, 1.2, ns), 1)
    eer, thr = compute_eer(bona, spoof)
    b_eer, b_thr = brute_eer(bona, spoof)
    assert eer == pytest.approx(b_eer, abs=1e-12)
    if b_thr >= min(bona.min(), spoof.min()):
        assert thr == b_thr
    assert min_dcf(bona, spoof)[0] == pytest.approx(brute_min_dcf(bona, spoof), abs=1e-12)
    assert min_dcf(bona, spoof, p_spoof=0.3, c_fa=2.0)[0] == pytest.approx(
        brute_min_dcf(bona, spoof, p=0.3, cf=2.0), abs=1e-12
    )


def test_min_dcf_by_hand() -> None:
    # cost = .95 miss + .5 fa; minimum .375 at (0, .75) [t = 0]; normalised by min(.95, .5)
    value, thr = min_dcf(BONA, SPOOF)
    assert value == pytest.approx(0.75)
    assert thr == 0.0
    assert min_dcf([1.0, 2.0], [-1.0])[0] == 0.0


def test_act_dcf_by_hand() -> None:
    # threshold -ln(1.9) = -0.642; miss: -1 < thr (1/2); fa: 0 >= thr (1/2); (.95*.5 + .5*.5) / .5
    value, thr = act_dcf([-1.0, 2.0], [-2.0, 0.0])
    assert thr == pytest.approx(-math.log(1.9))
    assert value == pytest.approx(1.45)
    assert act_dcf([5.0], [-5.0])[0] == 0.0


def test_cllr_by_hand() -> None:
    assert cllr([0.0, 0.0], [0.0]) == pytest.approx(1.0)
    assert cllr([math.log(3)], [-math.log(3)]) == pytest.approx(math.log2(4 / 3))
    assert cllr([1e4], [-1e4]) == pytest.approx(0.0, abs=1e-12)  # no overflow
    assert cllr([-1e4], [0.0]) == pytest.approx(0.5 * (1e4 / math.log(2) + 1.0), rel=1e-9)


def test_tdcf_by_hand_both_versions() -> None:
    # error-free ASV: 2021 C0 = 0, C1 = Ptar = .9405, C2 = .5; 2019 C1 = .9405, C2 = .5: same curve
    for version in ("2019", "2021"):
        res = min_tdcf_from_rates(BONA, SPOOF, pfa_asv=0.0, pmiss_asv=0.0, pfa_spoof_asv=1.0, version=version)
        assert res.min_tdcf == pytest.approx(0.75)
        assert res.threshold == 0.0
    # perfect CM: the 2021 t-DCF floor is C0 / (C0 + min(C1, C2)), the 2019 one 0
    r21 = min_tdcf_from_rates(
        [1.0, 2.0], [0.0], pfa_asv=0.05, pmiss_asv=0.1, pfa_spoof_asv=0.5, version="2021"
    )
    c0 = 0.9405 * 0.1 + 0.0095 * 10 * 0.05
    assert r21.min_tdcf == pytest.approx(c0 / (c0 + min(0.9405 - c0, 0.25)))
    r19 = min_tdcf_from_rates(
        [1.0, 2.0], [0.0], pfa_asv=0.05, pmiss_asv=0.1, pfa_spoof_asv=0.5, version="2019"
    )
    assert r19.min_tdcf == pytest.approx(0.0)


def test_tdcf_against_brute_force_curve() -> None:
    rng = np.random.default_rng(7)
    bona, spoof = rng.normal(1, 1, 80), rng.normal(-1, 1, 120)
    pfa, pmiss, pfs = 0.02, 0.03, 0.4
    ptar, pnon, psp = 0.95 * 0.99, 0.95 * 0.01, 0.05
    cands = np.concatenate(([-np.inf], np.unique(np.concatenate((bona, spoof)))))
    pm = np.array([np.mean(bona <= t) for t in cands])
    pf = np.array([np.mean(spoof > t) for t in cands])
    c0 = ptar * pmiss + pnon * 10 * pfa
    c1, c2 = ptar - c0, psp * 10 * pfs
    expect21 = np.min((c0 + c1 * pm + c2 * pf) / (c0 + min(c1, c2)))
    d1 = ptar * (1 - pmiss) - pnon * 10 * pfa
    expect19 = np.min((d1 * pm + c2 * pf) / min(d1, c2))
    got21 = min_tdcf_from_rates(bona, spoof, pfa_asv=pfa, pmiss_asv=pmiss, pfa_spoof_asv=pfs, version="2021")
    got19 = min_tdcf_from_rates(bona, spoof, pfa_asv=pfa, pmiss_asv=pmiss, pfa_spoof_asv=pfs, version="2019")
    assert got21.min_tdcf == pytest.approx(expect21, abs=1e-12)
    assert got19.min_tdcf == pytest.approx(expect19, abs=1e-12)


def test_min_tdcf_from_asv_scores_uses_asv_eer_threshold() -> None:
    tar, non, spf = (
        np.array([2.0, 3.0, 4.0, 0.5]),
        np.array([-1.0, 0.0, 1.0, -2.0]),
        np.array([1.5, 3.5, -1.0]),
    )
    res = min_tdcf(BONA, SPOOF, asv_target=tar, asv_nontarget=non, asv_spoof=spf)
    _, asv_thr = compute_eer(tar, non)
    assert res.asv_threshold == asv_thr
    assert (res.pfa_asv, res.pmiss_asv, res.pfa_spoof_asv) == asv_error_rates(tar, non, spf, asv_thr)
    direct = min_tdcf_from_rates(
        BONA, SPOOF, pfa_asv=res.pfa_asv, pmiss_asv=res.pmiss_asv, pfa_spoof_asv=res.pfa_spoof_asv
    )
    assert res.min_tdcf == direct.min_tdcf


def test_per_attack_eer() -> None:
    scores = [1.0, 3.0, 5.0, 7.0, 0.0, 2.0, 4.0, 6.0, 8.0]
    labels = ["bonafide"] * 4 + ["spoof"] * 5
    attacks = ["-"] * 4 + ["A01", "A01", "A02", "A02", "A03"]
    res = per_attack_eer(scores, labels, attacks)
    assert list(res) == ["A01", "A02", "A03", "pooled"]
    assert res["A01"].eer == pytest.approx(compute_eer(BONA, [0.0, 2.0])[0])
    assert res["A03"].eer == 1.0  # its only spoof scores above every bona fide trial
    assert res["pooled"].n_spoof == 5
    assert res["A02"].n_bonafide == 4
    int_res = per_attack_eer(scores, [0] * 4 + [1] * 5, attacks)
    assert int_res["A02"] == res["A02"]


def test_threshold_at_far() -> None:
    thr, far, frr = threshold_at_far(BONA, SPOOF, 0.3)
    assert far <= 0.3
    assert (thr, far, frr) == (4.0, 0.25, 0.5)
    assert threshold_at_far(BONA, SPOOF, 0.0)[1] == 0.0


@pytest.mark.parametrize(
    ("bona", "spoof", "match"),
    [
        ([], [1.0], "bonafide_scores: expected at least one score"),
        ([1.0], [], "spoof_scores: expected at least one score"),
        ([1.0, float("nan")], [0.0], r"expected finite scores, got 1 non-finite of 2 \(1 NaN"),
        ([1.0], [float("inf")], "spoof_scores: expected finite scores"),
        ([[1.0, 2.0]], [0.0], "expected a 1-D array"),
        (["a"], [0.0], "expected a 1-D array of real scores"),
    ],
)
def test_bad_scores_raise_metric_error(bona: list[float], spoof: list[float], match: str) -> None:
    with pytest.raises(MetricError, match=match):
        compute_eer(bona, spoof)


def test_other_errors() -> None:
    with pytest.raises(MetricError, match="p_spoof: expected a prior in"):
        min_dcf(BONA, SPOOF, p_spoof=1.5)
    with pytest.raises(MetricError, match="bonafide_llrs: expected at least one"):
        cllr([], [0.0])
    with pytest.raises(MetricError, match="unknown keys"):
        min_tdcf_from_rates(BONA, SPOOF, pfa_asv=0, pmiss_asv=0, pfa_spoof_asv=1, cost_model={"Cfoo": 1})
    with pytest.raises(MetricError, match="pfa_spoof_asv: expected a rate"):
        min_tdcf_from_rates(BONA, SPOOF, pfa_asv=0, pmiss_asv=0, pfa_spoof_asv=1.5)
    with pytest.raises(MetricError, match="no bona fide trials"):
        per_attack_eer([1.0], ["spoof"], ["A01"])
    with pytest.raises(MetricError, match="expected 'bonafide' or 'spoof', got"):
        per_attack_eer([1.0, 2.0], ["bonafide", "fake"], ["-", "A01"])
    with pytest.raises(MetricError, match="ties: expected"):
        compute_eer(BONA, SPOOF, ties="x")  # type: ignore[arg-type]


def test_calibration_recovers_gaussian_llr() -> None:
    # bona ~ N(+1, 1), spoof ~ N(-1, 1): the true spoof LLR is 2 * x with x = -score (scale 2, bias 0)
    rng = np.random.default_rng(0)
    bona, spoof = rng.normal(1, 1, 20000), rng.normal(-1, 1, 10000)
    cal = calibrate(bona, spoof)
    assert cal.scale == pytest.approx(2.0, abs=0.08)
    assert cal.bias == pytest.approx(0.0, abs=0.05)
    eer, thr = compute_eer(bona, spoof)
    assert cal.score_threshold == thr
    assert abs(cal.far - eer) < 0.01
    assert abs(cal.frr - eer) < 0.01
    assert cal.spoof_probability([thr])[0] == pytest.approx(cal.threshold)
    p = cal.spoof_probability([-3.0, 0.0, 3.0])
    assert p[0] > 0.99 > 0.5 > p[2]
    assert p[1] == pytest.approx(0.5, abs=0.02)


def test_calibration_far_threshold_and_separable_data() -> None:
    rng = np.random.default_rng(3)
    bona, spoof = rng.normal(1, 1, 500), rng.normal(-1, 1, 500)
    cal = calibrate(bona, spoof, threshold="far", target_far=0.01)
    assert cal.far <= 0.01
    assert np.mean(cal.spoof_probability(spoof) < cal.threshold) == pytest.approx(cal.far)
    const = calibrate([0.3] * 5, [0.3] * 7)
    assert const.scale == 0.0
    assert const.bias == pytest.approx(0.0, abs=1e-12)  # prior 0.5: log-odds 0
    assert calibrate([0.3] * 5, [0.3] * 7, prior_spoof=None).bias == pytest.approx(math.log(7 / 5))
    rev = calibrate([1.0, 2.0], [3.0, 4.0])  # reversed ranking: negative but finite slope
    assert -100 < rev.scale < 0
    shifted = calibrate(100 * bona + 5000, 100 * spoof + 5000)  # any score scale converges
    assert shifted.scale * 100 == pytest.approx(calibrate(bona, spoof).scale, rel=1e-6)
    sep = calibrate([5.0, 6.0, 7.0], [-7.0, -6.0])
    assert math.isfinite(sep.scale)
    assert sep.scale > 0
    assert sep.far == 0.0
    assert sep.frr == 0.0


def test_plot_det_writes_png(tmp_path) -> None:
    rng = np.random.default_rng(0)
    out = plot_det(
        tmp_path / "sub" / "det.png",
        {
            "good": (rng.normal(2, 1, 200), rng.normal(-2, 1, 200)),
            "weak": (rng.normal(0.3, 1, 200), rng.normal(0, 1, 200)),
        },
    )
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # the PNG header's width and height: 6 x 6 in at 150 dpi (it was 497 x 508 px)
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (900, 900)
    with pytest.raises(MetricError, match="at least one system"):
        plot_det(tmp_path / "x.png", {})


def test_det_figure_marks_eer_and_min_dcf_and_ticks_do_not_overlap() -> None:
    from scipy.special import ndtri

    from spoof_train.metrics import _det_figure

    rng = np.random.default_rng(1)
    bona, spoof = rng.normal(1.5, 1, 300), rng.normal(-1.5, 1, 300)
    fig = _det_figure({"sys": (bona, spoof)}, title="t", **ASVSPOOF5_COST)
    (ax,) = fig.axes
    by_gid = {line.get_gid(): line for line in ax.lines if line.get_gid()}
    assert set(by_gid) == {"eer", "mindcf"}
    eer, _ = compute_eer(bona, spoof)
    assert by_gid["eer"].get_xdata()[0] == pytest.approx(ndtri(eer))
    # the minDCF point sits on the DET curve where the ASVspoof 5 cost is smallest, with min_dcf's value
    dcf, thr = min_dcf(bona, spoof)
    det = compute_det_curve(bona, spoof)
    i = int(np.flatnonzero(det.thresholds == thr)[0])
    assert by_gid["mindcf"].get_xdata()[0] == pytest.approx(ndtri(det.fa[i]))
    assert by_gid["mindcf"].get_ydata()[0] == pytest.approx(ndtri(det.miss[i]))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"minDCF {dcf:.3f}" in " ".join(legend)
    assert f"EER {100 * eer:.2f} %" in legend
    # once drawn, neighbouring tick labels of either axis are at least 5 px apart (0.1 and 0.2 % were 1 px)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for axis, lo, hi in ((ax.xaxis, "x0", "x1"), (ax.yaxis, "y0", "y1")):
        boxes = [t.get_window_extent(renderer) for t in axis.get_ticklabels() if t.get_text()]
        assert len(boxes) >= 8
        for a, b in itertools.pairwise(boxes):
            assert getattr(b, lo) - getattr(a, hi) >= 5, (a, b)


scores_st = st.lists(
    st.floats(min_value=-50, max_value=50, allow_nan=False, allow_infinity=False), min_size=1, max_size=40
)


@settings(max_examples=60, deadline=None)
@given(bona=scores_st, spoof=scores_st)
def test_properties_on_random_scores(bona: list[float], spoof: list[float]) -> None:
    b, s = np.round(np.array(bona), 2), np.round(np.array(spoof), 2)
    eer, thr = compute_eer(b, s)
    assert 0.0 <= eer <= 1.0
    assert eer == pytest.approx(brute_eer(b, s)[0], abs=1e-12)
    # only the ranking matters: a strictly increasing map changes thresholds, not rates
    eer2, thr2 = compute_eer(3.0 * b + 1.0, 3.0 * s + 1.0)
    assert eer2 == pytest.approx(eer, abs=1e-12)
    if thr >= min(b.min(), s.min()):
        assert thr2 == pytest.approx(3.0 * thr + 1.0)
    assert min_dcf(b, s)[0] <= 1.0 + 1e-12  # the trivial "accept all" decision costs exactly 1
    r = min_tdcf_from_rates(b, s, pfa_asv=0.01, pmiss_asv=0.02, pfa_spoof_asv=0.4, version="2021")
    assert r.min_tdcf <= 1.0 + 1e-12
    # swapping the classes maps (miss, fa) to (1 - fa, 1 - miss) at the same thresholds: EER -> 1 - EER,
    # up to which of several equally close points the first-argmin picks (floating-point ties in |miss - fa|)
    det = compute_det_curve(b, s)
    d = np.abs(det.miss - det.fa)
    closest = ((det.miss + det.fa) / 2)[d <= d.min() + 1e-9]
    assert np.min(np.abs(1.0 - compute_eer(s, b)[0] - closest)) < 1e-12
