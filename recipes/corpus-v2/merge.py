"""Merge corpus-v2: the licensed corpus-v1 rows and the neural spoofs made by ``spoof-train synth``; with
``--match-durations``, keep only the TTS clips whose durations follow the bona fide histogram
(:func:`match_durations`); check the split plan
(bona fide talkers in one split only; each re-synthesis in its source's split and speaker; TTS voices of a
generator that is in train kept out of dev and test); write MANIFEST.tsv, licence-report.json and
split-report.json into the build folder.

    python recipes/corpus-v2/merge.py OUT/corpus-v1-licensed.tsv OUT/neural/MANIFEST.tsv -o OUT
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

from spoof_train.data.manifest import read_manifest, write_manifest
from spoof_train.errors import DataError
from spoof_train.licence import filter_by_licence, licence_report


def check_plan(rows: list) -> dict:
    by_path = {Path(r.path).resolve().as_posix(): r for r in rows}
    splits_of: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r.label == "bonafide":
            splits_of[r.speaker].add(r.split)
    crossing = {s: sorted(v) for s, v in splits_of.items() if len(v) > 1}
    if crossing:
        raise DataError(f"bona fide talkers in more than one split: {crossing}")
    mismatched = []
    for r in rows:
        if r.extra.get("source") not in ("neural_resynth", "offline_resynth") or "source_clip" not in r.extra:
            continue  # corpus-v1's own re-syntheses carry no source_clip column; its README gives their plan
        source = by_path.get(Path(r.extra["source_clip"]).resolve().as_posix())
        if source is None or (source.split, source.speaker) != (r.split, r.speaker):
            mismatched.append(r.path)
    if mismatched:
        raise DataError(
            f"{len(mismatched)} re-syntheses not in their source's split/speaker, e.g. {mismatched[:3]}"
        )
    tts_train = {
        (r.attack, r.speaker) for r in rows if r.split == "train" and r.extra.get("source") == "neural_tts"
    }
    leaked = sorted(
        {
            f"{r.attack}/{r.speaker} in {r.split}"
            for r in rows
            if r.split != "train" and (r.attack, r.speaker) in tts_train
        }
    )
    if leaked:
        raise DataError(f"TTS voices of train also in dev/test: {leaked}")
    attacks: dict[str, dict[str, int]] = defaultdict(dict)
    for (split, attack), n in sorted(
        Counter((r.split, r.attack) for r in rows if r.label == "spoof").items()
    ):
        attacks[split][attack] = n
    train_attacks = set(attacks.get("train", {}))
    return {
        "bona_fide_talkers": {
            s: len({r.speaker for r in rows if r.label == "bonafide" and r.split == s})
            for s in sorted({r.split for r in rows})
        },
        "spoofs_per_split_and_attack": attacks,
        "unseen_in_train": {s: sorted(set(a) - train_attacks) for s, a in attacks.items() if s != "train"},
        "tts_voices": {
            s: sorted(
                {
                    f"{r.attack}/{r.speaker}"
                    for r in rows
                    if r.split == s and r.extra.get("source") in ("neural_tts",)
                }
            )
            for s in sorted({r.split for r in rows})
        },
    }


#: corpus-v1's duration bins (its README), with one more for anything longer.
DURATION_EDGES = (0.0, 0.4, 0.7, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.5, 8.0, 10.0, 12.5, float("inf"))


def match_durations(rows: list, *, source: str = "neural_tts", seed: int = 20261207) -> tuple[list, dict]:
    """Keep, per split, the rows of ``source`` whose duration histogram is proportional to the bona fide
    one (corpus-v1's rule: spoofs drawn from a larger pool per duration bin). The scale is the largest
    that every bin holding both kinds can fill; bins without any such row stay empty (their count is
    reported). Returns ``(rows kept, report)``."""
    import random

    def bin_of(r: object) -> int:
        sec = float(r.extra["seconds"])  # type: ignore[attr-defined]
        return next(i for i in range(len(DURATION_EDGES) - 1) if sec < DURATION_EDGES[i + 1])

    keep = [r for r in rows if r.extra.get("source") != source]
    report: dict = {}
    rng = random.Random(seed)
    for split in sorted({r.split for r in rows}):
        pool = [r for r in rows if r.split == split and r.extra.get("source") == source]
        if not pool:
            continue
        bona = Counter(bin_of(r) for r in rows if r.split == split and r.label == "bonafide")
        by_bin: dict[int, list] = defaultdict(list)
        for r in sorted(pool, key=lambda r: r.path):
            by_bin[bin_of(r)].append(r)
        shared = [b for b in bona if by_bin.get(b)]
        scale = min(len(by_bin[b]) / bona[b] for b in shared) if shared else 0.0
        chosen = [r for b in shared for r in rng.sample(by_bin[b], int(scale * bona[b]))]
        keep += chosen
        report[split] = {
            "pool": len(pool),
            "kept": len(chosen),
            "scale_vs_bona_fide": round(scale, 3),
            "bona_fide_in_bins_without_tts": sum(n for b, n in bona.items() if not by_bin.get(b)),
        }
    return keep, report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifests", nargs="+")
    p.add_argument("-o", "--out", required=True)
    p.add_argument(
        "--match-durations",
        action="store_true",
        help="keep only the TTS clips whose durations follow the bona fide histogram (few: see the docs)",
    )
    args = p.parse_args()
    out = Path(args.out)
    rows = [r for m in args.manifests for r in read_manifest(m)]
    dup = [k for k, n in Counter(r.path for r in rows).items() if n > 1]
    if dup:
        raise DataError(f"{len(dup)} paths are in more than one manifest, e.g. {dup[:3]}")
    matched: dict = {}
    if args.match_durations:
        rows, matched = match_durations(rows)
    plan = check_plan(rows)
    plan["tts_duration_matching"] = matched or "off (--match-durations keeps a duration-matched subset)"
    write_manifest(out / "MANIFEST.tsv", rows)
    kept, dropped = filter_by_licence(rows)
    report = licence_report(kept, dropped)
    report["rule"] = "spoof_train.licence.is_licensed: every part of a composite licence must allow training"
    (out / "licence-report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (out / "split-report.json").write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n")
    print(
        f"corpus-v2: {len(rows)} rows ({len(kept)} licensed for training a shipped model) "
        f"-> {out / 'MANIFEST.tsv'}"
    )
    print(f"unseen in train: {plan['unseen_in_train']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
