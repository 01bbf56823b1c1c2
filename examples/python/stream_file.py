"""Live-style streaming with the default detector: a file is sent as a phone call would arrive.

The recording is resampled to 8 kHz, encoded as G.711 mu-law and pushed in 20 ms frames (160 bytes) into a
``StreamingSession``, as an RTP / AudioSocket / media-stream plug-in would. Each completed window is
printed the moment it is scored (window start/end, spoof probability, running verdict); ``flush()`` at
hang-up gives the call's score. Optionally paces the frames in real time (``--realtime``).

    .venv/bin/python examples/python/stream_file.py out/demo/audio/spoof-espeak-en-us-bank.wav
    .venv/bin/python examples/python/stream_file.py call.wav --model my-detector.onnx --realtime

The windows and the final score equal ``Detector().score(...)`` on the same mu-law audio: the session's
native front end makes them independent of how the bytes are chunked.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import soundfile as sf

from spoofsdk import Detector
from spoofsdk.audio import g711_encode, resample
from spoofsdk.errors import SpoofError

FRAME_MS = 20
LINE_RATE = 8000


def mulaw_encode(x: np.ndarray) -> bytes:
    """G.711 mu-law bytes of float audio in [-1, 1] (scaled by 32767; :func:`spoofsdk.audio.g711_encode`)."""
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
    return g711_encode(pcm, "mulaw").tobytes()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path", help="audio file (any rate soundfile reads)")
    p.add_argument("--model", default=None, help="detector file (default: the bundled default detector)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1)")
    p.add_argument("--realtime", action="store_true", help="sleep 20 ms between frames, like a live call")
    args = p.parse_args(argv)

    x, sr = sf.read(args.path, dtype="float32", always_2d=False)
    if x.ndim == 2:
        x = x.mean(axis=1)
    line = resample(np.ascontiguousarray(x), sr, LINE_RATE) if sr != LINE_RATE else x
    payload = mulaw_encode(line)
    frame_bytes = LINE_RATE * FRAME_MS // 1000  # 1 byte per mu-law sample

    det = Detector(args.model, backend="cpu", num_threads=args.threads)
    print(f"detector: {det.path.name}, window {det.window_samples / det.sample_rate:.1f} s, "
          f"hop {det.hop_samples / det.sample_rate:.1f} s, threshold {det.threshold:.3f}")  # fmt: skip
    print(f"call: {args.path} as {len(payload) / LINE_RATE:.2f} s of 8 kHz mu-law in {FRAME_MS} ms frames")
    try:
        with det.stream(sample_rate=LINE_RATE, encoding="mulaw") as session:
            for start in range(0, len(payload), frame_bytes):
                t0 = time.perf_counter()
                for w in session.push(payload[start : start + frame_bytes]):
                    verdict = "SPOOF" if w.spoof_prob >= det.threshold else "bona fide"
                    print(
                        f"  window {w.start_s:6.2f}-{w.end_s:6.2f} s  "
                        f"spoof prob {w.spoof_prob:.3f}  {verdict}"
                    )
                if args.realtime:
                    time.sleep(max(0.0, FRAME_MS / 1000 - (time.perf_counter() - t0)))
            n_live = len(session.windows)
            final = session.flush()
            for w in final.windows[n_live:]:  # the tail window scored at hang-up
                print(f"  window {w.start_s:6.2f}-{w.end_s:6.2f} s  spoof prob {w.spoof_prob:.3f}  (tail)")
    except SpoofError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"hang-up: spoof probability {final.spoof_prob:.3f} over {len(final.windows)} windows -> "
          f"{'SPOOF' if final.is_spoof else 'bona fide'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
