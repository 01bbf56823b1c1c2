"""The wideband studio supplement of corpus-v2 (issue 20, round 3): Allison Smith's studio-recorded Asterisk
prompts (Debian 12 asterisk-core-sounds-{en,es}-g722 1.6.1-1, CC BY-SA 3.0), bona fide, and vocoded copies
of a seeded subset of them, spoof; every row in the train split (speaker ``asterisk-allison`` is a train
speaker of corpus-v1). Driven by ``studio-supplement.sh``; three steps:

``decode ROOT -o OUT``: every prompt (``*.g722`` outside ``silence/``) decoded to 16 kHz, kept if it lasts
>= 1.0 s, conditioned as corpus-v1 and ``spoof-train synth`` condition both classes
(:func:`spoof_train.synth.classic.condition` with no G.711/GSM channel: trim, 12 s cap, level, noise floor),
then given a G.722 encode/decode round trip, written as PCM WAV under ``OUT/audio/train/debian_studio_g722``;
``OUT/bonafide.tsv`` lists them. Then ``OUT/subset-GEN.tsv``: disjoint seeded subsets of those clips, at most
``--minutes-GEN`` minutes each, the inputs of ``spoof-train synth --generator GEN``.

``roundtrip SYNTH_MANIFEST -o OUT``: every clip synth made (conditioned, ``--p-channel 0``) given the same
G.722 round trip, written as PCM WAV under ``OUT/audio/train/GEN`` (rows: ``OUT/spoof.tsv``). Both classes end
with the same codec step, so G.722 cannot tell them apart.

``merge -o OUT``: ``OUT/MANIFEST.tsv`` = bonafide.tsv + spoof.tsv (corpus-v2's columns, absolute paths)
and ``OUT/summary.json``.

PyAV (FFmpeg's G.722 codec; sox has none) is imported from ``--pylib`` (a private ``pip install --target``
folder): it is not a dependency of the project.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

SPEAKER = "asterisk-allison"
SOURCE = "debian_studio_g722"
LICENCE = "CC BY-SA 3.0"  # as corpus-v1 writes it for the Asterisk en/es prompts (debian copyright file)
RATE = 16000
MIN_SECONDS = 1.0
G722_DELAY = 22  # samples, FFmpeg's G.722 encoder + decoder
SEED = 20261207
#: corpus-v2's columns (recipes/corpus-v2/build.sh's MANIFEST.tsv), in its order.
COLUMNS = ("source", "sample_rate", "seconds", "channel", "licence", "source_clip", "generator")


def _av(pylib: str):  # PyAV is untyped and private
    sys.path.append(str(Path(pylib).resolve()))
    import av

    return av


def g722_decode(av, path: Path) -> np.ndarray:
    """A raw .g722 file (Asterisk's format: headerless G.722 at 64 kbit/s) as float64 samples at 16 kHz."""
    c = av.open(str(path), format="g722")
    try:
        x = np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])
    finally:
        c.close()
    return x.astype(np.float64) / 32768.0 if x.dtype == np.int16 else x.astype(np.float64)


def g722_roundtrip(av, x: np.ndarray) -> np.ndarray:
    """Encode 16 kHz float samples with FFmpeg's G.722 encoder (64 kbit/s) and decode them; same length."""
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
    enc = av.CodecContext.create("g722", "w")
    enc.sample_rate, enc.format, enc.layout = RATE, "s16", "mono"
    enc.open()
    dec = av.CodecContext.create("g722", "r")
    dec.sample_rate, dec.layout = RATE, "mono"
    dec.open()
    frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
    frame.sample_rate = RATE
    out = []
    for pkt in [*enc.encode(frame), *enc.encode(None)]:
        for f in dec.decode(pkt):
            out.append(f.to_ndarray().ravel())
    raw = np.concatenate(out)
    y = raw.astype(np.float64) / 32768.0 if raw.dtype == np.int16 else raw.astype(np.float64)
    y = y[G722_DELAY:]  # the QMF pair's delay: the output stays aligned with the input
    y = np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]
    return y


def _write_wav(path: Path, y: np.ndarray) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 0.999:
        y = y * (0.999 / peak)
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), y.astype(np.float32), RATE, subtype="PCM_16", format="WAV")
    tmp.replace(path)


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng([SEED, zlib.crc32(b"studio-supplement"), zlib.crc32(key.encode())])


def _tsv(path: Path, rows: list[dict[str, str]]) -> None:
    cols = ("path", "label", "attack", "speaker", "split", *COLUMNS)
    with path.open("w", encoding="utf-8") as f:
        f.write("\t".join(cols) + "\n")
        for r in rows:
            f.write("\t".join(str(r.get(c, "-")) for c in cols) + "\n")


def _read_tsv(path: Path) -> list[dict[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, ln.split("\t"), strict=True)) for ln in lines[1:] if ln.strip()]


def decode(root: Path, out: Path, pylib: str, minutes: dict[str, float]) -> None:
    from spoof_train.synth.classic import condition

    av = _av(pylib)
    sounds = root / "usr/share/asterisk/sounds"
    files = sorted(p for p in sounds.rglob("*.g722") if "silence" not in p.relative_to(sounds).parts)
    if not files:
        raise SystemExit(f"no .g722 prompts under {sounds}")
    rows, short, lost = [], 0, 0
    for p in files:
        x = g722_decode(av, p)
        if len(x) < MIN_SECONDS * RATE:
            short += 1
            continue
        rel = p.relative_to(sounds).with_suffix("")
        key = rel.as_posix()
        done = condition(x, RATE, _rng(key), p_channel=0.0)
        if done is None or len(done[0]) < MIN_SECONDS * RATE:
            lost += 1  # under 1 s once its leading / trailing silence is trimmed
            continue
        y = g722_roundtrip(av, np.asarray(done[0], dtype=np.float64))
        target = out / "audio/train" / SOURCE / ("__".join(rel.parts) + ".wav")
        _write_wav(target, y)
        rows.append(
            {
                "path": str(target.resolve()),
                "label": "bonafide",
                "attack": "-",
                "speaker": SPEAKER,
                "split": "train",
                "source": SOURCE,
                "sample_rate": str(RATE),
                "seconds": f"{len(y) / RATE:.3f}",
                "channel": "clean",
                "licence": LICENCE,
                "source_clip": str(p.relative_to(root)),
                "generator": "-",
            }
        )
    _tsv(out / "bonafide.tsv", rows)
    total = sum(float(r["seconds"]) for r in rows) / 60
    print(
        f"decode: {len(files)} prompts, {short} under {MIN_SECONDS} s, {lost} under it after the trim; "
        f"{len(rows)} clips, {total:.1f} min -> {out / 'bonafide.tsv'}"
    )
    # disjoint seeded subsets, one per generator, each up to its minutes of audio
    order = list(rows)
    random.Random(SEED).shuffle(order)
    for gen, budget in minutes.items():
        take, used = [], 0.0
        while order and used + float(order[0]["seconds"]) <= budget * 60:
            r = order.pop(0)
            take.append(r)
            used += float(r["seconds"])
        _tsv(out / f"subset-{gen}.tsv", sorted(take, key=lambda r: r["path"]))
        print(f"subset-{gen}: {len(take)} clips, {used / 60:.1f} min")


def roundtrip(synth_manifest: Path, out: Path, pylib: str) -> None:
    import soundfile as sf

    av = _av(pylib)
    rows = []
    for r in _read_tsv(synth_manifest):
        src = Path(r["path"])
        if not src.is_absolute():
            src = (synth_manifest.parent / src).resolve()
        x, sr = sf.read(str(src), dtype="float64")
        if sr != RATE:
            raise SystemExit(f"{src}: {sr} Hz, expected {RATE}")
        target = out / "audio/train" / r["attack"] / (src.stem + ".wav")
        if not target.is_file():
            _write_wav(target, g722_roundtrip(av, x))
        rows.append(dict(r, path=str(target.resolve()), channel="clean"))
    _tsv(out / "spoof.tsv", rows)
    print(f"roundtrip: {len(rows)} spoof clips -> {out / 'spoof.tsv'}")


def merge(out: Path) -> None:
    bona, spoof = _read_tsv(out / "bonafide.tsv"), _read_tsv(out / "spoof.tsv")
    rows = bona + spoof
    if {r["split"] for r in rows} != {"train"} or {r["speaker"] for r in rows} != {SPEAKER}:
        raise SystemExit(f"the supplement must be train rows of {SPEAKER} only")
    _tsv(out / "MANIFEST.tsv", rows)
    summary = {
        "rows": len(rows),
        "by_label_attack": {
            f"{lab}/{atk}": {
                "clips": n,
                "minutes": round(
                    sum(float(r["seconds"]) for r in rows if (r["label"], r["attack"]) == (lab, atk)) / 60, 2
                ),
            }
            for (lab, atk), n in sorted(Counter((r["label"], r["attack"]) for r in rows).items())
        },
        "licences": dict(Counter(r["licence"] for r in rows)),
        "split": "train",
        "speaker": SPEAKER,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("decode")
    d.add_argument("root", type=Path, help="folder the .deb files were extracted into (dpkg-deb -x)")
    d.add_argument("--minutes", nargs="*", default=["hifigan=15", "lpcnet=10"], help="GEN=MINUTES")
    r = sub.add_parser("roundtrip")
    r.add_argument("synth_manifest", type=Path)
    sub.add_parser("merge")
    for s in (d, r):
        s.add_argument("--pylib", required=True, help="folder with PyAV (pip install --target)")
    for s in (d, r, sub.choices["merge"]):
        s.add_argument("-o", "--out", type=Path, required=True)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.cmd == "decode":
        decode(a.root, a.out, a.pylib, {k: float(v) for k, v in (m.split("=") for m in a.minutes)})
    elif a.cmd == "roundtrip":
        roundtrip(a.synth_manifest, a.out, a.pylib)
    else:
        merge(a.out)


if __name__ == "__main__":
    main()
