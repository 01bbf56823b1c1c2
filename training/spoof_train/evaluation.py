"""Evaluation of detectors: full-length scoring as the SDK scores, and the ASVspoof metrics of a
checkpoint on a manifest split (``spoof-train evaluate``).

Training's dev evaluation (:func:`spoof_train.loop.fit`), :func:`evaluate` and the export report score
clips the same way (:func:`eval_scoring`), so the same rows give the same EER in all three.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import logging
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spoof_train.distributed import resolve_device
from spoof_train.errors import ConfigError, DataError
from spoofsdk._logfile import log_to_file

if TYPE_CHECKING:
    import torch

__all__ = [
    "LABELS",
    "MODEL_WINDOW",
    "eval_dataset",
    "eval_scoring",
    "evaluate",
    "limit_rows",
    "read_asv_scores",
    "score_utterances",
    "select_split",
]

log = logging.getLogger("spoof_train")

LABELS = ("bonafide", "spoof")


def select_split(rows: list[Any], split: str, manifest: str | Path) -> list[Any]:
    chosen = [r for r in rows if r.split == split]
    if not chosen:
        splits = sorted({str(r.split) for r in rows})
        raise DataError(
            f"split {split!r} of manifest {str(manifest)!r} is empty; the manifest has splits {splits}"
        )
    return chosen


def limit_rows(rows: list[Any], limit: int | None, seed: int) -> list[Any]:
    """A seeded subset of ``limit`` rows that keeps both classes in proportion (for smoke runs)."""
    if limit is None or len(rows) <= limit:
        return rows
    rng = random.Random(seed)
    by_label: dict[str, list[Any]] = {}
    for r in rows:
        by_label.setdefault(str(r.label), []).append(r)
    out: list[Any] = []
    for label in sorted(by_label):
        group = by_label[label]
        k = max(1, round(limit * len(group) / len(rows)))
        out.extend(rng.sample(group, min(k, len(group))))
    return out[:limit] if len(out) > limit else out


def score_utterances(
    model: torch.nn.Module,
    dataset: Any,
    *,
    batch_size: int = 16,
    device: Any = "cpu",
    amp_dtype: Any = None,
    progress: bool = False,
    desc: str = "score",
    min_samples: int = 0,
) -> list[dict[str, Any]]:
    """Score whole utterances with the detector contract's score ``logit_bf - logit_spoof``.

    ``dataset`` items are either chunked (``{"windows": [N, W], "lengths": [N], ...}``, the data package's
    :class:`~spoof_train.data.ChunkedEvalDataset`: an utterance's score is the mean over its windows) or
    plain (``{"wave": [T], ...}``: one window of the whole clip). Windows of many utterances are batched
    up to ``batch_size`` at a time, only windows of the same length together (as the SDK batches: no
    window is zero-padded, so a clip's score does not depend on its batch); ``None`` items (files skipped
    by ``on_error="skip"``) are left out, and so is a clip whose window is shorter than ``min_samples``
    (the SDK refuses such clips).
    Returns one dict per scored item: ``id``, ``label`` (int), ``attack``, ``score``.
    """
    import torch
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    results: list[dict[str, Any]] = []
    # windows waiting for a forward pass, by length: only windows of one length share a batch, as in the
    # SDK, so no window is ever zero-padded (a padding mask does not make every model padding-invariant)
    pending: dict[int, list[tuple[int, torch.Tensor, int]]] = {}  # length -> (result index, window, length)
    sums: list[float] = []
    counts: list[int] = []
    too_short = 0
    dev_type = torch.device(device).type

    def run(batch: list[tuple[int, torch.Tensor, int]]) -> None:
        lengths = torch.tensor([n for _, _, n in batch], dtype=torch.long)
        wave = torch.zeros(len(batch), max(int(w.shape[-1]) for _, w, _ in batch))
        for i, (_, w, _) in enumerate(batch):
            wave[i, : w.shape[-1]] = w
        ctx = torch.autocast(device_type=dev_type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            logits = model(wave.to(device), lengths.to(device)).float().cpu()
        for (idx, _, _), d in zip(batch, (logits[:, 0] - logits[:, 1]).tolist(), strict=True):
            sums[idx] += d
            counts[idx] += 1

    try:
        for i in tqdm(range(len(dataset)), desc=desc, file=sys.stderr, disable=not progress, leave=False):
            item = dataset[i]
            if item is None:  # skipped by on_error="skip"
                continue
            if "windows" in item:
                windows = [
                    (w[:n], int(n)) for w, n in zip(item["windows"], item["lengths"].tolist(), strict=True)
                ]
            else:
                windows = [(item["wave"], int(item["wave"].shape[-1]))]
            if min(n for _, n in windows) < min_samples:
                too_short += 1
                continue
            idx = len(results)
            results.append({"id": item["id"], "label": int(item["label"]), "attack": item.get("attack", "-")})
            sums.append(0.0)
            counts.append(0)
            for w, n in windows:
                group = pending.setdefault(int(n), [])
                group.append((idx, w, int(n)))
                if len(group) >= batch_size:
                    run(pending.pop(int(n)))
            if sum(len(g) for g in pending.values()) >= 4 * batch_size:  # many lengths: bound the memory
                for key in list(pending):
                    run(pending.pop(key))
        for key in list(pending):
            run(pending.pop(key))
    finally:
        model.train(was_training)
    if too_short:
        log.warning(
            "%s: left out %d clip(s) shorter than the model's %d samples", desc, too_short, min_samples
        )
    for r, total, c in zip(results, sums, counts, strict=True):
        r["score"] = total / c
    return results


#: ``chunk_seconds`` / ``data.eval_chunk_seconds`` value that scores as the SDK does (the default).
MODEL_WINDOW = "model"


def eval_scoring(
    chunk_seconds: float | str | None,
    *,
    sample_rate: int,
    window_samples: int,
    hop_samples: int,
) -> dict[str, Any]:
    """How full-length evaluation scores a clip, as recorded in every metrics file.

    ``"model"`` (the default of training's dev evaluation, ``evaluate`` and the export report): the
    checkpoint's ``window_samples`` every ``hop_samples``, a last window aligned to the end when the hop
    grid leaves a tail, a clip shorter than a window scored as one window of its own length, the clip score
    the mean of its window logit differences: what ``spoofsdk.Detector.score`` does (aggregate ``mean``,
    speech gate off). A number is an explicit override (windows of that many seconds, hop = window,
    shorter clips repeat-padded to one window); ``None`` scores each clip whole in one forward pass.
    """
    if chunk_seconds == MODEL_WINDOW:
        w, h, short, source = window_samples, hop_samples, "own length", "checkpoint"
    elif chunk_seconds is None:
        return {
            "window_samples": None,
            "hop_samples": None,
            "window_s": None,
            "hop_s": None,
            "aggregate": "none (each clip whole, one forward pass)",
            "short_clips": "own length",
            "source": "override: whole clips",
        }
    elif isinstance(chunk_seconds, str) or not chunk_seconds > 0:
        raise ConfigError(
            f"chunk_seconds: expected {MODEL_WINDOW!r} (the checkpoint's window and hop), seconds > 0 or "
            f"null (whole clips), got {chunk_seconds!r}"
        )
    else:
        w = round(float(chunk_seconds) * sample_rate)
        h, short, source = w, "repeat-padded to one window", f"override: chunk_seconds={chunk_seconds:g}"
    return {
        "window_samples": int(w),
        "hop_samples": int(h),
        "window_s": w / sample_rate,
        "hop_s": h / sample_rate,
        "aggregate": "mean",
        "short_clips": short,
        "source": source,
    }


def eval_dataset(
    rows: Sequence[Any], *, sample_rate: int, scoring: dict[str, Any], on_error: str, cache: Any = None
) -> Any:
    """Full-length evaluation data cut as ``scoring`` (an :func:`eval_scoring` dict) says: windows of
    ``window_samples`` every ``hop_samples`` (last window aligned to the end), or each clip whole."""
    from spoof_train.data import AudioDataset, ChunkedEvalDataset

    if scoring["window_samples"] is None:
        return AudioDataset(
            rows, sample_rate=sample_rate, crop_samples=None, train=False, on_error=on_error, cache=cache
        )
    return ChunkedEvalDataset(
        rows,
        window_samples=scoring["window_samples"],
        hop_samples=scoring["hop_samples"],
        sample_rate=sample_rate,
        short="none" if scoring["short_clips"] == "own length" else "repeat",
        on_error=on_error,
        cache=cache,
    )


def _eer_of(results: list[dict[str, Any]]) -> tuple[float, float]:
    from spoof_train.metrics import compute_eer

    bf = np.array([r["score"] for r in results if r["label"] == 0], dtype=np.float64)
    sp = np.array([r["score"] for r in results if r["label"] == 1], dtype=np.float64)
    eer, thr = compute_eer(bf, sp)
    return float(eer), float(thr)


def read_asv_scores(path: str | Path) -> dict[str, np.ndarray]:
    """ASV score file in the ASVspoof 2019/2021 layout: whitespace-separated lines whose last two columns are
    ``key`` (target | nontarget | spoof) and ``score``. Returns the three score arrays."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"asv scores: {str(p)!r} does not exist")
    out: dict[str, list[float]] = {"target": [], "nontarget": [], "spoof": []}
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or parts[-2] not in out:
            raise DataError(
                f"asv scores {str(p)!r} line {n}: expected '... KEY SCORE' with KEY target, "
                f"nontarget or spoof, got {line!r}"
            )
        try:
            out[parts[-2]].append(float(parts[-1]))
        except ValueError:
            raise DataError(f"asv scores {str(p)!r} line {n}: score {parts[-1]!r} is not a number") from None
    for key, vals in out.items():
        if not vals:
            raise DataError(
                f"asv scores {str(p)!r}: no {key} trials; min t-DCF needs target, nontarget and spoof"
            )
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def evaluate(
    checkpoint: str | Path,
    manifest: str | Path,
    split: str,
    *,
    root: str | Path | None = None,
    out_dir: str | Path | None = None,
    asv_scores: str | Path | None = None,
    seen_attacks: Sequence[str] | None = None,
    chunk_seconds: float | str | None = MODEL_WINDOW,
    batch_size: int = 16,
    on_error: str = "raise",
    device: str = "auto",
    progress: bool = True,
    limit: int | None = None,
) -> dict[str, Any]:
    """Score one split of a manifest with a checkpoint and compute the ASVspoof metrics.

    Returns (and with ``out_dir`` writes ``metrics.json``, ``scores.tsv`` and ``det.png``): EER and its
    threshold, minDCF / actDCF / Cllr (ASVspoof 5 definitions on the raw scores read as LLRs), per-attack EER,
    pooled EER over seen and over unseen attacks (seen = spoof attacks of the training data recorded in the
    checkpoint's training.json, or ``seen_attacks``), and min t-DCF (2019 and 2021) when ``asv_scores`` is
    given.

    Clips are scored as :func:`eval_scoring` says: by default (``chunk_seconds="model"``) with the
    checkpoint's window and hop and the mean of the window scores, as the SDK scores (so training's dev
    EER, this and the export report agree on the same rows); a number of seconds or ``None`` (whole clips)
    overrides it. The rule is recorded as ``scoring`` in the result and ``metrics.json``.

    With ``out_dir`` the run's log goes to ``evaluate.log`` there too (appended, timestamped).
    """
    run = functools.partial(
        _evaluate,
        checkpoint,
        manifest,
        split,
        root=root,
        out_dir=out_dir,
        asv_scores=asv_scores,
        seen_attacks=seen_attacks,
        chunk_seconds=chunk_seconds,
        batch_size=batch_size,
        on_error=on_error,
        device=device,
        progress=progress,
        limit=limit,
    )
    if out_dir is None:
        return run()
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with log_to_file(log, Path(out_dir) / "evaluate.log", mode="a"):
        log.info("evaluate %s on split %r of %s", checkpoint, split, manifest)
        out = run()
        log.info(
            "EER %.2f %% over %d bona fide and %d spoof clips",
            100 * out["eer"],
            out["n_bonafide"],
            out["n_spoof"],
        )
        return out


def _evaluate(
    checkpoint: str | Path,
    manifest: str | Path,
    split: str,
    *,
    root: str | Path | None,
    out_dir: str | Path | None,
    asv_scores: str | Path | None,
    seen_attacks: Sequence[str] | None,
    chunk_seconds: float | str | None,
    batch_size: int,
    on_error: str,
    device: str,
    progress: bool,
    limit: int | None,
) -> dict[str, Any]:
    from spoof_train import metrics as M
    from spoof_train.checkpoint import load_checkpoint
    from spoof_train.data import read_manifest

    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error: expected 'raise' or 'skip', got {on_error!r}")
    if not Path(manifest).is_file():
        raise DataError(f"manifest {str(manifest)!r} does not exist")
    model, det_cfg, info = load_checkpoint(checkpoint, map_location="cpu")
    dev = resolve_device(device)
    model.to(dev)
    rows = limit_rows(select_split(read_manifest(manifest, root=root), split, manifest), limit, 0)
    for label in ("bonafide", "spoof"):
        if not any(r.label == label for r in rows):
            raise DataError(f"split {split!r} of {str(manifest)!r} has no {label} trials; the EER needs both")
    scoring = eval_scoring(
        chunk_seconds,
        sample_rate=int(det_cfg.sample_rate),
        window_samples=int(det_cfg.window_samples),
        hop_samples=int(det_cfg.hop_samples),
    )
    ds = eval_dataset(rows, sample_rate=int(det_cfg.sample_rate), scoring=scoring, on_error=on_error)
    t0 = time.perf_counter()
    res = score_utterances(
        model,
        ds,
        batch_size=batch_size,
        device=dev,
        progress=progress,
        desc=f"score {split}",
        min_samples=int(getattr(model, "min_samples", 0) or 0),
    )
    seconds = time.perf_counter() - t0
    scores = np.array([r["score"] for r in res])
    labels = np.array([r["label"] for r in res])
    attacks = [str(r["attack"]) for r in res]
    bona, spoof = scores[labels == 0], scores[labels == 1]
    eer, thr = M.compute_eer(bona, spoof)
    mdcf, mdcf_thr = M.min_dcf(bona, spoof)
    adcf, _ = M.act_dcf(bona, spoof)
    out: dict[str, Any] = {
        "checkpoint": str(Path(checkpoint).resolve()),
        "manifest": str(Path(manifest).resolve()),
        "split": split,
        "n_bonafide": int(bona.size),
        "n_spoof": int(spoof.size),
        "n_skipped": len(rows) - len(res),
        "eer": eer,
        "eer_threshold": thr,
        "min_dcf": mdcf,
        "min_dcf_threshold": mdcf_thr,
        "act_dcf": adcf,
        "cllr": M.cllr(bona, spoof),
        "scoring": scoring,
        "scoring_seconds": round(seconds, 2),
    }
    per = M.per_attack_eer(scores, labels, attacks)
    seen = set(seen_attacks if seen_attacks is not None else info.get("train_attacks", []) or [])
    out["per_attack"] = {
        k: {"eer": v.eer, "n_spoof": v.n_spoof, "seen": (k in seen) if k != "pooled" else None}
        for k, v in per.items()
    }
    if seen_attacks is not None or info.get("train_attacks"):
        out.update(_seen_unseen_eer(bona, scores, labels, attacks, seen))
    if asv_scores is not None:
        out.update(_min_tdcf(bona, spoof, asv_scores))
    if out_dir is not None:
        out["outputs"] = _write_outputs(Path(out_dir), out, res, split=split, bona=bona, spoof=spoof)
    return out


def _seen_unseen_eer(
    bona: np.ndarray, scores: np.ndarray, labels: np.ndarray, attacks: list[str], seen: set[str]
) -> dict[str, Any]:
    """Pooled EER of the spoofs of attacks seen in training, and of the unseen ones, against all bona fide."""
    from spoof_train.metrics import compute_eer

    out: dict[str, Any] = {}
    for name, keep in (("seen", True), ("unseen", False)):
        sel = np.array([lab == 1 and ((a in seen) == keep) for a, lab in zip(attacks, labels, strict=True)])
        if sel.any():
            eer, _ = compute_eer(bona, scores[sel])
            out[f"eer_{name}"] = eer
            out[f"n_spoof_{name}"] = int(sel.sum())
    return out


def _min_tdcf(bona: np.ndarray, spoof: np.ndarray, asv_scores: str | Path) -> dict[str, float]:
    """min t-DCF (ASVspoof 2019 and 2021 definitions) with the ASV scores of ``asv_scores``."""
    from spoof_train.metrics import min_tdcf

    asv = read_asv_scores(asv_scores)
    out: dict[str, float] = {}
    for version in ("2019", "2021"):
        tdcf = min_tdcf(
            bona,
            spoof,
            asv_target=asv["target"],
            asv_nontarget=asv["nontarget"],
            asv_spoof=asv["spoof"],
            version=version,
        )
        out[f"min_tdcf_{version}"] = tdcf.min_tdcf
    return out


def _write_outputs(
    od: Path,
    metrics: dict[str, Any],
    res: list[dict[str, Any]],
    *,
    split: str,
    bona: np.ndarray,
    spoof: np.ndarray,
) -> dict[str, str]:
    """``scores.tsv``, ``det.png`` (EER and minDCF marked) and ``metrics.json`` in ``od``."""
    from spoof_train.metrics import plot_det

    od.mkdir(parents=True, exist_ok=True)
    with (od / "scores.tsv").open("w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["id", "label", "attack", "score"])
        for r in res:
            w.writerow([r["id"], LABELS[r["label"]], r["attack"], f"{r['score']:.6f}"])
    plot_det(od / "det.png", {split: (bona, spoof)}, title=f"DET: {split}")
    (od / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return {"scores": str(od / "scores.tsv"), "det": str(od / "det.png"), "metrics": str(od / "metrics.json")}
