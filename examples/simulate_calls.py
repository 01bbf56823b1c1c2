"""Load simulator: play N concurrent synthetic calls into the AudioSocket or media-stream server.

Traffic stays on loopback (127.0.0.0/8 or ::1), is bounded in call count and wall time, and the audio
is made at run time (speech-like tones, noise, or espeak-ng speech): nothing is read from disk.

In-process (default) the server runs in this process on an ephemeral loopback port with the given
model, so every event is seen at once and latencies are exact; note that the load generator then
shares the CPU (and the event loop) with the server, so figures are conservative::

    python -m examples.simulate_calls --server audiosocket --model tiny.onnx --calls 40 --seconds 10

Against a server you started yourself, give its port and its ``--out`` file (verdicts are read back
from it, so verdict latency includes up to ~20 ms of polling)::

    python -m examples.simulate_calls --server media_stream --connect 127.0.0.1:8765 --results calls.jsonl

The report (JSON on stdout) gives per-call verdict latency (hangup / stop sent -> verdict), per-window
latency as the server sees it (arrival of the window's last frame -> score), for real-time calls the
window lag (score time - time the window's last sample was sent: what a live consumer experiences,
including any backlog in socket buffers), aggregate throughput in seconds of audio per second of wall
time, CPU seconds used by this process, the scheduler's mean batch and the audio dropped or shed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import ipaddress
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .asterisk_audiosocket.protocol import AUDIO_KINDS, KIND_HANGUP, KIND_UUID, encode_frame
from .callcentre.g711 import mulaw_encode

__all__ = [
    "CallResult",
    "audiosocket_call",
    "media_stream_call",
    "percentiles",
    "simulate",
    "synth_audio",
]

logger = logging.getLogger("spoofsdk.examples")

SAMPLE_RATE = 8000
PHRASES = (
    "Hello, I am calling about my account, could you please check the last payment for me.",
    "Yes, this is me speaking. Please transfer twenty thousand to the new beneficiary today.",
    "I lost my card yesterday evening and I would like to order a replacement as soon as possible.",
    "My date of birth is the fourth of July and my postcode starts with the letters S W.",
)
MAX_CALLS = 2000
MAX_SECONDS = 600.0


# ---------------------------------------------------------------------------------------------- audio
@functools.lru_cache(maxsize=len(PHRASES))
def _espeak(phrase: str, voice: str) -> npt.NDArray[np.int16]:
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        raise RuntimeError("--audio speech needs espeak-ng and sox on PATH (apt-get install espeak-ng sox)")
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", "165", "--stdout", phrase],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    raw = subprocess.run(
        [
            "sox",
            "-t",
            "wav",
            "-",
            "-t",
            "raw",
            "-r",
            str(SAMPLE_RATE),
            "-e",
            "signed",
            "-b",
            "16",
            "-c",
            "1",
            "-",
        ],
        input=wav,
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    return np.frombuffer(raw, dtype="<i2").copy()


def synth_audio(kind: str, seconds: float, seed: int) -> npt.NDArray[np.int16]:
    """``seconds`` of 8 kHz int16 call audio: ``tones`` (speech-like harmonics with syllable envelope),
    ``noise`` (band-limited noise bursts) or ``speech`` (espeak-ng phrases, varying voice and pause)."""
    n = round(seconds * SAMPLE_RATE)
    rng = np.random.default_rng(seed)
    if kind == "speech":
        voices = ("en", "en-us", "en+f3", "en+m3")
        parts: list[npt.NDArray[np.int16]] = []
        total = 0
        i = seed
        while total < n:
            phrase = _espeak(PHRASES[i % len(PHRASES)], voices[i % len(voices)])
            pause = np.zeros(int(rng.uniform(0.2, 0.8) * SAMPLE_RATE), dtype=np.int16)
            parts += [phrase, pause]
            total += phrase.size + pause.size
            i += 1
        return np.concatenate(parts)[:n]
    t = np.arange(n) / SAMPLE_RATE
    env = np.clip(np.sin(2 * np.pi * rng.uniform(2.5, 4.5) * t + rng.uniform(0, 6)), 0, None) ** 0.7
    x: npt.NDArray[np.float64]
    if kind == "tones":
        f0 = rng.uniform(95, 210) * (1 + 0.12 * np.sin(2 * np.pi * rng.uniform(0.2, 0.9) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        harmonics = np.zeros(n)
        for k in range(1, 12):
            harmonics = harmonics + np.sin(k * phase) / k
        x = env * harmonics + 0.01 * rng.standard_normal(n)
    elif kind == "noise":
        w = rng.standard_normal(n + 8)
        x = env * np.convolve(w, np.ones(8) / 8, mode="valid")[:n]
    else:
        raise ValueError(f"audio: expected 'tones', 'noise' or 'speech', given {kind!r}")
    peak = float(np.abs(x).max()) or 1.0
    return (0.4 * 32767 * x / peak).astype(np.int16)


# ---------------------------------------------------------------------------------------------- clients
@dataclass
class CallResult:
    call_id: str
    seconds: float
    started: float = 0.0
    started_wall: float = 0.0  # time.time() at the start, to compare with the events' ``ts``
    ended: float = 0.0  # monotonic time the hangup / stop was sent
    error: str | None = None
    verdict: dict[str, Any] | None = None
    verdict_at: float | None = None
    windows: list[float] = field(default_factory=list)  # per-window latency_ms from the server
    realtime: bool = False
    lags: list[float] = field(default_factory=list)  # real-time calls: score time - time the audio was sent
    window_events: int = 0


async def _pace(t0: float, i: int, frame_s: float, realtime: bool) -> None:
    if realtime:
        delay = t0 + (i + 1) * frame_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    elif i % 25 == 24:
        await asyncio.sleep(0)


async def audiosocket_call(
    host: str,
    port: int,
    call_id: str,
    pcm: npt.NDArray[np.int16],
    *,
    frame_ms: int = 20,
    realtime: bool = True,
    hangup: bool = True,
    result: CallResult | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> CallResult:
    """Act as Asterisk: UUID, 16-bit audio frames of ``frame_ms`` at ``sample_rate`` (its slin kind,
    0x10 for 8 kHz), then the hangup message, or (``hangup=False``) just close, as app_audiosocket does."""
    kind = AUDIO_KINDS.get(sample_rate)
    if kind is None:
        raise ValueError(
            f"sample_rate: expected one of the AudioSocket rates {sorted(AUDIO_KINDS)}, given {sample_rate}"
        )
    res = result or CallResult(call_id, pcm.size / sample_rate)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        res.started, res.started_wall = time.monotonic(), time.time()
        writer.write(encode_frame(KIND_UUID, uuid.UUID(call_id).bytes))
        step = sample_rate * frame_ms // 1000
        data = pcm.astype("<i2").tobytes()
        for i, k in enumerate(range(0, pcm.size, step)):
            writer.write(encode_frame(kind, data[2 * k : 2 * (k + step)]))
            await writer.drain()
            await _pace(res.started, i, frame_ms / 1000, realtime)
        if hangup:
            writer.write(encode_frame(KIND_HANGUP))
            await writer.drain()
        res.ended = time.monotonic()
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            await asyncio.wait_for(reader.read(), 30.0)  # the server closes after the verdict
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    return res


def twilio_messages(
    call_sid: str, stream_sid: str, pcm: npt.NDArray[np.int16], frame_ms: int = 20
) -> list[str]:
    """The JSON messages Twilio sends for one inbound-track stream of ``pcm`` (mu-law, 8 kHz)."""
    mu = mulaw_encode(pcm)
    step = SAMPLE_RATE * frame_ms // 1000
    out = [
        json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
        json.dumps(
            {
                "event": "start",
                "sequenceNumber": "1",
                "start": {
                    "accountSid": "AC" + "0" * 32,
                    "streamSid": stream_sid,
                    "callSid": call_sid,
                    "tracks": ["inbound"],
                    "customParameters": {"simulated": "true"},
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": SAMPLE_RATE, "channels": 1},
                },
                "streamSid": stream_sid,
            }
        ),
    ]
    seq = 2
    for chunk, k in enumerate(range(0, len(mu), step), start=1):
        media = {
            "track": "inbound",
            "chunk": str(chunk),
            "timestamp": str(k * 1000 // SAMPLE_RATE),
            "payload": base64.b64encode(mu[k : k + step]).decode("ascii"),
        }
        out.append(
            json.dumps(
                {"event": "media", "sequenceNumber": str(seq), "media": media, "streamSid": stream_sid}
            )
        )
        seq += 1
    out.append(
        json.dumps(
            {
                "event": "stop",
                "sequenceNumber": str(seq),
                "streamSid": stream_sid,
                "stop": {"accountSid": "AC" + "0" * 32, "callSid": call_sid},
            }
        )
    )
    return out


async def media_stream_call(
    uri: str,
    call_sid: str,
    pcm: npt.NDArray[np.int16],
    *,
    frame_ms: int = 20,
    realtime: bool = True,
    result: CallResult | None = None,
    ssl_context: Any = None,
) -> CallResult:
    """Act as Twilio: connected, start, a media message per ``frame_ms``, stop."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    res = result or CallResult(call_sid, pcm.size / SAMPLE_RATE)
    messages = twilio_messages(call_sid, "MZ" + uuid.uuid4().hex, pcm, frame_ms)
    async with connect(uri, compression=None, max_size=2**16, ssl=ssl_context) as ws:
        res.started, res.started_wall = time.monotonic(), time.time()
        await ws.send(messages[0])
        await ws.send(messages[1])
        for i, msg in enumerate(messages[2:-1]):
            await ws.send(msg)
            await _pace(res.started, i, frame_ms / 1000, realtime)
        await ws.send(messages[-1])
        res.ended = time.monotonic()
        with contextlib.suppress(asyncio.TimeoutError, ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 30.0)  # the server closes after the verdict
    return res


# ---------------------------------------------------------------------------------------------- run
def percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=np.float64)
    return {
        "n": int(a.size),
        "mean": round(float(a.mean()), 3),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "max": round(float(a.max()), 3),
    }


def check_loopback(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"host: expected a loopback address (127.0.0.0/8, ::1, localhost), given {host!r}")
    return host


class _Collector:
    """Routes server events to the simulated calls (by call id)."""

    def __init__(self) -> None:
        self.results: dict[str, CallResult] = {}
        self.done: dict[str, asyncio.Event] = {}
        self.errors: list[dict[str, Any]] = []

    def add(self, res: CallResult) -> None:
        self.results[res.call_id] = res
        self.done[res.call_id] = asyncio.Event()

    def __call__(self, event: dict[str, Any]) -> None:
        res = self.results.get(str(event.get("call_id")))
        kind = event.get("event")
        if kind == "call_error":
            self.errors.append(event)
        if res is None:
            return
        if kind == "call_rejected":
            res.error = f"rejected: {event.get('message')}"
            self.done[res.call_id].set()
        if kind == "window":
            res.window_events += 1
        if kind == "window" and event.get("latency_ms") is not None:
            res.windows.append(float(event["latency_ms"]))
            if res.realtime and res.started:
                # the score's time (the event's ts, same clock: loopback only) minus the time the
                # window's last sample was sent (real-time pacing: start + end_s)
                ts = event.get("ts")
                if isinstance(ts, (int, float)) and res.started_wall:
                    lag = ts - res.started_wall - float(event["end_s"])
                else:
                    lag = time.monotonic() - res.started - float(event["end_s"])
                res.lags.append(1000.0 * lag)
        elif kind == "verdict":
            res.verdict = event
            res.verdict_at = time.monotonic()
            self.done[res.call_id].set()


async def _tail(path: Path, sink: Callable[[dict[str, Any]], None], stop: asyncio.Event) -> None:
    with open(path, encoding="utf-8") as fh:
        fh.seek(0, os.SEEK_END)
        buf = ""
        while not stop.is_set():
            chunk = fh.read()
            if chunk:
                buf += chunk
                *lines, buf = buf.split("\n")
                for line in lines:
                    with contextlib.suppress(json.JSONDecodeError):
                        sink(json.loads(line))
            else:
                await asyncio.sleep(0.02)


async def simulate(
    *,
    server: str,
    calls: int,
    concurrency: int,
    seconds: float,
    realtime: bool = True,
    audio: str = "tones",
    model: str | None = None,
    connect: tuple[str, int] | None = None,
    results_file: Path | None = None,
    max_wall_s: float = 300.0,
    ramp_s: float = 1.0,
    engine_options: dict[str, Any] | None = None,
    raw: bool = False,
) -> dict[str, Any]:
    """Run the simulation and return the report (see the module docstring); ``raw`` adds every
    window lag and per-call counts (to pool the reports of several client processes)."""
    if server not in ("audiosocket", "media_stream"):
        raise ValueError(f"server: expected 'audiosocket' or 'media_stream', given {server!r}")
    if not (1 <= calls <= MAX_CALLS and 1 <= concurrency <= MAX_CALLS and 0 < seconds <= MAX_SECONDS):
        raise ValueError(
            f"expected 1..{MAX_CALLS} calls and concurrency and 0..{MAX_SECONDS} s per call, given "
            f"calls={calls}, concurrency={concurrency}, seconds={seconds}"
        )
    collector = _Collector()
    engine: Any = None
    srv: Any = None
    stop_tail = asyncio.Event()
    tail_task = None
    if connect is None:
        from spoofsdk import Detector

        from .callcentre.engine import EngineConfig, ScoringEngine

        opts = dict(engine_options or {})
        detector = Detector(model, backend=opts.pop("backend", "cpu"), num_threads=opts.pop("threads", 1))
        config = EngineConfig(max_calls=max(concurrency, 1) + 8, **opts.pop("config", {}))
        engine = ScoringEngine(detector, config=config, on_event=collector, scheduler_options=opts)
        if server == "audiosocket":
            from .asterisk_audiosocket.server import AudioSocketServer

            srv = AudioSocketServer(engine, port=0)
        else:
            from .media_stream_ws.server import MediaStreamServer  # needs websockets

            srv = MediaStreamServer(engine, port=0)
        await srv.start()
        host, port = "127.0.0.1", srv.port
    else:
        host, port = check_loopback(connect[0]), connect[1]
        if results_file is None:
            raise ValueError("--connect needs --results: the server's --out JSON-lines file")
        tail_task = asyncio.create_task(_tail(results_file, collector, stop_tail))

    pcm_cache = {key: synth_audio(audio, seconds, seed=key) for key in range(min(calls, 16))}
    sem = asyncio.Semaphore(concurrency)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()

    async def one(i: int) -> None:
        await asyncio.sleep(ramp_s * (i % concurrency) / concurrency)
        async with sem:
            pcm = pcm_cache[i % len(pcm_cache)]
            call_id = str(uuid.uuid4()) if server == "audiosocket" else "CA" + uuid.uuid4().hex
            res = CallResult(call_id, pcm.size / SAMPLE_RATE, realtime=realtime)
            collector.add(res)
            try:
                if server == "audiosocket":
                    await audiosocket_call(host, port, call_id, pcm, realtime=realtime, result=res)
                else:
                    await media_stream_call(
                        f"ws://{host}:{port}/", call_id, pcm, realtime=realtime, result=res
                    )
                await asyncio.wait_for(collector.done[call_id].wait(), 30.0)
            except (OSError, asyncio.TimeoutError, RuntimeError) as exc:
                res.error = res.error or f"{type(exc).__name__}: {exc}"

    tasks = [asyncio.create_task(one(i)) for i in range(calls)]
    try:
        _, pending = await asyncio.wait(tasks, timeout=max_wall_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10.0)
    finally:
        wall = time.monotonic() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        stop_tail.set()
        if tail_task is not None:
            await tail_task
        sched = None
        if srv is not None and engine is not None:
            await srv.close()
            sched = engine.scheduler.stats()
            await engine.shutdown()
            engine.detector.close()
    rs = list(collector.results.values())
    done = [r for r in rs if r.verdict is not None]
    audio_s = sum(float(r.verdict.get("duration_s") or 0.0) for r in done if r.verdict)
    report: dict[str, Any] = {
        "server": server,
        "mode": "in-process" if connect is None else f"external {host}:{port}",
        "audio": audio,
        "realtime": realtime,
        "calls": calls,
        "concurrency": concurrency,
        "seconds_per_call": seconds,
        "completed": len(done),
        "rejected": sum(1 for r in rs if r.error and r.error.startswith("rejected")),
        "failed": [r.error for r in rs if r.error and not r.error.startswith("rejected")][:10],
        "call_errors": collector.errors[:10],
        "wall_s": round(wall, 3),
        "audio_s": round(audio_s, 3),
        "throughput_x_realtime": round(audio_s / wall, 2) if wall > 0 else None,
        "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 3),
        "max_rss_mb": round(cpu1.ru_maxrss / 1024, 1),  # peak of the whole process (Linux: KiB)
        "verdict_latency_ms": percentiles(
            [1000.0 * (r.verdict_at - r.ended) for r in done if r.verdict_at is not None and r.ended]
        ),
        "window_latency_ms": percentiles([x for r in rs for x in r.windows]),
        "window_lag_ms": percentiles([x for r in rs for x in r.lags]),
        "window_events": sum(r.window_events for r in rs),
        "verdict_windows": sum(int(r.verdict.get("n_windows") or 0) for r in done if r.verdict),
        "labels": {
            lab: sum(1 for r in done if r.verdict and r.verdict.get("label") == lab)
            for lab in ("spoof", "bonafide", "undetermined")
        },
        "dropped_s": round(sum(float(r.verdict.get("dropped_s") or 0) for r in done if r.verdict), 3),
        "pushes_shed": sum(int(r.verdict.get("pushes_shed") or 0) for r in done if r.verdict),
    }
    if raw:
        report["raw"] = {
            "window_lags_ms": [round(x, 3) for r in rs for x in r.lags],
            "verdict_latency_ms": [
                round(1000.0 * (r.verdict_at - r.ended), 3)
                for r in done
                if r.verdict_at is not None and r.ended
            ],
        }
    if sched is not None:
        report["scheduler"] = {
            "batches": sched.batches,
            "windows": sched.windows,
            "mean_batch": round(sched.mean_batch, 2),
            "largest_batch": sched.largest_batch,
            "max_queued": sched.max_queued,
            "rejected": sched.rejected,
        }
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m examples.simulate_calls", description=__doc__.split("\n")[0])
    p.add_argument("--server", choices=("audiosocket", "media_stream"), default="audiosocket")
    p.add_argument("--model", default=None, help="detector for the in-process server (default: bundled)")
    p.add_argument("--connect", default=None, help="HOST:PORT of a running server on loopback")
    p.add_argument("--results", type=Path, default=None, help="that server's --out JSON-lines file")
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=None, help="calls at once (default: --calls)")
    p.add_argument("--seconds", type=float, default=10.0, help="audio per call")
    p.add_argument("--fast", action="store_true", help="send as fast as possible instead of in real time")
    p.add_argument("--audio", choices=("tones", "noise", "speech"), default="tones")
    p.add_argument(
        "--threads", type=int, default=1, help="ONNX Runtime intra-op threads of the in-process detector"
    )
    p.add_argument("--max-batch", type=int, default=None)
    p.add_argument("--max-wait-ms", type=float, default=2.0)
    p.add_argument("--push-interval-ms", type=float, default=0.0, help="see EngineConfig.push_interval_ms")
    p.add_argument("--max-lag-ms", type=float, default=0.0, help="see EngineConfig.max_lag_ms")
    p.add_argument("--max-wall-s", type=float, default=300.0, help="hard bound on the whole run")
    p.add_argument("--ramp-s", type=float, default=1.0, help="calls start spread over this many seconds")
    p.add_argument("--raw", action="store_true", help="add every window lag to the report (to pool runs)")
    p.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr)
    connect = None
    if args.connect:
        host, _, port = args.connect.rpartition(":")
        connect = (host.strip("[]"), int(port))
    opts: dict[str, Any] = {
        "threads": args.threads,
        "max_wait_ms": args.max_wait_ms,
        "config": {"push_interval_ms": args.push_interval_ms, "max_lag_ms": args.max_lag_ms},
    }
    if args.max_batch is not None:
        opts["max_batch"] = args.max_batch
    try:
        report = asyncio.run(
            simulate(
                server=args.server,
                calls=args.calls,
                concurrency=args.concurrency or args.calls,
                seconds=args.seconds,
                realtime=not args.fast,
                audio=args.audio,
                model=args.model,
                connect=connect,
                results_file=args.results,
                max_wall_s=args.max_wall_s,
                ramp_s=args.ramp_s,
                engine_options=opts,
                raw=args.raw,
            )
        )
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"simulate_calls: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0 if report["completed"] == args.calls else 1


if __name__ == "__main__":
    sys.exit(main())
