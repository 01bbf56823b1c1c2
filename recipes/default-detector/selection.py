"""Default detector v2: per-attack EERs of every candidate, their score fusion, and the selection rule.

Reads ``spoof-train evaluate --out`` folders (``scores.tsv``: id, label, attack, score; higher = bona fide)
of each candidate on the same evaluation manifest (``eval_sets.py``), and prints one table: per attack, the
EER of each candidate and of the fusion of every pair (mean of their scores, which is what
``spoof-train ensemble`` builds: the mean of the members' logits), then the selection metric (the mean of the
per-attack EERs over ``--select`` attacks, eval_sets.DEV_NEURAL_UNSEEN by default), the pooled EER and the
EER over the classic attacks every candidate trained on (eval_sets.CLASSIC_SEEN).

    python recipes/default-detector/selection.py spectral=runs/v2/spectral/eval-dev whisper=runs/v2/...
        [--select piper,lpcnet-codec,glowtts_demo,vits_demo] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_sets import CLASSIC_SEEN, DEV_NEURAL_UNSEEN

from spoof_train.metrics import compute_eer


def _scores(folder: Path) -> dict[str, tuple[str, str, float]]:
    """``spoof-train evaluate``'s ``scores.tsv`` (id, score = bona fide - spoof logit), or the one TSV of
    ``scripts/default_detector.py evaluate --scores-dir`` (path, spoof_logodds: a model file through the
    SDK), as id -> (label, attack, score with higher = bona fide)."""
    if (folder / "scores.tsv").is_file():
        with (folder / "scores.tsv").open(newline="", encoding="utf-8") as f:
            rows = csv.DictReader(f, delimiter="\t")
            return {r["id"]: (r["label"], r["attack"], float(r["score"])) for r in rows}
    tables = sorted(folder.glob("*.tsv"))
    if len(tables) != 1:
        raise SystemExit(f"{folder}: expected scores.tsv or one SPLIT.tsv of default_detector.py evaluate")
    with tables[0].open(newline="", encoding="utf-8") as f:
        rows = csv.DictReader(f, delimiter="\t")
        return {Path(r["path"]).stem: (r["label"], r["attack"], -float(r["spoof_logodds"])) for r in rows}


def table(
    cands: dict[str, dict[str, tuple[str, str, float]]], select: tuple[str, ...], *, fusions: bool = True
) -> dict[str, dict]:
    ids = sorted(set.intersection(*(set(s) for s in cands.values())))
    first = next(iter(cands.values()))
    labels = np.array([first[i][0] for i in ids])
    attacks = np.array([first[i][1] for i in ids])
    systems = {n: np.array([s[i][2] for i in ids]) for n, s in cands.items()}
    for (a, sa), (b, sb) in itertools.combinations(list(systems.items()) if fusions else [], 2):
        systems[f"{a}+{b}"] = (sa + sb) / 2
    bona = labels == "bonafide"
    out: dict[str, dict] = {}
    for name, s in systems.items():
        per = {atk: 100 * compute_eer(s[bona], s[attacks == atk])[0] for atk in sorted(set(attacks[~bona]))}
        chosen = [per[a] for a in select if a in per]
        classic = np.isin(attacks, CLASSIC_SEEN)
        out[name] = {
            "per_attack": per,
            "pooled": 100 * compute_eer(s[bona], s[~bona])[0],
            "classic_seen": 100 * compute_eer(s[bona], s[classic])[0] if classic.any() else float("nan"),
            "selection": float(np.mean(chosen)) if chosen else float("nan"),
            "selection_attacks": [a for a in select if a in per],
            "trials": len(ids),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("candidates", nargs="+", help="NAME=EVAL_FOLDER (with scores.tsv)")
    p.add_argument("--select", default=",".join(DEV_NEURAL_UNSEEN))
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--no-fusion", action="store_true", help="the candidates alone, no pairwise fusions")
    args = p.parse_args()
    cands = {}
    for c in args.candidates:
        name, _, folder = c.partition("=")
        cands[name] = _scores(Path(folder))
    res = table(cands, tuple(a for a in args.select.split(",") if a), fusions=not args.no_fusion)
    names = list(res)
    attacks = sorted({a for r in res.values() for a in r["per_attack"]})
    print("| attack | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for atk in attacks:
        print(
            f"| {atk} | "
            + " | ".join(f"{res[n]['per_attack'].get(atk, float('nan')):.2f}" for n in names)
            + " |"
        )
    print("| **pooled** | " + " | ".join(f"{res[n]['pooled']:.2f}" for n in names) + " |")
    print("| **classic, seen** | " + " | ".join(f"{res[n]['classic_seen']:.2f}" for n in names) + " |")
    print("| **selection** | " + " | ".join(f"{res[n]['selection']:.2f}" for n in names) + " |")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
