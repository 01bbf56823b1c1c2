"""Evaluation metrics of voice anti-spoofing, as the ASVspoof challenges define them.

Score convention everywhere: **higher score = more bona fide** (the ASVspoof convention; with model logits
``[B, 2]`` in label order ``["bonafide", "spoof"]`` the score is ``logits[:, 0] - logits[:, 1]``).

Sources (the official evaluation packages of the ASVspoof consortium):

* EER and the DET sweep: ``compute_det_curve`` / ``compute_eer`` in ``eval_metrics.py`` of the ASVspoof 2019 /
  2021 evaluation package (github.com/asvspoof-challenge/2021, ``eval-package/eval_metrics.py``) and in
  ``calculate_modules.py`` of the ASVspoof 5 package (github.com/asvspoof-challenge/asvspoof5,
  ``evaluation-package/``). The sweep puts a threshold at every sorted score; miss (bona fide rejected)
  and false alarm (spoof accepted) rates are read at each; the EER is the mean of the two where
  ``|miss - fa|`` is smallest.
* minDCF, actDCF and Cllr: ``compute_mindcf``, ``compute_actDCF`` and ``calculate_CLLR`` of the ASVspoof 5
  package, with its Track 1 defaults ``Pspoof = 0.05, Cmiss = 1, Cfa = 10`` (``calculate_metrics.py``).
* min t-DCF: ``compute_tDCF_legacy`` (ASVspoof 2019; Kinnunen et al., Odyssey 2018) and ``compute_tDCF``
  (ASVspoof 2021; the revised t-DCF of Kinnunen et al., IEEE/ACM TASLP 2020) of the 2021 package, with the
  ASV operating point at the ASV EER threshold as in its ``evaluate.py``.

One deliberate, documented difference: **ties**. The official sweep sorts the pooled scores with a stable sort
(bona fide before spoof inside a tie) and places an operating point *inside* a run of equal scores, a point no
threshold can realise; for constant scores that yields EER = 1.0. With ``ties="merge"`` (the default)
only thresholds between distinct score values are used, so constant scores give EER = 0.5 (chance). On
scores without cross-class ties both modes return identical results; ``ties="official"`` reproduces the
packages bit for bit.

Decision rule of a returned threshold ``t``: a trial is called bona fide when ``score > t``; the miss rate at
``t`` is ``P(bonafide score <= t)`` and the false-alarm rate ``P(spoof score > t)`` (the official DET curve).
``act_dcf`` follows the official ``compute_actDCF`` rule instead: bona fide when ``llr >= threshold``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from spoof_train.errors import MetricError

__all__ = [
    "ASVSPOOF5_COST",
    "TDCF_COST_2019",
    "TDCF_COST_2021",
    "AttackEER",
    "Calibration",
    "DetCurve",
    "TDCFResult",
    "act_dcf",
    "asv_error_rates",
    "calibrate",
    "cllr",
    "compute_det_curve",
    "compute_eer",
    "min_dcf",
    "min_tdcf",
    "min_tdcf_from_rates",
    "per_attack_eer",
    "plot_det",
    "threshold_at_far",
]

logger = logging.getLogger("spoof_train")

Ties = Literal["merge", "official"]

#: ASVspoof 5 Track 1 cost model (evaluation-package/calculate_metrics.py).
ASVSPOOF5_COST: dict[str, float] = {"p_spoof": 0.05, "c_miss": 1.0, "c_fa": 10.0}

#: ASVspoof 2019 t-DCF cost model (legacy t-DCF, Kinnunen et al. 2018; 2019 evaluation plan).
TDCF_COST_2019: dict[str, float] = {
    "Pspoof": 0.05,
    "Ptar": (1 - 0.05) * 0.99,
    "Pnon": (1 - 0.05) * 0.01,
    "Cmiss_asv": 1.0,
    "Cfa_asv": 10.0,
    "Cmiss_cm": 1.0,
    "Cfa_cm": 10.0,
}

#: ASVspoof 2021 t-DCF cost model (revised t-DCF, Kinnunen et al. 2020; eval-package/config.py).
TDCF_COST_2021: dict[str, float] = {
    "Pspoof": 0.05,
    "Ptar": (1 - 0.05) * 0.99,
    "Pnon": (1 - 0.05) * 0.01,
    "Cmiss": 1.0,
    "Cfa": 10.0,
    "Cfa_spoof": 10.0,
}


# ----------------------------------------------------------------------------------------------------
# input checks


def _scores(values: ArrayLike, name: str, *, allow_empty: bool = False) -> NDArray[np.float64]:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricError(
            f"{name}: expected a 1-D array of real scores, got {type(values).__name__}"
        ) from exc
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise MetricError(f"{name}: expected a 1-D array of scores, got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise MetricError(f"{name}: expected at least one score, got an empty array (a class with no trials)")
    bad = ~np.isfinite(arr)
    if bad.any():
        n_nan = int(np.isnan(arr).sum())
        raise MetricError(
            f"{name}: expected finite scores, got {int(bad.sum())} non-finite of {arr.size} "
            f"({n_nan} NaN, {int(bad.sum()) - n_nan} inf); first at index {int(np.flatnonzero(bad)[0])}"
        )
    return arr


def _check_cost(p_spoof: float, c_miss: float, c_fa: float) -> None:
    if not 0.0 < p_spoof < 1.0:
        raise MetricError(f"p_spoof: expected a prior in (0, 1), got {p_spoof}")
    if c_miss <= 0 or c_fa <= 0:
        raise MetricError(f"costs: expected c_miss > 0 and c_fa > 0, got c_miss={c_miss}, c_fa={c_fa}")


# ----------------------------------------------------------------------------------------------------
# DET curve and EER


@dataclass(frozen=True)
class DetCurve:
    """Miss / false-alarm rates at each threshold of the sweep (arrays of equal length, thresholds ascending).

    ``miss[i] = P(bonafide <= thresholds[i])`` and ``fa[i] = P(spoof > thresholds[i])``; the first point is
    the threshold below every score (miss 0, fa 1).
    """

    miss: NDArray[np.float64]
    fa: NDArray[np.float64]
    thresholds: NDArray[np.float64]


def compute_det_curve(
    bonafide_scores: ArrayLike, spoof_scores: ArrayLike, *, ties: Ties = "merge"
) -> DetCurve:
    """Miss and false-alarm rates at every threshold of the ASVspoof sweep over the sorted pooled scores.

    Mirrors ``compute_det_curve`` of the official packages (see the module docstring); ``ties="merge"``
    keeps only the last point of each run of equal scores (the only realisable one), ``ties="official"``
    keeps them all.
    """
    bona = _scores(bonafide_scores, "bonafide_scores")
    spoof = _scores(spoof_scores, "spoof_scores")
    if ties not in ("merge", "official"):
        raise MetricError(f"ties: expected 'merge' or 'official', got {ties!r}")
    all_scores = np.concatenate((bona, spoof))
    labels = np.concatenate((np.ones(bona.size), np.zeros(spoof.size)))
    order = np.argsort(all_scores, kind="mergesort")
    sorted_scores = all_scores[order]
    labels = labels[order]
    bona_below = np.cumsum(labels)  # bona fide trials with score <= sorted_scores[i]
    spoof_above = spoof.size - (np.arange(1, all_scores.size + 1) - bona_below)
    miss = bona_below / bona.size
    fa = spoof_above / spoof.size
    thresholds = sorted_scores
    if ties == "merge":
        last_of_run = np.ones(sorted_scores.size, dtype=bool)
        last_of_run[:-1] = sorted_scores[1:] != sorted_scores[:-1]
        miss, fa, thresholds = miss[last_of_run], fa[last_of_run], thresholds[last_of_run]
    first = sorted_scores[0] - 0.001
    return DetCurve(
        miss=np.concatenate(([0.0], miss)),
        fa=np.concatenate(([1.0], fa)),
        thresholds=np.concatenate(([first], thresholds)),
    )


def compute_eer(
    bonafide_scores: ArrayLike, spoof_scores: ArrayLike, *, ties: Ties = "merge"
) -> tuple[float, float]:
    """Equal error rate and its threshold: ``(eer, threshold)``, EER as a fraction in [0, 1].

    The ASVspoof definition (``compute_eer`` of the 2019/2021 ``eval_metrics.py`` and the ASVspoof 5
    ``calculate_modules.py``): sweep the DET curve, take the index where ``|miss - fa|`` is smallest (the
    first such index), return the mean of miss and fa there and that threshold. Higher score = more bona fide.
    Raises :class:`MetricError` for an empty class or non-finite scores.
    """
    det = compute_det_curve(bonafide_scores, spoof_scores, ties=ties)
    idx = int(np.argmin(np.abs(det.miss - det.fa)))
    return float((det.miss[idx] + det.fa[idx]) / 2.0), float(det.thresholds[idx])


def threshold_at_far(
    bonafide_scores: ArrayLike, spoof_scores: ArrayLike, target_far: float
) -> tuple[float, float, float]:
    """Lowest threshold whose false-acceptance rate (spoof called bona fide) is <= ``target_far``.

    Returns ``(threshold, far, frr)`` at that threshold (decision: bona fide when ``score > threshold``); the
    lowest such threshold minimises the miss rate under the FAR constraint.
    """
    if not 0.0 <= target_far <= 1.0:
        raise MetricError(f"target_far: expected a rate in [0, 1], got {target_far}")
    det = compute_det_curve(bonafide_scores, spoof_scores)
    ok = np.flatnonzero(det.fa <= target_far + 1e-12)
    idx = int(ok[0])  # fa is non-increasing, the last point has fa == 0, so ok is never empty
    return float(det.thresholds[idx]), float(det.fa[idx]), float(det.miss[idx])


# ----------------------------------------------------------------------------------------------------
# ASVspoof 5: minDCF, actDCF, Cllr


def min_dcf(
    bonafide_scores: ArrayLike,
    spoof_scores: ArrayLike,
    *,
    p_spoof: float = 0.05,
    c_miss: float = 1.0,
    c_fa: float = 10.0,
    ties: Ties = "merge",
) -> tuple[float, float]:
    """Normalised minimum detection cost of ASVspoof 5 (``compute_mindcf``): ``(min_dcf, threshold)``.

    ``DCF(t) = Cmiss (1 - Pspoof) Pmiss(t) + Cfa Pspoof Pfa(t)``, minimised over the DET sweep and divided by
    the cost of the best fixed decision ``min(Cmiss (1 - Pspoof), Cfa Pspoof)``. Defaults are the ASVspoof 5
    Track 1 values (Pspoof 0.05, Cmiss 1, Cfa 10). Ties resolve to the first minimum as in the official loop.
    """
    _check_cost(p_spoof, c_miss, c_fa)
    det = compute_det_curve(bonafide_scores, spoof_scores, ties=ties)
    cost = c_miss * (1.0 - p_spoof) * det.miss + c_fa * p_spoof * det.fa
    idx = int(np.argmin(cost))
    c_def = min(c_miss * (1.0 - p_spoof), c_fa * p_spoof)
    return float(cost[idx] / c_def), float(det.thresholds[idx])


def act_dcf(
    bonafide_llrs: ArrayLike,
    spoof_llrs: ArrayLike,
    *,
    p_spoof: float = 0.05,
    c_miss: float = 1.0,
    c_fa: float = 10.0,
) -> tuple[float, float]:
    """Normalised actual DCF of ASVspoof 5 (``compute_actDCF``): ``(act_dcf, threshold)``.

    Scores are read as log-likelihood ratios (bona fide vs spoof); the Bayes threshold is ``-log(beta)`` with
    ``beta = Cmiss (1 - Pspoof) / (Cfa Pspoof)`` (-0.642 for the defaults). Miss = bona fide LLR < threshold,
    false alarm = spoof LLR >= threshold; normalised by ``min(Cfa Pspoof, Cmiss (1 - Pspoof))``.
    """
    _check_cost(p_spoof, c_miss, c_fa)
    bona = _scores(bonafide_llrs, "bonafide_llrs")
    spoof = _scores(spoof_llrs, "spoof_llrs")
    beta = c_miss * (1.0 - p_spoof) / (c_fa * p_spoof)
    threshold = -math.log(beta)
    rate_miss = float(np.mean(bona < threshold))
    rate_fa = float(np.mean(spoof >= threshold))
    cost = c_miss * (1.0 - p_spoof) * rate_miss + c_fa * p_spoof * rate_fa
    return cost / min(c_fa * p_spoof, c_miss * (1.0 - p_spoof)), threshold


def cllr(bonafide_llrs: ArrayLike, spoof_llrs: ArrayLike) -> float:
    """Log-likelihood-ratio cost in bits (ASVspoof 5 ``calculate_CLLR``; Brümmer and du Preez 2006).

    ``Cllr = 0.5 [mean(log2(1 + exp(-llr_bona))) + mean(log2(1 + exp(llr_spoof)))]``: 0 for perfect, 1 for an
    uninformative all-zero LLR; scores are read as natural-log LLRs (bona fide vs spoof). Computed with
    ``logaddexp`` so large LLRs do not overflow.
    """
    bona = _scores(bonafide_llrs, "bonafide_llrs")
    spoof = _scores(spoof_llrs, "spoof_llrs")
    c = 0.5 * (np.mean(np.logaddexp(0.0, -bona)) + np.mean(np.logaddexp(0.0, spoof))) / math.log(2.0)
    return float(c)


# ----------------------------------------------------------------------------------------------------
# t-DCF (ASVspoof 2019 legacy and 2021 revised)


@dataclass(frozen=True)
class TDCFResult:
    """Result of :func:`min_tdcf`: the minimum normalised t-DCF, its CM threshold and the ASV error rates."""

    min_tdcf: float
    threshold: float
    version: str
    pfa_asv: float
    pmiss_asv: float
    pfa_spoof_asv: float
    asv_threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def asv_error_rates(
    target_scores: ArrayLike, nontarget_scores: ArrayLike, spoof_scores: ArrayLike, threshold: float
) -> tuple[float, float, float]:
    """ASV error rates at ``threshold`` (``obtain_asv_error_rates`` of the official packages).

    Returns ``(pfa_asv, pmiss_asv, pfa_spoof_asv)``: nontargets accepted (``>= threshold``), targets rejected
    (``< threshold``) and spoofs accepted by the ASV system.
    """
    tar = _scores(target_scores, "asv target_scores")
    non = _scores(nontarget_scores, "asv nontarget_scores")
    spf = _scores(spoof_scores, "asv spoof_scores")
    return float(np.mean(non >= threshold)), float(np.mean(tar < threshold)), float(np.mean(spf >= threshold))


def min_tdcf_from_rates(
    bonafide_cm: ArrayLike,
    spoof_cm: ArrayLike,
    *,
    pfa_asv: float,
    pmiss_asv: float,
    pfa_spoof_asv: float,
    version: Literal["2019", "2021"] = "2021",
    cost_model: Mapping[str, float] | None = None,
    ties: Ties = "merge",
) -> TDCFResult:
    """Minimum normalised t-DCF of a CM in tandem with an ASV system of the given error rates.

    ``version="2019"`` (legacy t-DCF, Kinnunen et al. 2018; ``compute_tDCF_legacy``)::

        C1 = Ptar (Cmiss_cm - Cmiss_asv Pmiss_asv) - Pnon Cfa_asv Pfa_asv
        C2 = Cfa_cm Pspoof (1 - Pmiss_spoof_asv)           (1 - Pmiss_spoof_asv = Pfa_spoof_asv)
        t-DCF_norm(s) = (C1 Pmiss_cm(s) + C2 Pfa_cm(s)) / min(C1, C2)

    ``version="2021"`` (revised t-DCF, Kinnunen et al. 2020; ``compute_tDCF``)::

        C0 = Ptar Cmiss Pmiss_asv + Pnon Cfa Pfa_asv
        C1 = Ptar Cmiss - C0
        C2 = Pspoof Cfa_spoof Pfa_spoof_asv
        t-DCF_norm(s) = (C0 + C1 Pmiss_cm(s) + C2 Pfa_cm(s)) / (C0 + min(C1, C2))

    Default cost models: :data:`TDCF_COST_2019` and :data:`TDCF_COST_2021`.
    """
    for name, rate in (("pfa_asv", pfa_asv), ("pmiss_asv", pmiss_asv), ("pfa_spoof_asv", pfa_spoof_asv)):
        if not 0.0 <= rate <= 1.0 or math.isnan(rate):
            raise MetricError(f"{name}: expected a rate in [0, 1], got {rate}")
    if version not in ("2019", "2021"):
        raise MetricError(f"version: expected '2019' or '2021', got {version!r}")
    cm = dict(TDCF_COST_2019 if version == "2019" else TDCF_COST_2021)
    if cost_model is not None:
        unknown = set(cost_model) - set(cm)
        if unknown:
            raise MetricError(
                f"cost_model: unknown keys {sorted(unknown)} for t-DCF {version}; known: {sorted(cm)}"
            )
        cm.update(cost_model)
    if (
        min(cm["Ptar"], cm["Pnon"], cm["Pspoof"]) < 0
        or abs(cm["Ptar"] + cm["Pnon"] + cm["Pspoof"] - 1) > 1e-10
    ):
        raise MetricError(
            f"cost_model: priors must be >= 0 and sum to 1, got Ptar={cm['Ptar']}, Pnon={cm['Pnon']}, "
            f"Pspoof={cm['Pspoof']}"
        )
    det = compute_det_curve(bonafide_cm, spoof_cm, ties=ties)
    if version == "2019":
        c1 = (
            cm["Ptar"] * (cm["Cmiss_cm"] - cm["Cmiss_asv"] * pmiss_asv) - cm["Pnon"] * cm["Cfa_asv"] * pfa_asv
        )
        c2 = cm["Cfa_cm"] * cm["Pspoof"] * pfa_spoof_asv
        if c1 <= 0 or c2 <= 0:
            raise MetricError(
                f"t-DCF 2019 weights must be positive, got C1={c1:.6g}, C2={c2:.6g} "
                f"(check the ASV error rates: pfa_asv={pfa_asv}, pmiss_asv={pmiss_asv}, "
                f"pfa_spoof_asv={pfa_spoof_asv})"
            )
        curve = (c1 * det.miss + c2 * det.fa) / min(c1, c2)
    else:
        c0 = cm["Ptar"] * cm["Cmiss"] * pmiss_asv + cm["Pnon"] * cm["Cfa"] * pfa_asv
        c1 = cm["Ptar"] * cm["Cmiss"] - c0
        c2 = cm["Pspoof"] * cm["Cfa_spoof"] * pfa_spoof_asv
        if c0 < 0 or c1 < 0 or c2 < 0 or c0 + min(c1, c2) <= 0:
            raise MetricError(
                f"t-DCF 2021 weights must be non-negative, got C0={c0:.6g}, C1={c1:.6g}, C2={c2:.6g} "
                f"(check the ASV error rates)"
            )
        curve = (c0 + c1 * det.miss + c2 * det.fa) / (c0 + min(c1, c2))
    idx = int(np.argmin(curve))
    return TDCFResult(
        min_tdcf=float(curve[idx]),
        threshold=float(det.thresholds[idx]),
        version=version,
        pfa_asv=float(pfa_asv),
        pmiss_asv=float(pmiss_asv),
        pfa_spoof_asv=float(pfa_spoof_asv),
    )


def min_tdcf(
    bonafide_cm: ArrayLike,
    spoof_cm: ArrayLike,
    *,
    asv_target: ArrayLike,
    asv_nontarget: ArrayLike,
    asv_spoof: ArrayLike,
    version: Literal["2019", "2021"] = "2021",
    cost_model: Mapping[str, float] | None = None,
    ties: Ties = "merge",
) -> TDCFResult:
    """Minimum normalised t-DCF given CM scores and the ASV scores of target, nontarget and spoof trials.

    The ASV operating point is its EER threshold (``compute_eer(tar, non)``), as in the official
    ``evaluate.py``; the ASV error rates there come from :func:`asv_error_rates`. See
    :func:`min_tdcf_from_rates` for the two formulas.
    """
    _, asv_thr = compute_eer(asv_target, asv_nontarget, ties=ties)
    pfa, pmiss, pfa_spoof = asv_error_rates(asv_target, asv_nontarget, asv_spoof, asv_thr)
    res = min_tdcf_from_rates(
        bonafide_cm,
        spoof_cm,
        pfa_asv=pfa,
        pmiss_asv=pmiss,
        pfa_spoof_asv=pfa_spoof,
        version=version,
        cost_model=cost_model,
        ties=ties,
    )
    return TDCFResult(**{**res.to_dict(), "asv_threshold": float(asv_thr)})


# ----------------------------------------------------------------------------------------------------
# per-attack EER


@dataclass(frozen=True)
class AttackEER:
    """EER of one attack: its spoofs against all bona fide trials (the ASVspoof per-attack convention)."""

    eer: float
    threshold: float
    n_spoof: int
    n_bonafide: int


def per_attack_eer(
    scores: ArrayLike, labels: Sequence[str] | ArrayLike, attacks: Sequence[str], *, pooled: bool = True
) -> dict[str, AttackEER]:
    """EER per attack: each attack's spoof scores against all bona fide scores, plus ``"pooled"``.

    ``labels`` holds ``"bonafide"``/``"spoof"`` (or 0 = bona fide / 1 = spoof) per trial; ``attacks`` the
    attack id per trial (ignored for bona fide). Keys are the sorted attack ids, then ``"pooled"``.
    """
    s = _scores(scores, "scores")
    lab = np.asarray(labels)
    if lab.shape != s.shape or len(attacks) != s.size:
        raise MetricError(
            f"scores, labels and attacks must have the same length, got {s.size}, {lab.size}, {len(attacks)}"
        )
    if lab.dtype.kind in "iub":
        if not np.isin(lab, (0, 1)).all():
            raise MetricError(
                f"labels: expected 0 (bonafide) or 1 (spoof), got values {sorted(set(lab.tolist()))}"
            )
        is_spoof = lab.astype(int) == 1
    else:
        str_lab = lab.astype(str)
        unknown = set(str_lab.tolist()) - {"bonafide", "spoof"}
        if unknown:
            raise MetricError(f"labels: expected 'bonafide' or 'spoof', got {sorted(unknown)}")
        is_spoof = str_lab == "spoof"
    bona = s[~is_spoof]
    if bona.size == 0:
        raise MetricError("per_attack_eer: no bona fide trials, the EER is undefined")
    att = np.asarray([str(a) for a in attacks])
    out: dict[str, AttackEER] = {}
    for name in sorted(set(att[is_spoof].tolist())):
        spoof = s[is_spoof & (att == name)]
        eer, thr = compute_eer(bona, spoof)
        out[name] = AttackEER(eer, thr, int(spoof.size), int(bona.size))
    if pooled:
        spoof = s[is_spoof]
        eer, thr = compute_eer(bona, spoof)
        out["pooled"] = AttackEER(eer, thr, int(spoof.size), int(bona.size))
    return out


# ----------------------------------------------------------------------------------------------------
# DET plot


def plot_det(
    path: str | Path,
    systems: Mapping[str, tuple[ArrayLike, ArrayLike]],
    *,
    title: str = "DET curve",
    p_spoof: float = ASVSPOOF5_COST["p_spoof"],
    c_miss: float = ASVSPOOF5_COST["c_miss"],
    c_fa: float = ASVSPOOF5_COST["c_fa"],
) -> Path:
    """Write a DET plot (miss vs false-alarm rate on normal-deviate axes) of one or more systems to a PNG.

    ``systems`` maps a legend name to ``(bonafide_scores, spoof_scores)``. Each curve marks its EER point
    (circle) and its minDCF operating point (square; cost model ``p_spoof``/``c_miss``/``c_fa``, ASVspoof 5
    defaults), both in the legend with their values. The figure is 6 x 6 in at 150 dpi (about 900 x 900 px);
    tick labels are spaced at least 0.25 normal deviates apart so none overlap. Uses matplotlib's Agg
    canvas (no display needed). Returns the path written.
    """
    fig = _det_figure(systems, title=title, p_spoof=p_spoof, c_miss=c_miss, c_fa=c_fa)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def _det_figure(
    systems: Mapping[str, tuple[ArrayLike, ArrayLike]],
    *,
    title: str,
    p_spoof: float,
    c_miss: float,
    c_fa: float,
) -> Any:
    """The matplotlib ``Figure`` that :func:`plot_det` saves (tests inspect its artists)."""
    if not systems:
        raise MetricError("plot_det: expected at least one system, got none")
    _check_cost(p_spoof, c_miss, c_fa)
    # a Figure on an Agg canvas: no pyplot, no global backend switch, nothing left open
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from scipy.special import ndtri

    eps = 1e-4
    # normal-deviate positions: 0.1 % .. 0.5 % .. 1 % ... 40 %; "0.1" and "0.2" (0.13 deviates apart) are not
    # both labelled any more, nor 0.5/1/2 at the low end
    ticks = np.array([0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8])
    fig = Figure(figsize=(6.0, 6.0), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, (bona, spoof) in systems.items():
        det = compute_det_curve(bona, spoof)
        eer, _ = compute_eer(bona, spoof)
        px, py = ndtri(np.clip(det.fa, eps, 1 - eps)), ndtri(np.clip(det.miss, eps, 1 - eps))
        # large trial lists (ASVspoof 2021 DF: 600k) would draw 600k points: keep one per 1/200 deviate cell
        cell = np.stack((np.round(px * 200), np.round(py * 200)), axis=1)
        keep = np.ones(px.shape[0], dtype=bool)
        keep[1:-1] = np.any(cell[1:-1] != cell[:-2], axis=1)
        (line,) = ax.plot(px[keep], py[keep], label=name)
        color = line.get_color()
        e = ndtri(min(max(eer, eps), 1 - eps))
        ax.plot([e], [e], "o", color=color, ms=7, label=f"EER {100 * eer:.2f} %", gid="eer")
        cost = c_miss * (1.0 - p_spoof) * det.miss + c_fa * p_spoof * det.fa
        i = int(np.argmin(cost))
        dcf = float(cost[i] / min(c_miss * (1.0 - p_spoof), c_fa * p_spoof))
        mx = ndtri(min(max(float(det.fa[i]), eps), 1 - eps))
        my = ndtri(min(max(float(det.miss[i]), eps), 1 - eps))
        ax.plot(
            [mx],
            [my],
            "s",
            mfc="none",
            mec=color,
            mew=1.8,
            ms=8,
            gid="mindcf",
            label=f"minDCF {dcf:.3f} (FA {100 * det.fa[i]:.2g} %, miss {100 * det.miss[i]:.2g} %)",
        )
    lim = ndtri(np.array([eps, 0.9]))
    ax.plot(lim, lim, ls=":", lw=0.8, color="0.6", label="_diagonal")
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    labels = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(ndtri(ticks), labels)
    ax.set_yticks(ndtri(ticks), labels)
    ax.tick_params(labelsize=9)
    ax.set_xlabel("False alarm rate: spoof accepted (%)")
    ax.set_ylabel("Miss rate: bona fide rejected (%)")
    ax.set_title(title + f"\nminDCF cost: P(spoof) {p_spoof:g}, Cmiss {c_miss:g}, Cfa {c_fa:g}", fontsize=10)
    ax.set_aspect("equal")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=7, framealpha=0.9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------
# calibration


@dataclass(frozen=True)
class Calibration:
    """Logistic calibration of detection scores into a spoof probability.

    ``p_spoof = sigmoid(scale * x + bias)`` where ``x`` is the **spoof logit difference**
    ``logits[:, 1] - logits[:, 0]`` that the SDK computes, i.e. ``x = -score`` of this module's convention.
    ``threshold`` is the decision threshold on ``p_spoof`` (spoof when ``p_spoof >= threshold``) chosen by
    ``threshold_mode`` on the calibration data; ``far`` / ``frr`` are the rates it gave there.
    """

    scale: float
    bias: float
    threshold: float
    threshold_mode: str
    score_threshold: float
    far: float
    frr: float
    prior_spoof: float
    n_bonafide: int
    n_spoof: int

    def spoof_probability(self, scores: ArrayLike) -> NDArray[np.float64]:
        """Spoof probability of detection scores in this module's convention (higher = more bona fide)."""
        s = _scores(scores, "scores", allow_empty=True)
        return _sigmoid(self.scale * (-s) + self.bias)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = np.exp(-np.logaddexp(0.0, -z))
    return out


def _fit_logistic(
    x: NDArray[np.float64], y: NDArray[np.float64], w: NDArray[np.float64], l2: float
) -> tuple[float, float]:
    """Weighted 1-D logistic regression ``P(y=1) = sigmoid(a x + b)``: Newton's method with backtracking on
    the standardised input (so any score scale converges), L2 ``l2 * a'^2 / 2`` on the standardised slope
    (keeps separable data finite); constant inputs give ``a = 0`` and the weighted log-odds as ``b``."""
    mu, sd = float(np.mean(x)), float(np.std(x))
    p_mean = float(np.clip(np.sum(w * y) / np.sum(w), 1e-12, 1 - 1e-12))
    if not sd > 1e-12 * max(1.0, abs(mu)):  # constant scores (up to rounding): no slope to fit
        return 0.0, math.log(p_mean / (1 - p_mean))
    z = (x - mu) / sd

    def loss(a: float, b: float) -> float:
        s = a * z + b
        return float(np.sum(w * (np.logaddexp(0.0, s) - y * s)) + 0.5 * l2 * a * a)

    a, b = 0.0, math.log(p_mean / (1 - p_mean))
    cur = loss(a, b)
    for _ in range(200):
        p = _sigmoid(a * z + b)
        r = w * (p - y)
        g = np.array([np.sum(r * z) + l2 * a, np.sum(r)])
        hw = w * p * (1 - p)
        hess = np.array(
            [[np.sum(hw * z * z) + l2 + 1e-12, np.sum(hw * z)], [np.sum(hw * z), np.sum(hw) + 1e-12]]
        )
        try:
            step = np.linalg.solve(hess, g)
        except np.linalg.LinAlgError:
            step = g / np.maximum(np.diag(hess), 1e-12)
        t = 1.0
        while t > 1e-10:
            na, nb = a - t * float(step[0]), b - t * float(step[1])
            new = loss(na, nb)
            if new <= cur:
                break
            t /= 2
        else:
            break
        done = abs(cur - new) <= 1e-12 * max(1.0, abs(cur))
        a, b, cur = na, nb, new
        if done:
            break
    return a / sd, b - a * mu / sd


def calibrate(
    bonafide_scores: ArrayLike,
    spoof_scores: ArrayLike,
    *,
    threshold: Literal["eer", "far"] = "eer",
    target_far: float = 0.01,
    prior_spoof: float | None = 0.5,
    l2: float = 1e-3,
) -> Calibration:
    """Fit a logistic map from dev scores to a spoof probability and choose a decision threshold.

       Logistic regression of the label (spoof = 1) on the spoof logit difference ``x = -score``, each class
       weighted so that it carries ``prior_spoof`` / ``1 - prior_spoof`` of the total weight (``None`` = the
       empirical class proportions, i.e. plain logistic regression). With the default 0.5 the fitted
       ``scale * x + bias`` is a calibrated spoof-vs-bona-fide log-likelihood ratio (prior-weighted logistic
       regression as in BOSARIS / Brümmer). ``l2`` (on the slope only) keeps perfectly separable data finite.

       The decision threshold is taken on the score scale, at the EER point (``threshold="eer"``) or at the
       lowest threshold whose false-acceptance rate (spoof called bona fide) is <= ``target_far``
       (``threshold="far"``), then mapped
    to a spoof probability. Returns a :class:`Calibration` for the SDK manifest.
    """
    bona = _scores(bonafide_scores, "bonafide_scores")
    spoof = _scores(spoof_scores, "spoof_scores")
    if prior_spoof is not None and not 0.0 < prior_spoof < 1.0:
        raise MetricError(f"prior_spoof: expected a prior in (0, 1) or None, got {prior_spoof}")
    if l2 < 0:
        raise MetricError(f"l2: expected >= 0, got {l2}")
    x = np.concatenate((-bona, -spoof))
    y = np.concatenate((np.zeros(bona.size), np.ones(spoof.size)))
    if prior_spoof is None:
        w = np.ones_like(x)
        eff_prior = spoof.size / x.size
    else:
        w = np.concatenate(
            (np.full(bona.size, (1 - prior_spoof) / bona.size), np.full(spoof.size, prior_spoof / spoof.size))
        )
        w *= x.size  # keep the Hessian on the scale of the data so l2 means the same thing for any set size
        eff_prior = prior_spoof
    scale, bias = _fit_logistic(x, y, w, l2)
    if scale == 0.0:
        logger.warning("calibrate: constant scores carry no information; the calibration is the prior alone")
    elif scale < 0:
        logger.warning(
            "calibrate: fitted scale %.4g <= 0: the scores rank spoofs above bona fide trials",
            scale,
        )
    if threshold == "eer":
        _, thr = compute_eer(bona, spoof)
        det = compute_det_curve(bona, spoof)
        idx = int(np.searchsorted(det.thresholds, thr))
        far, frr = float(det.fa[idx]), float(det.miss[idx])
    elif threshold == "far":
        thr, far, frr = threshold_at_far(bona, spoof, target_far)
    else:
        raise MetricError(f"threshold: expected 'eer' or 'far', got {threshold!r}")
    # bona fide when score > thr  <=>  spoof when x >= -thr  <=>  p_spoof >= sigmoid(scale * (-thr) + bias)
    p_thr = float(_sigmoid(np.array([scale * (-thr) + bias]))[0])
    return Calibration(
        scale=float(scale),
        bias=float(bias),
        threshold=p_thr,
        threshold_mode=threshold if threshold == "eer" else f"far<={target_far:g}",
        score_threshold=float(thr),
        far=far,
        frr=frr,
        prior_spoof=float(eff_prior),
        n_bonafide=int(bona.size),
        n_spoof=int(spoof.size),
    )
