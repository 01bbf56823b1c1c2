"""The cue check of a spoofing corpus: do trivial properties of the files (rate, length, level, leading and
trailing silence, noise floor, telephony channel) tell the label? corpus-v1's README gives the same table.

For every split, bona fide clips are compared with all spoofs and with each spoof ``source`` group
(``neural_resynth``, ``neural_tts``, ...): per cue, the ROC AUC of the cue as a label score (0.5 = no
information; far from 0.5 either way = a shortcut a detector can learn). Silence is measured with the
10 ms frames (active at >= the loudest frame - 35 dB); the noise floor is the 10th percentile of the 20 ms
frame levels (every 10 ms) relative to the clip's RMS. corpus-v1's README does not define its floor column, so
its absolute floor values differ from these; the AUCs are what tell a shortcut.

    python -m spoof_train.synth.cues MANIFEST.tsv -o cue_check.tsv
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spoof_train.errors import DataError

__all__ = ["ClipCues", "clip_cues", "cue_table", "main", "write_cue_table"]

CUES = ("sr", "dur", "rms", "lead", "trail", "floor")
COLUMNS = (
    "split",
    "label",
    "n",
    "hours",
    "pct_8k",
    "dur_p10_p50_p90",
    "dur_mean",
    "rms_dbfs_mean_sd",
    "lead_ms_p10_p50_p90",
    "trail_ms_p50",
    "floor_db_p50",
    "pct_tel",
    "peak_limited",
    *(f"auc_{c}" for c in CUES),
)


@dataclass(frozen=True)
class ClipCues:
    sr: int
    dur: float  # seconds
    rms: float  # dBFS
    lead: float  # ms before the first active frame
    trail: float  # ms after the last active frame
    floor: float  # 10th percentile of the 20 ms frame levels, dB relative to the clip's RMS
    telephony: bool
    peak_limited: bool


def clip_cues(x: np.ndarray, sample_rate: int, channel: str = "clean") -> ClipCues:
    """The cues of one clip (mono float audio)."""
    x = np.asarray(x, dtype=np.float64)
    n, hop = int(0.02 * sample_rate), int(0.01 * sample_rate)
    if len(x) < n:
        db = np.array([10 * np.log10(np.mean(x**2) + 1e-20)])
    else:
        idx = np.arange(n)[None, :] + hop * np.arange(1 + (len(x) - n) // hop)[:, None]
        db = 10 * np.log10(np.mean(x[idx] ** 2, axis=1) + 1e-20)
    floor = float(np.percentile(db, 10))
    m = int(0.01 * sample_rate)  # leading / trailing silence: 10 ms frames below the peak - 35 dB
    frames = x[: max(1, len(x) // m) * m].reshape(-1, m) if len(x) >= m else x.reshape(1, -1)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    active = np.flatnonzero(level >= level.max() - 35.0)
    rms = 10 * np.log10(np.mean(x**2) + 1e-20)
    return ClipCues(
        sr=int(sample_rate),
        dur=len(x) / sample_rate,
        rms=float(rms),
        lead=10.0 * active[0],
        trail=10.0 * (len(level) - 1 - active[-1]),
        floor=floor - float(rms),
        telephony=channel not in ("", "clean", "-"),
        peak_limited=bool(np.max(np.abs(x)) >= 0.998),
    )


def _auc(neg: np.ndarray, pos: np.ndarray) -> float:
    """ROC AUC of ``pos`` over ``neg`` (Mann-Whitney with mid-ranks for ties)."""
    from scipy.stats import rankdata

    if len(neg) == 0 or len(pos) == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([neg, pos]))
    return float((ranks[len(neg) :].sum() - len(pos) * (len(pos) + 1) / 2) / (len(neg) * len(pos)))


def _row(split: str, label: str, cues: Sequence[ClipCues], bona: Sequence[ClipCues]) -> dict[str, str]:
    def arr(name: str, group: Sequence[ClipCues]) -> np.ndarray:
        return np.array([getattr(c, name) for c in group], dtype=np.float64)

    dur, rms, lead = arr("dur", cues), arr("rms", cues), arr("lead", cues)
    row = {
        "split": split,
        "label": label,
        "n": str(len(cues)),
        "hours": f"{dur.sum() / 3600:.3f}",
        "pct_8k": f"{100 * np.mean(arr('sr', cues) == 8000):.1f}",
        "dur_p10_p50_p90": "/".join(f"{v:.2f}" for v in np.percentile(dur, [10, 50, 90])),
        "dur_mean": f"{dur.mean():.2f}",
        "rms_dbfs_mean_sd": f"{rms.mean():.1f}/{rms.std():.1f}",
        "lead_ms_p10_p50_p90": "/".join(f"{v:.0f}" for v in np.percentile(lead, [10, 50, 90])),
        "trail_ms_p50": f"{np.median(arr('trail', cues)):.0f}",
        "floor_db_p50": f"{np.median(arr('floor', cues)):.1f}",
        "pct_tel": f"{100 * np.mean([c.telephony for c in cues]):.1f}",
        "peak_limited": str(sum(c.peak_limited for c in cues)),
    }
    for cue in CUES:
        row[f"auc_{cue}"] = "-" if label == "bonafide" else f"{_auc(arr(cue, bona), arr(cue, cues)):.3f}"
    return row


def cue_table(manifest: str | Path, *, splits: Sequence[str] | None = None) -> list[dict[str, str]]:
    """One row per split for bona fide, all spoofs, and each spoof ``source`` group."""
    import soundfile as sf

    from spoof_train.data.manifest import read_manifest

    rows = [r for r in read_manifest(manifest) if not splits or r.split in splits]
    if not rows:
        raise DataError(f"{manifest}: no rows{f' in splits {list(splits)}' if splits else ''}")
    cues: dict[str, ClipCues] = {}
    for r in rows:
        try:
            x, sr = sf.read(r.path, dtype="float64", always_2d=True)
        except Exception as exc:  # libsndfile errors
            raise DataError(f"cue check: cannot decode {r.path}: {exc}") from exc
        if x.shape[0] == 0:
            raise DataError(f"cue check: {r.path} is empty")
        cues[r.path] = clip_cues(x.mean(axis=1), int(sr), str(r.extra.get("channel", "clean")))
    table = []
    for split in sorted({r.split for r in rows}):
        here = [r for r in rows if r.split == split]
        bona = [cues[r.path] for r in here if r.label == "bonafide"]
        spoof_rows = [r for r in here if r.label == "spoof"]
        if not bona or not spoof_rows:
            continue
        table.append(_row(split, "bonafide", bona, bona))
        table.append(_row(split, "spoof", [cues[r.path] for r in spoof_rows], bona))
        for source in sorted({str(r.extra.get("source", "-")) for r in spoof_rows}):
            group = [cues[r.path] for r in spoof_rows if str(r.extra.get("source", "-")) == source]
            table.append(_row(split, f"spoof/{source}", group, bona))
    if not table:
        raise DataError(f"{manifest}: no split holds both bona fide and spoof clips")
    return table


def write_cue_table(table: Sequence[dict[str, str]], path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        f.write("\t".join(COLUMNS) + "\n")
        for row in table:
            f.write("\t".join(row[c] for c in COLUMNS) + "\n")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spoof_train.synth.cues", description=__doc__.splitlines()[0])
    p.add_argument("manifest")
    p.add_argument("-o", "--output", required=True, help="TSV to write")
    p.add_argument("--splits", nargs="+", default=None)
    args = p.parse_args(argv)
    try:
        table = cue_table(args.manifest, splits=args.splits)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_cue_table(table, args.output)
    worst = max(
        (abs(float(r[f"auc_{c}"]) - 0.5), r["split"], r["label"], c)
        for r in table
        for c in CUES
        if r[f"auc_{c}"] not in ("-", "nan")
    )
    print(
        f"wrote {args.output}; largest cue AUC distance from 0.5: {worst[0]:.3f} "
        f"({worst[1]} {worst[2]} {worst[3]})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
