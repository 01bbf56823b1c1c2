"""The evaluation sets of default detector v2 (fixed before any candidate was trained; docs/model-card.md).

Every dev / test row of corpus-v1 (licensed or not: evaluation may use rows no shipped model trains on)
plus the neural spoofs corpus-v2 adds to the same split (LPCNet, LPCNet codec, HiFi-GAN, Kokoro, Piper),
with absolute paths, one manifest per split. The selection rule reads dev: the mean of the per-attack EERs
(each attack against every dev bona fide clip) over the dev attacks that are neural and unseen in training:
``piper`` and ``lpcnet-codec`` (corpus-v2's held-out generators) and ``glowtts_demo``, ``vits_demo``
(corpus-v1's neural demos).

    python recipes/default-detector/eval_sets.py CORPUS_V1 CORPUS_V2 -o runs/v2
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

#: Dev attacks the selection rule averages over, and the test attacks the v2 targets name.
DEV_NEURAL_UNSEEN = ("piper", "lpcnet-codec", "glowtts_demo", "vits_demo")
TEST_NEURAL_TARGETS = ("hifigan_demo", "melgan_demo", "piper")
#: The classic attacks every candidate (and the v1 detector) trained on: the "seen classic" target pools them.
CLASSIC_SEEN = ("espeak", "festival_kal", "flite_awb", "flite_kal", "flite_rms", "griffinlim", "world")
NEURAL_V2 = ("lpcnet", "lpcnet-codec", "hifigan", "kokoro", "piper")


def _rows(manifest: Path) -> tuple[list[str], list[dict[str, str]]]:
    with manifest.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        return list(reader.fieldnames or []), list(reader)


def build(corpus_v1: Path, corpus_v2: Path, out: Path) -> dict[str, Path]:
    cols1, rows1 = _rows(corpus_v1 / "MANIFEST.tsv")
    _, rows2 = _rows(corpus_v2 / "MANIFEST.tsv")
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in ("dev", "test"):
        rows = [dict(r, path=str((corpus_v1 / r["path"]).resolve())) for r in rows1 if r["split"] == split]
        rows += [
            {c: r.get(c, "") for c in cols1} | {"path": str((corpus_v2 / r["path"]).resolve())}
            for r in rows2
            if r["split"] == split and r["label"] == "spoof" and r["attack"] in NEURAL_V2
        ]
        path = out / f"eval-{split}.tsv"
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=cols1, delimiter="\t", lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        written[split] = path
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus_v1", type=Path)
    p.add_argument("corpus_v2", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True)
    args = p.parse_args()
    for split, path in build(args.corpus_v1, args.corpus_v2, args.out).items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
