"""Cost of the spoof generators of ``spoof-train synth``: CPU seconds per second of audio made, one thread.

Re-syntheses run on the same bona fide clips (corpus-v1 when present, else a synthetic voiced signal); TTS
engines read the same sentences. Rounds are interleaved (every generator once per round) so that load on
the shared machine hits all of them alike; the table gives the median over rounds of
CPU seconds / output seconds (this process and its child processes; every thread counts: Kokoro runs one
ORT thread, Piper ORT's default pool) and the wall time of each TTS engine's first call (model load
included). The CPU model and flags are printed with the table.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/synth.py --rounds 3 --clips 8
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

RESYNTH = ("lpcnet", "lpcnet-codec", "hifigan", "griffinlim", "world", "lpc", "codec2")
TTS = (("piper", "en"), ("kokoro", "en"), ("kokoro", "ja"), ("espeak", "en"))
SENTENCES = {
    "en": [
        "Thank you for calling, how can I help you today?",
        "Please confirm the last four digits of your card.",
        "I would like to dispute a charge on my savings account.",
    ],
    "ja": ["お電話ありがとうございます。", "カードを紛失したので、すぐに利用を停止してください。"],
}


def cpu() -> float:
    """CPU seconds of this process and its finished children (espeak-ng runs as a child process)."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


def cpu_info() -> str:
    model, flags = platform.processor() or "?", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("?", "", "x86_64"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                have = set(line.split(":", 1)[1].split())
                flags = " ".join(
                    f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni") if f in have
                )
    except OSError:
        pass
    return f"{model}; {os.cpu_count()} logical CPUs; flags: {flags or '?'}"


def clips(n: int) -> list[tuple[np.ndarray, int]]:
    import soundfile as sf

    corpus = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "corpus-v1"
    out: list[tuple[np.ndarray, int]] = []
    if (corpus / "MANIFEST.tsv").is_file():
        from spoof_train.data.manifest import read_manifest

        rows = [
            r for r in read_manifest(corpus / "MANIFEST.tsv") if r.label == "bonafide" and r.split == "dev"
        ]
        rows = [r for r in rows if 1.5 <= float(r.extra.get("seconds", 0)) <= 6.0][:n]
        for r in rows:
            x, sr = sf.read(r.path, dtype="float64")
            out.append((x, int(sr)))
    if not out:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "train"))
        from test_synth import speech_like

        out = [(speech_like(3.0, seed=k), 16000) for k in range(n)]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clips", type=int, default=8)
    args = p.parse_args()
    from spoof_train.synth import GeneratorUnavailableError, make_generator

    inputs = clips(args.clips)
    gens = {}
    load: dict[str, float] = {}
    for name in (*RESYNTH, *{t for t, _ in TTS}):
        try:
            g = make_generator(name)
            g.check()
            gens[name] = g
        except GeneratorUnavailableError as exc:
            print(f"skip {name}: {exc}")
    for name, lang in TTS:  # first call: loads the model (Kokoro joins its four part wheels once per machine)
        if name in gens and name not in load:
            w0 = time.perf_counter()
            gens[name].speak(SENTENCES[lang][0], lang, np.random.default_rng(0))  # type: ignore[attr-defined]
            load[name] = time.perf_counter() - w0
    ratios: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for name in RESYNTH:
            if name not in gens:
                continue
            rng = np.random.default_rng(r)
            t0, audio = cpu(), 0.0
            for x, sr in inputs:
                y = gens[name].resynthesize(x, sr, rng)  # type: ignore[attr-defined]
                audio += len(y) / sr
            ratios.setdefault(name, []).append((cpu() - t0) / audio)
        for name, lang in TTS:
            if name not in gens:
                continue
            rng = np.random.default_rng(r)
            t0, audio = cpu(), 0.0
            for text in SENTENCES[lang]:
                y, sr, _ = gens[name].speak(text, lang, rng)  # type: ignore[attr-defined]
                audio += len(y) / sr
            ratios.setdefault(f"{name} ({lang})", []).append((cpu() - t0) / audio)
    print(f"CPU: {cpu_info()}")
    print(f"inputs: {len(inputs)} clips, {sum(len(x) / sr for x, sr in inputs):.1f} s; rounds: {args.rounds}")
    print("| generator | CPU s per s of audio (median) | min | max | first call incl. load, s |")
    print("|---|---:|---:|---:|---:|")
    for key, vals in ratios.items():
        engine = key.split(" ")[0]
        first = f"{load[engine]:.1f}" if engine in load else "-"
        print(f"| {key} | {statistics.median(vals):.3f} | {min(vals):.3f} | {max(vals):.3f} | {first} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
