"""The evaluation sets as a call centre hears them: every clip through an 8 kHz G.711 telephone channel.

The v2 search scores clips as the corpora store them, so the demo pages' clean wideband fakes are compared
with bona fide clips that are partly 8 kHz IVR prompts (v2-search-notes.md, "Round 3"). Here every clip,
bona fide and spoof alike, is resampled to 8 kHz (the SDK's resampler) and taken through a G.711 round trip
(``spoofsdk.audio.g711_encode`` / ``decode``; mu-law or A-law by a seeded coin per clip), so the channel
no longer tells the classes apart and the EER measures what is left. Labels, attacks and speakers are kept;
``channel`` becomes ``tel-mulaw`` / ``tel-alaw`` and ``sample_rate`` 8000. The audio is written as 16-bit
WAV under ``OUT/audio-<split>/`` (generated, never committed).

    python recipes/default-detector/telephone_sets.py runs/v2/eval-{dev,test}.tsv -o runs/v2-tel
"""

from __future__ import annotations

import argparse
import csv
import hashlib
from pathlib import Path

import numpy as np
import soundfile as sf

from spoofsdk.audio import decode, g711_encode, read_file, resample

RATE = 8000


def telephone(x: np.ndarray, sample_rate: int, law: str) -> np.ndarray:
    """``x`` (mono, or frames x channels: mixed down) at 8 kHz after a G.711 ``law`` round trip."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    y = resample(x, sample_rate, RATE) if sample_rate != RATE else np.asarray(x, dtype=np.float32)
    return decode(g711_encode(np.clip(y, -1.0, 1.0), law).tobytes(), law)


def convert(manifest: Path, out: Path) -> Path:
    with manifest.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        cols, rows = list(reader.fieldnames or []), list(reader)
    split = rows[0]["split"]
    audio = out / f"audio-{split}"
    audio.mkdir(parents=True, exist_ok=True)
    written = []
    for i, row in enumerate(rows):
        key = hashlib.sha256(row["path"].encode()).hexdigest()[:16]
        law = "mulaw" if int(key, 16) % 2 == 0 else "alaw"
        target = audio / f"{i:05d}-{key}.wav"
        if not target.exists():
            x, sr = read_file(row["path"])
            sf.write(target, telephone(x, sr, law), RATE, subtype="PCM_16")
        changed = {"path": str(target.resolve()), "sample_rate": str(RATE), "channel": f"tel-{law}"}
        written.append(row | changed)
    path = out / f"eval-{split}.tsv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows(written)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifests", nargs="+", type=Path, help="eval-SPLIT.tsv files of eval_sets.py")
    p.add_argument("-o", "--out", type=Path, required=True)
    args = p.parse_args()
    for m in args.manifests:
        print(f"wrote {convert(m, args.out)}")


if __name__ == "__main__":
    main()
