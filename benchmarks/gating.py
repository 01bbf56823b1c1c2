"""Speech gating of the bundled detector: what it keeps the model from judging, what speech it loses, what it
costs.

1. Generated non-speech (tests/sdk/gating_cases.py: silence, low / white / pink noise, DTMF, hold music,
   comfort noise), 8 s each: windows flagged spoof (p >= the manifest threshold) with the gate and without.
2. corpus-v1 bona fide clips (when ../shared/data/corpus-v1 exists): share of windows marked no_speech
   (speech lost), and the same with 5 s of digital silence appended (windows flagged spoof, gated vs not).
3. Cost per window on one thread: the gate (one Silero call) against the detector's inference, in the same
   interleaved rounds; CPU time.

    .venv/bin/python benchmarks/gating.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "sdk"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gating_cases import non_speech  # noqa: E402
from synth import cpu_info  # noqa: E402

from spoofsdk import Detector  # noqa: E402


def flagged(det: Detector, x: np.ndarray, sr: int) -> tuple[int, int]:
    s = det.score(x, sr)
    return sum(1 for w in s.windows if w.scored and w.spoof_prob >= det.threshold), len(s.windows)


def main() -> int:
    gated = Detector(backend="cpu", num_threads=1)
    plain = Detector(backend="cpu", num_threads=1, speech_gate=False)
    print(f"CPU: {cpu_info()}")
    print(f"detector: window {gated.window_samples / 16000:g} s, hop {gated.hop_samples / 16000:g} s, "
          f"threshold {gated.threshold:.3f}, min_speech {gated.min_speech}")  # fmt: skip
    print(
        "\n| generated input (8 s) | windows | flagged spoof, gated | flagged spoof, ungated | max speech |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, x in non_speech(8.0).items():
        fg, n = flagged(gated, x, 16000)
        fp, _ = flagged(plain, x, 16000)
        share = max(w.speech or 0.0 for w in gated.score(x, 16000).windows)
        print(f"| {name} | {n} | {fg} | {fp} | {share:.3f} |")

    corpus = ROOT.parent / "shared" / "data" / "corpus-v1"
    if (corpus / "MANIFEST.tsv").is_file():
        import soundfile as sf

        from spoof_train.data.manifest import read_manifest

        rows = [r for r in read_manifest(corpus / "MANIFEST.tsv") if r.label == "bonafide"]
        lost = total = clips_undetermined = 0
        tail = {"gated": 0, "ungated": 0, "windows": 0}
        for r in rows:
            x, sr = sf.read(r.path, dtype="float32")
            s = gated.score(x, sr)
            total += len(s.windows)
            lost += len(s.windows) - s.speech_windows
            clips_undetermined += s.verdict == "undetermined"
            padded = np.concatenate([x, np.zeros(5 * sr, np.float32)])
            sg, sp = gated.score(padded, sr), plain.score(padded, sr)
            end = len(x) / sr
            for name, sc in (("gated", sg), ("ungated", sp)):
                tail[name] += sum(
                    1 for w in sc.windows if w.start_s >= end and w.scored and w.spoof_prob >= gated.threshold
                )
            tail["windows"] += sum(1 for w in sg.windows if w.start_s >= end)
        print(f"\ncorpus-v1 bona fide: {len(rows)} clips, {total} windows; no_speech {lost} "
              f"({100 * lost / total:.2f} %); clips undetermined {clips_undetermined} "
              f"({100 * clips_undetermined / len(rows):.2f} %)")  # fmt: skip
        print(f"same clips + 5 s of digital silence: {tail['windows']} windows inside the silence; "
              f"flagged spoof gated {tail['gated']}, ungated {tail['ungated']}")  # fmt: skip

    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(32000)).astype(np.float32)
    gate = gated._gate
    assert gate is not None
    g_ms, d_ms = [], []
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(20):
            gate.speech_share([x])
        g_ms.append((time.process_time() - t0) / 20 * 1000)
        t0 = time.process_time()
        for _ in range(20):
            gated.infer_logits([x])
        d_ms.append((time.process_time() - t0) / 20 * 1000)
    g, d = float(np.median(g_ms)), float(np.median(d_ms))
    print(f"\ncost per 2 s window, one thread, CPU time (median of 5 x 20): gate {g:.2f} ms, "
          f"detector {d:.2f} ms, gate / detector {g / d:.2f}; "
          f"RTF of gate + detector at a 1 s hop: {(g + d) / 1000:.4f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
