"""Nested fractions of a training split, for learning curves: how much does more data of the same kind buy?

:func:`train_fraction` keeps a fraction of the rows of one split (``train``) and leaves every other split
as it is, so dev and test stay the yardstick:

* **stratified**: bona fide clips per speaker, TTS spoofs per (attack, speaker / voice); a stratum of ``n``
  rows keeps ``floor(fraction * n)`` of them plus one more with probability ``frac(fraction * n)`` (drawn
  from a hash of the seed and the stratum), so each stratum keeps the fraction in expectation, talkers with
  many clips keep clips in proportion, and a talker with one clip stays with probability ``fraction``;
* **paired**: a re-synthesis spoof (corpus-v1 names them ``<attack>__<bona fide source>__<bona fide
  file>``) is kept exactly when its bona fide clip is kept, so a kept talker's microphone is never a label
  cue (re-syntheses whose bona fide clip is not in the rows are stratified like TTS spoofs);
* **nested**: the order within a stratum is a hash of the seed and the row's path, so the rows of a smaller
  fraction are a subset of those of a larger one with the same seed, and a fraction does not depend on
  which other rows the manifest holds (the hash reads the path as the manifest holds it: the same corpus at
  another absolute path gives another, equally valid, draw).

Command line (e.g. on the licensed manifest written by :mod:`spoof_train.licence`)::

    python recipes/default-detector/v1/subsets.py licensed.tsv -o half.tsv --fraction 0.5 --seed 0
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spoof_train.data.manifest import Utterance, read_manifest, write_manifest
from spoof_train.errors import DataError

__all__ = ["main", "paired_bonafide", "train_fraction"]


def _rank(seed: int, path: str) -> str:
    return hashlib.sha256(f"{seed}\0{path}".encode()).hexdigest()


def paired_bonafide(row: Utterance, bonafide_by_name: dict[tuple[str, str], str]) -> str | None:
    """The path of the bona fide clip a re-synthesis spoof was made from, if it is among the rows:
    ``<attack>__<source>__<file>.ext`` -> the bona fide row of source ``<source>`` named ``<file>.ext``."""
    parts = Path(row.path).name.split("__", 2)
    if row.label != "spoof" or len(parts) != 3 or parts[0] != row.attack:
        return None
    return bonafide_by_name.get((parts[1], parts[2]))


def train_fraction(
    rows: Sequence[Utterance], fraction: float, *, seed: int = 0, split: str = "train"
) -> list[Utterance]:
    """The rows of ``split`` cut to ``fraction`` (stratified, paired, nested; module docstring), every other
    row unchanged, in the input order. ``fraction`` 1 returns all rows; a fraction that keeps no row of the
    split is an error."""
    if not 0.0 < fraction <= 1.0 or math.isnan(fraction):
        raise DataError(f"train fraction: expected 0 < fraction <= 1, got {fraction}")
    part = [r for r in rows if r.split == split]
    if not part:
        raise DataError(
            f"train fraction: no row of split {split!r}; splits are {sorted({r.split for r in rows})}"
        )
    bonafide_by_name = {
        (str(r.extra.get("source", Path(r.path).parent.name)), Path(r.path).name): r.path
        for r in part
        if r.label == "bonafide"
    }
    strata: dict[tuple[str, ...], list[Utterance]] = defaultdict(list)
    pairs: dict[str, str] = {}
    for r in part:
        if r.label == "bonafide":
            strata[("bonafide", r.speaker)].append(r)
            continue
        source = paired_bonafide(r, bonafide_by_name)
        if source is not None:
            pairs[r.path] = source
        else:
            strata[("spoof", r.attack, r.speaker)].append(r)
    kept: set[str] = set()
    for key, members in strata.items():
        ordered = sorted(members, key=lambda r: _rank(seed, r.path))
        share = fraction * len(ordered)
        # One uniform draw per stratum; the count is monotone in the fraction, so fractions nest.
        extra = int(_rank(seed, "\0".join(key))[:13], 16) / 16**13 < share - math.floor(share)
        kept.update(r.path for r in ordered[: math.floor(share) + int(extra)])
    kept.update(spoof for spoof, source in pairs.items() if source in kept)
    if not kept:
        raise DataError(f"train fraction: {fraction} of the {len(part)} {split!r} rows keeps none of them")
    return [r for r in rows if r.split != split or r.path in kept]


def _counts(rows: Sequence[Utterance], split: str) -> dict[str, int]:
    return dict(
        sorted(
            Counter(r.attack if r.label == "spoof" else "bonafide" for r in rows if r.split == split).items()
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python recipes/default-detector/v1/subsets.py",
        description="Write a manifest whose training split is cut to a fraction (stratified per speaker and "
        "attack, re-syntheses with their bona fide clip, nested across fractions); other splits unchanged.",
    )
    p.add_argument("manifest", help="input TSV manifest")
    p.add_argument("-o", "--output", required=True, help="manifest to write (absolute audio paths)")
    p.add_argument("--fraction", type=float, required=True, help="share of the split to keep, in (0, 1]")
    p.add_argument("--seed", type=int, default=0, help="order within each stratum (default 0)")
    p.add_argument("--split", default="train", help="the split to cut (default train)")
    args = p.parse_args(argv)
    try:
        rows = read_manifest(args.manifest)
        kept = train_fraction(rows, args.fraction, seed=args.seed, split=args.split)
        write_manifest(args.output, kept, relative=False)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "fraction": args.fraction,
        "seed": args.seed,
        "split": args.split,
        "before": _counts(rows, args.split),
        "after": _counts(kept, args.split),
    }
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
