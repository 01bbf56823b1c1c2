"""Default-detector recipe helpers: evaluate an exported detector on corpus-v1, and short-clip remedies.

``evaluate`` scores audio through the SDK itself (``spoofsdk.Detector``: the shipped windows, hop and
aggregation), so the figures are those of the file that ships, not of the torch checkpoint. It scores
every window (``speech_gate=False``), as the v1 figures of the model card were made; the gate's effect on
corpus-v1 (0.88 % of bona fide windows unscored) is in docs/benchmarks.md, "Speech gating". Calibration is
not here: ``spoof-export calibrate MODEL.onnx --dev M.tsv --split dev`` writes it into the model file
(docs/export.md); no recipe step rewrites a checkpoint after training.

    python scripts/default_detector.py evaluate MODEL.onnx --manifest corpus-v1/MANIFEST.tsv \
        --seen-from CHECKPOINT_DIR --out runs/default-detector/eval.json

``evaluate`` reports EER overall, per attack, seen vs unseen attacks (seen = the spoof attacks of the
checkpoint's training data), per channel, and for all rows vs the licensed rows only, plus the accuracy of
the shipped threshold.

``short-clips`` reads the per-clip scores ``evaluate --scores-dir`` wrote and tries two remedies for the
short clips that carry most errors (recipes/default-detector/v1/search-notes.md, "Fifth search"): a
duration-aware calibration fitted on the licensed dev clips (log-odds, log duration and their product), and
scoring each clip under 1 s as the mean of several circular shifts (the graph tiles short inputs, so a shift
moves the tiling seam).

    python scripts/default_detector.py short-clips MODEL.onnx --scores-dir RUN/scores-default \
        --seen-from CHECKPOINT_DIR
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _load_rows(manifest: str, splits: Sequence[str]) -> list[Any]:
    from spoof_train.data import read_manifest

    rows = read_manifest(manifest)
    return [r for r in rows if r.split in set(splits)]


def score_rows(model: str | None, rows: Sequence[Any], *, threads: int = 2) -> np.ndarray:
    """Uncalibrated-or-calibrated spoof log-odds (the SDK's ``Score.logit``) of every row, every window
    scored (no speech gate); an unreadable or too short clip raises."""
    from spoof_export.calibrate import score_clips

    paths = [r.path for r in rows]
    return score_clips(model, paths, num_threads=threads, speech_gate=False, skip_unreadable=False).logit


def _eer(bona: np.ndarray, spoof: np.ndarray) -> float | None:
    from spoof_train.metrics import compute_eer

    if bona.size == 0 or spoof.size == 0:
        return None
    eer, _ = compute_eer(bona, spoof)
    return round(100.0 * float(eer), 2)


def evaluate_scores(
    rows: Sequence[Any], logit: np.ndarray, seen: set[str], threshold_logit: float
) -> dict[str, Any]:
    """EER tables of spoof log-odds ``logit`` (detection score = -logit, higher = bona fide)."""
    score = -logit
    label = np.array([r.label for r in rows])
    attack = np.array([r.attack for r in rows])
    channel = np.array([str(r.extra.get("channel", "?")) for r in rows])
    bona_all = score[label == "bonafide"]
    out: dict[str, Any] = {
        "n_bonafide": int((label == "bonafide").sum()),
        "n_spoof": int((label == "spoof").sum()),
        "eer": _eer(bona_all, score[label == "spoof"]),
    }
    for name, keep in (("seen", True), ("unseen", False)):
        sel = (label == "spoof") & np.array([(a in seen) == keep for a in attack])
        out[f"eer_{name}"] = _eer(bona_all, score[sel])
        out[f"n_spoof_{name}"] = int(sel.sum())
    out["per_attack"] = {
        a: {
            "eer": _eer(bona_all, score[(label == "spoof") & (attack == a)]),
            "seen": a in seen,
            "n": int(((label == "spoof") & (attack == a)).sum()),
        }
        for a in sorted(set(attack[label == "spoof"]))
    }
    out["per_channel"] = {}
    for ch in sorted(set(channel)):
        c = channel == ch
        sel_seen = c & (label == "spoof") & np.array([a in seen for a in attack])
        out["per_channel"][ch] = {
            "eer": _eer(score[c & (label == "bonafide")], score[c & (label == "spoof")]),
            "eer_seen": _eer(score[c & (label == "bonafide")], score[sel_seen]),
            "n_bonafide": int((c & (label == "bonafide")).sum()),
            "n_spoof": int((c & (label == "spoof")).sum()),
        }
    flagged = logit > threshold_logit
    out["at_threshold"] = {
        "bonafide_flagged_pct": round(100.0 * float(flagged[label == "bonafide"].mean()), 2),
        "spoof_missed_pct": round(100.0 * float((~flagged[label == "spoof"]).mean()), 2),
    }
    return out


def _seen_attacks(args: argparse.Namespace) -> set[str]:
    """The attacks of the model's training data: ``--seen-attacks`` (for a file whose checkpoint is gone,
    such as the shipped v1 file), else the ``train_attacks`` of ``--seen-from``'s training.json."""
    if args.seen_attacks is not None:
        return {a for a in args.seen_attacks.split(",") if a}
    info = json.loads((Path(args.seen_from) / "training.json").read_text())
    return set(info.get("train_attacks") or [])


def _add_seen_arguments(parser: argparse.ArgumentParser) -> None:
    seen = parser.add_mutually_exclusive_group(required=True)
    seen.add_argument("--seen-from", help="checkpoint dir whose training.json lists train attacks")
    seen.add_argument("--seen-attacks", help="the train attacks, comma-separated (instead of --seen-from)")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from spoof_train.licence import is_licensed
    from spoofsdk import Detector

    seen = _seen_attacks(args)
    det = Detector(args.model, backend="cpu", num_threads=args.threads, speech_gate=False)
    thr = float(det.threshold)
    threshold_logit = float(np.log(thr / (1 - thr)))
    report: dict[str, Any] = {"model": str(args.model), "seen_attacks": sorted(seen), "threshold": thr}
    for split in args.splits:
        rows = _load_rows(args.manifest, [split])
        t0 = time.perf_counter()
        z = score_rows(args.model, rows, threads=args.threads)
        secs = time.perf_counter() - t0
        lic = np.array([is_licensed(str(r.extra.get("licence", ""))) for r in rows])
        report[split] = {
            "all": evaluate_scores(rows, z, seen, threshold_logit),
            "licensed": evaluate_scores(
                [r for r, k in zip(rows, lic, strict=True) if k], z[lic], seen, threshold_logit
            ),
            "scoring_seconds": round(secs, 1),
        }
        if args.scores_dir:
            d = Path(args.scores_dir)
            d.mkdir(parents=True, exist_ok=True)
            with (d / f"{split}.tsv").open("w") as f:
                f.write("path\tlabel\tattack\tchannel\tlicence\tspoof_logodds\n")
                for r, v in zip(rows, z, strict=True):
                    f.write(
                        f"{r.path}\t{r.label}\t{r.attack}\t{r.extra.get('channel')}\t{r.extra.get('licence')}"
                        f"\t{v:.6f}\n"
                    )
        a = report[split]["all"]
        print(
            f"{split}: EER {a['eer']} % (seen {a['eer_seen']} %, unseen {a['eer_unseen']} %), "
            f"licensed-only {report[split]['licensed']['eer']} %; {len(rows)} clips in {secs:.1f} s"
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _duration_features(logit: np.ndarray, seconds: np.ndarray, window_seconds: float) -> np.ndarray:
    g = np.log(np.clip(seconds, 0.1, window_seconds) / window_seconds)  # 0 for clips of a window or more
    return np.stack([logit, g, logit * g], axis=1)


def fit_duration_calibration(
    logit: np.ndarray,
    seconds: np.ndarray,
    spoof: np.ndarray,
    *,
    window_seconds: float = 2.0,
    l2: float = 1e-3,
) -> np.ndarray:
    """Weights ``[w_logit, w_logdur, w_product, bias]`` of a logistic regression of the label (spoof = 1) on
    the clip log-odds, ``log(min(duration, window) / window)`` and their product, each class carrying half
    of the weight (the prior-weighted form of ``spoof_train.metrics.calibrate``)."""
    from scipy.optimize import minimize

    x = _duration_features(np.asarray(logit, float), np.asarray(seconds, float), window_seconds)
    y = np.asarray(spoof, bool)
    if y.all() or not y.any():
        raise ValueError("duration calibration needs bona fide and spoof clips")
    w = np.where(y, 0.5 / y.sum(), 0.5 / (~y).sum())

    def loss(p: np.ndarray) -> float:
        z = x @ p[:-1] + p[-1]
        return float((w * np.where(y, np.logaddexp(0, -z), np.logaddexp(0, z))).sum() + l2 * p[:-1] @ p[:-1])

    start = np.array([1.0, 0.0, 0.0, 0.0])
    return np.asarray(minimize(loss, start, method="BFGS").x)


def apply_duration_calibration(
    weights: np.ndarray, logit: np.ndarray, seconds: np.ndarray, *, window_seconds: float = 2.0
) -> np.ndarray:
    x = _duration_features(np.asarray(logit, float), np.asarray(seconds, float), window_seconds)
    return np.asarray(x @ weights[:-1] + weights[-1])


def cmd_short_clips(args: argparse.Namespace) -> int:
    import csv

    import soundfile as sf

    from spoof_train.licence import is_licensed
    from spoofsdk import Detector

    seen = _seen_attacks(args)
    det = Detector(args.model, backend="cpu", num_threads=args.threads, speech_gate=False)
    window = det.window_samples / det.sample_rate
    data: dict[str, dict[str, np.ndarray]] = {}
    for split in ("dev", "test"):
        with (Path(args.scores_dir) / f"{split}.tsv").open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        logit, secs, shifted = [], [], []
        for r in rows:
            z = float(r["spoof_logodds"])
            clip = sf.info(r["path"])
            logit.append(z)
            secs.append(clip.frames / clip.samplerate)
            if clip.frames < clip.samplerate:  # under 1 s (only these are read): mean over circular shifts
                pcm, sr = sf.read(r["path"], dtype="float32", always_2d=False)
                n = len(pcm)
                rolled = [np.roll(pcm, k * n // args.shifts) for k in range(args.shifts)]
                z = float(np.mean([det.score(x, sample_rate=sr).logit for x in rolled]))
            shifted.append(z)
        data[split] = {
            "logit": np.array(logit),
            "seconds": np.array(secs),
            "shifted": np.array(shifted),
            "spoof": np.array([r["label"] == "spoof" for r in rows]),
            "seen": np.array([r["attack"] in seen for r in rows]),
            "licensed": np.array([is_licensed(r["licence"]) for r in rows]),
        }
    d = data["dev"]
    lic = d["licensed"]
    weights = fit_duration_calibration(
        d["logit"][lic], d["seconds"][lic], d["spoof"][lic], window_seconds=window
    )
    report: dict[str, Any] = {
        "model": str(args.model),
        "duration_weights": [round(float(v), 4) for v in weights],
    }
    print(f"duration-aware calibration (fitted on licensed dev): {report['duration_weights']}")
    print("| scoring | licensed dev EER % | dev seen % | test seen % | licensed test EER % |")
    print("|---|---|---|---|---|")
    for s in data.values():
        s["calibrated"] = apply_duration_calibration(weights, s["logit"], s["seconds"], window_seconds=window)
    scorings = {
        "as scored": "logit",
        "duration-aware calibration": "calibrated",
        f"mean of {args.shifts} shifts under 1 s": "shifted",
    }
    for name, key in scorings.items():
        figures = []
        for split in ("dev", "test"):
            s = data[split]
            z = s[key]
            bona, spoof = ~s["spoof"], s["spoof"]
            figures.append(
                {
                    "licensed": _eer(-z[bona & s["licensed"]], -z[spoof & s["licensed"]]),
                    "seen": _eer(-z[bona], -z[spoof & s["seen"]]),
                }
            )
        report[name] = {"dev": figures[0], "test": figures[1]}
        cells = [figures[0]["licensed"], figures[0]["seen"], figures[1]["seen"], figures[1]["licensed"]]
        print(f"| {name} | " + " | ".join(_fmt(v) for v in cells) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def cmd_tables(args: argparse.Namespace) -> int:
    """Markdown tables of an ``evaluate`` report (for docs/model-card.md)."""
    rep = json.loads(Path(args.report).read_text())
    lines = [
        "| split | rows | bona fide | spoof | EER % | EER seen % | EER unseen % | bona fide flagged % "
        "| spoof missed % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for split in ("dev", "test"):
        if split not in rep:
            continue
        for rows in ("all", "licensed"):
            r = rep[split][rows]
            t = r["at_threshold"]
            lines.append(
                f"| {split} | {rows} | {r['n_bonafide']} | {r['n_spoof']} | {_fmt(r['eer'])} | "
                f"{_fmt(r['eer_seen'])} ({r['n_spoof_seen']}) | {_fmt(r['eer_unseen'])} "
                f"({r['n_spoof_unseen']}) | {t['bonafide_flagged_pct']:.2f} | {t['spoof_missed_pct']:.2f} |"
            )
    lines += [
        "",
        "| split | attack | seen in training | spoofs | EER % (vs all bona fide of the split) |",
        "|---|---|---|---|---|",
    ]
    for split in ("dev", "test"):
        if split not in rep:
            continue
        per = rep[split]["all"]["per_attack"]
        for a, v in sorted(per.items(), key=lambda kv: (not kv[1]["seen"], kv[0])):
            lines.append(
                f"| {split} | {a} | {'seen' if v['seen'] else 'UNSEEN'} | {v['n']} | {_fmt(v['eer'])} |"
            )
    lines += [
        "",
        "| split | channel | bona fide | spoof | EER % (all attacks) | EER % (seen attacks) |",
        "|---|---|---|---|---|---|",
    ]
    for split in ("dev", "test"):
        if split not in rep:
            continue
        for ch, v in rep[split]["all"]["per_channel"].items():
            lines.append(
                f"| {split} | {ch} | {v['n_bonafide']} | {v['n_spoof']} | {_fmt(v['eer'])} | "
                f"{_fmt(v['eer_seen'])} |"
            )
    print("\n".join(lines))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("evaluate", help="EER tables of an exported detector on manifest splits")
    e.add_argument("model")
    e.add_argument("--manifest", required=True)
    e.add_argument("--splits", nargs="+", default=["dev", "test"])
    _add_seen_arguments(e)
    e.add_argument("--out", default=None)
    e.add_argument("--scores-dir", default=None)
    e.add_argument("--threads", type=int, default=2)
    e.set_defaults(fn=cmd_evaluate)
    t = sub.add_parser("tables", help="markdown tables of an evaluate report")
    t.add_argument("report")
    t.set_defaults(fn=cmd_tables)
    k = sub.add_parser("short-clips", help="short-clip remedies on the per-clip scores of evaluate")
    k.add_argument("model", help="the exported detector that evaluate scored")
    k.add_argument("--scores-dir", required=True, help="evaluate's --scores-dir (dev.tsv and test.tsv)")
    _add_seen_arguments(k)
    k.add_argument("--shifts", type=int, default=4, help="circular shifts per clip under 1 s (default 4)")
    k.add_argument("--out", default=None)
    k.add_argument("--threads", type=int, default=1)
    k.set_defaults(fn=cmd_short_clips)
    args = p.parse_args(argv)
    if args.cmd == "short-clips" and args.shifts < 1:
        p.error(f"--shifts must be >= 1, got {args.shifts}")
    return int(args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
