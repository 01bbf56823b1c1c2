"""Throughput of the native front end against soxr and scipy in the same run.

Measures x real time per core (single thread, CPU time of this process, so other load on
the machine does not inflate the figures) for:

* 8 kHz G.711 mu-law -> 16 kHz, 4 s windows every 2 s: our streaming front end
  (decode + resample + frame, 20 ms packets and 1 s chunks), our offline ``resample``,
  and the same resampling by python-soxr (VHQ, HQ; one-shot and streaming in 20 ms
  chunks) and ``scipy.signal.resample_poly``;
* 44.1 kHz and 48 kHz float32 -> 16 kHz: the same comparisons.

Each row also gives the SNR against soxr VHQ on band-limited noise (passband 0.45 x the
lower rate), so speed is compared at a stated quality.

Usage: ``python benchmarks/frontend.py [--seconds 60] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core for every library (idle BLAS threads spin)

import numpy as np  # noqa: E402
import soxr  # noqa: E402
from scipy.signal import resample_poly  # noqa: E402

from spoofsdk import _native  # noqa: E402
from spoofsdk.audio import decode, resample  # noqa: E402

WINDOW, HOP = 64000, 32000  # 4 s / 2 s at 16 kHz


def cpu_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median CPU time of fn over `repeats` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def frame(y: np.ndarray) -> list[np.ndarray]:
    """Windows of a finished signal, copied (as our front end hands out owned copies)."""
    return [y[s : s + WINDOW].copy() for s in range(0, len(y) - WINDOW + 1, HOP)]


def snr_db(ours: np.ndarray, ref: np.ndarray, edge: int) -> float:
    n = min(len(ours), len(ref))
    a, b = ours[edge : n - edge].astype(np.float64), ref[edge : n - edge].astype(np.float64)
    return float(10 * np.log10(np.sum(b**2) / np.sum((a - b) ** 2)))


def bandlimited(n: int, sr: int, f_max: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[np.fft.rfftfreq(n, 1 / sr) > f_max] = 0
    x = np.fft.irfft(spec, n)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def soxr_stream(x: np.ndarray, in_sr: int, quality: str, chunk: int) -> np.ndarray:
    rs = soxr.ResampleStream(in_sr, 16000, 1, dtype="float32", quality=quality)
    parts = [rs.resample_chunk(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    parts.append(rs.resample_chunk(np.zeros(0, np.float32), last=True))
    return np.concatenate(parts)


def ours_stream_bytes(data: bytes, in_sr: int, encoding: str, chunk_bytes: int) -> list[object]:
    fe = _native.Frontend(in_sr, window_samples=WINDOW, hop_samples=HOP, encoding=encoding)
    out: list[object] = []
    for i in range(0, len(data), chunk_bytes):
        fe.push(data[i : i + chunk_bytes])
        out += fe.windows()
    fe.flush()
    return out + fe.windows()


def ours_stream_float(x: np.ndarray, in_sr: int, chunk: int) -> list[object]:
    fe = _native.Frontend(in_sr, window_samples=WINDOW, hop_samples=HOP)
    out: list[object] = []
    for i in range(0, len(x), chunk):
        fe.push_float(x[i : i + chunk])
        out += fe.windows()
    fe.flush()
    return out + fe.windows()


def run(seconds: int, repeats: int) -> list[tuple[str, str, float, str]]:
    rows: list[tuple[str, str, float, str]] = []

    def add(case: str, name: str, fn: Callable[[], object], quality: str) -> None:
        rt = seconds / cpu_seconds(fn, repeats)
        rows.append((case, name, rt, quality))
        print(f"  {name:58s} {rt:9.0f} x RT   {quality}", flush=True)

    # --- 8 kHz mu-law -> 16 kHz windows -------------------------------------------------
    case = "8 kHz mu-law -> 16 kHz, 4 s windows / 2 s hop"
    print(case)
    rng = np.random.default_rng(1)
    mu = rng.integers(0, 256, 8000 * seconds, dtype=np.uint8).tobytes()
    x8 = decode(mu, "mulaw")
    probe = bandlimited(8000 * 20, 8000, 3600)
    ref = soxr.resample(probe, 8000, 16000, quality="VHQ")
    q_ours = f"{snr_db(resample(probe, 8000, 16000), ref, 800):.0f} dB"
    q_hq = f"{snr_db(soxr.resample(probe, 8000, 16000, quality='HQ'), ref, 800):.0f} dB"
    q_poly = f"{snr_db(resample_poly(probe, 2, 1).astype(np.float32), ref, 800):.0f} dB"
    add(
        case,
        "spoofsdk front end, 20 ms packets (decode+resample+frame)",
        lambda: ours_stream_bytes(mu, 8000, "mulaw", 160),
        q_ours,
    )
    add(
        case,
        "spoofsdk front end, 1 s chunks (decode+resample+frame)",
        lambda: ours_stream_bytes(mu, 8000, "mulaw", 8000),
        q_ours,
    )
    add(
        case,
        "spoofsdk decode + offline resample + numpy framing",
        lambda: frame(resample(decode(mu, "mulaw"), 8000, 16000)),
        q_ours,
    )
    add(case, "spoofsdk offline resample (resample only)", lambda: resample(x8, 8000, 16000), q_ours)
    add(
        case,
        "soxr VHQ one-shot (resample only)",
        lambda: soxr.resample(x8, 8000, 16000, quality="VHQ"),
        "reference",
    )
    add(case, "soxr HQ one-shot (resample only)", lambda: soxr.resample(x8, 8000, 16000, quality="HQ"), q_hq)
    add(
        case,
        "soxr VHQ stream, 20 ms chunks (resample only)",
        lambda: soxr_stream(x8, 8000, "VHQ", 160),
        "reference",
    )
    add(case, "soxr HQ stream, 20 ms chunks (resample only)", lambda: soxr_stream(x8, 8000, "HQ", 160), q_hq)
    add(case, "scipy resample_poly(2, 1) one-shot (resample only)", lambda: resample_poly(x8, 2, 1), q_poly)

    # --- 44.1 / 48 kHz float32 -> 16 kHz ------------------------------------------------
    for in_sr, up, down in ((44100, 160, 441), (48000, 1, 3)):
        case = f"{in_sr / 1000:g} kHz float32 -> 16 kHz"
        print(case)
        x = (rng.standard_normal(in_sr * seconds) * 0.1).astype(np.float32)
        probe = bandlimited(in_sr * 20, in_sr, 7200)
        ref = soxr.resample(probe, in_sr, 16000, quality="VHQ")
        q_ours = f"{snr_db(resample(probe, in_sr, 16000), ref, 800):.0f} dB"
        q_hq = f"{snr_db(soxr.resample(probe, in_sr, 16000, quality='HQ'), ref, 800):.0f} dB"
        q_poly = f"{snr_db(resample_poly(probe, up, down).astype(np.float32), ref, 800):.0f} dB"
        add(
            case,
            "spoofsdk front end, 1 s chunks (resample+frame)",
            lambda x=x, s=in_sr: ours_stream_float(x, s, s),
            q_ours,
        )
        add(case, "spoofsdk offline resample", lambda x=x, s=in_sr: resample(x, s, 16000), q_ours)
        add(
            case,
            "soxr VHQ one-shot",
            lambda x=x, s=in_sr: soxr.resample(x, s, 16000, quality="VHQ"),
            "reference",
        )
        add(case, "soxr HQ one-shot", lambda x=x, s=in_sr: soxr.resample(x, s, 16000, quality="HQ"), q_hq)
        add(
            case,
            f"scipy resample_poly({up}, {down})",
            lambda x=x, u=up, d=down: resample_poly(x, u, d),
            q_poly,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=60, help="audio length per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row (median)")
    args = parser.parse_args()
    print(
        f"spoofsdk {_native.__version__}, soxr {soxr.__version__}, numpy {np.__version__}; "
        f"{args.seconds} s of audio, median of {args.repeats} runs, CPU time of one thread\n"
    )
    rows = run(args.seconds, args.repeats)
    print("\n| case | implementation | x real time per core | SNR vs soxr VHQ |")
    print("|---|---|---:|---:|")
    for case, name, rt, quality in rows:
        print(f"| {case} | {name} | {rt:,.0f} | {quality} |")


if __name__ == "__main__":
    main()
