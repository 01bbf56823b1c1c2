"""Capacity of a call-centre server process, measured with independent real-time client processes.

    python -m examples.bench_capacity --calls 50,100,200 --seconds 30 --clients 4   # bundled detector

For each call count, one after the other:

1. the server CLI (``python -m examples.asterisk_audiosocket`` or ``examples.media_stream_ws``) starts
   in its own process with its defaults (``--threads 1``), its events going to a JSON-lines file;
2. ``--clients`` processes of ``python -m examples.simulate_calls --connect ... --raw`` share the calls
   and play them in real time (one 20 ms frame per call every 20 ms, calls started over ``--ramp-s``),
   each reading the scores back from the server's event file;
3. when the clients are done, the server gets SIGTERM and must exit 0.

Reported per call count: calls completed (the clients got a verdict) and verdicts in the event file
(exactly one per call expected), windows scored against the windows the detector gives the same audio
offline, window lag (event ``ts`` minus the time the window's last sample was sent) p50 / p95 pooled
over all clients, verdict latency p50 / p95 (hangup sent to verdict read back, which includes up to
20 ms of file polling), the server's CPU (user + system over the clients' run, as a share of one core)
and peak RSS, the clients' CPU, audio dropped, pushes shed and events dropped. The load average before
and after is printed: on a shared machine other processes take CPU from both sides.

Everything stays on loopback; every step is bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .simulate_calls import percentiles, synth_audio

__all__ = ["main", "run_level"]

MODULES = {"audiosocket": "examples.asterisk_audiosocket", "media_stream": "examples.media_stream_ws"}
ROOT = Path(__file__).resolve().parents[1]


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_peak_rss_mb(pid: int) -> float:
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return round(int(m.group(1)) / 1024, 1) if m else float("nan")


def expected_windows(seconds: float, model: str | None) -> int:
    """Windows (the tail one included) the detector gives one call's audio scored offline."""
    from spoofsdk import Detector

    det = Detector(model, backend="cpu", num_threads=1)
    try:
        return len(det.score(synth_audio("tones", seconds, 0), sample_rate=8000).windows)
    finally:
        det.close()


def _start_server(
    server: str, out: Path, calls: int, model: str | None, extra: list[str]
) -> tuple[subprocess.Popen[str], int, queue.Queue[str], threading.Thread]:
    cmd = [sys.executable, "-m", MODULES[server], "--port", "0", "--out", str(out)]
    cmd += ["--max-calls", str(calls + 16), *(["--model", model] if model else []), *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    stderr = proc.stderr
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        with stderr:
            for line in stderr:
                lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(queue.Empty):
            line = lines.get(timeout=1.0)
            m = re.search(r"listening on (?:ws://)?127\.0\.0\.1:(\d+)", line)
            if m:
                return proc, int(m.group(1)), lines, reader
    proc.kill()
    proc.wait()
    reader.join(5)
    raise RuntimeError(f"{MODULES[server]} did not start listening (exit {proc.poll()})")


def run_level(
    *,
    server: str,
    calls: int,
    clients: int,
    seconds: float,
    ramp_s: float,
    model: str | None,
    workdir: Path,
    expected_per_call: int,
    server_args: list[str],
) -> dict[str, Any]:
    out = workdir / f"events-{server}-{calls}.jsonl"
    proc, port, log_lines, log_reader = _start_server(server, out, calls, model, server_args)
    shares = [calls // clients + (1 if i < calls % clients else 0) for i in range(clients)]
    load0 = os.getloadavg()
    runners: list[subprocess.Popen[str]] = []
    try:
        cpu0, t0 = _proc_cpu_s(proc.pid), time.monotonic()
        for n in (s for s in shares if s):
            cmd = [sys.executable, "-m", "examples.simulate_calls", "--server", server]
            cmd += ["--connect", f"127.0.0.1:{port}", "--results", str(out), "--calls", str(n)]
            cmd += ["--seconds", str(seconds), "--ramp-s", str(ramp_s), "--raw"]
            cmd += ["--max-wall-s", str(seconds + ramp_s + 120)]
            runners.append(
                subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            )
        reports = []
        client_errors = []
        for r in runners:
            stdout, stderr = r.communicate(timeout=seconds + ramp_s + 180)
            try:
                reports.append(json.loads(stdout))
            except json.JSONDecodeError:
                client_errors.append(f"exit {r.returncode}: {stderr.strip()[-300:]}")
        wall = time.monotonic() - t0
        server_cpu = _proc_cpu_s(proc.pid) - cpu0
        peak_rss = _proc_peak_rss_mb(proc.pid)
        proc.send_signal(signal.SIGTERM)
        exit_code = proc.wait(timeout=60)
    finally:
        for r in runners:
            if r.poll() is None:
                r.kill()
                r.communicate()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log_reader.join(10)
    load1 = os.getloadavg()
    events = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
    verdicts = [e for e in events if e["event"] == "verdict"]
    ids = [(v["call_id"], v["track"]) for v in verdicts]
    lags = [x for rep in reports for x in rep.get("raw", {}).get("window_lags_ms", [])]
    vlat = [x for rep in reports for x in rep.get("raw", {}).get("verdict_latency_ms", [])]
    warnings = [line.strip() for line in list(log_lines.queue) if " WARNING " in line or " ERROR " in line]
    return {
        "server": server,
        "calls": calls,
        "clients": len(runners),
        "seconds_per_call": seconds,
        "completed": sum(int(rep.get("completed", 0)) for rep in reports),
        "verdicts": len(verdicts),
        "duplicate_verdicts": len(ids) - len(set(ids)),
        "labels": {
            k: sum(1 for v in verdicts if v.get("label") == k) for k in ("spoof", "bonafide", "undetermined")
        },
        "windows_expected": calls * expected_per_call,
        "windows_in_verdicts": sum(int(v.get("n_windows") or 0) for v in verdicts),
        "window_events": sum(1 for e in events if e["event"] == "window"),
        "window_lag_ms": percentiles(lags),
        "verdict_latency_ms": percentiles(vlat),
        "server_cpu_pct": round(100.0 * server_cpu / wall, 1),
        "server_peak_rss_mb": peak_rss,
        "clients_cpu_pct": round(100.0 * sum(float(rep.get("cpu_s", 0.0)) for rep in reports) / wall, 1),
        "dropped_s": round(sum(float(v.get("dropped_s") or 0.0) for v in verdicts), 3),
        "pushes_shed": sum(int(v.get("pushes_shed") or 0) for v in verdicts),
        "events_dropped": sum(int(e.get("count", 0)) for e in events if e["event"] == "events_dropped"),
        "call_errors": sum(1 for e in events if e["event"] == "call_error"),
        "rejected": sum(1 for e in events if e["event"] == "call_rejected"),
        "client_failures": [f for rep in reports for f in rep.get("failed", [])][:5] + client_errors,
        "server_exit": exit_code,
        "server_warnings": warnings[:5],
        "server_engine_summary": next(
            (x.strip() for x in list(log_lines.queue) if "engine stopped" in x), None
        ),
        "wall_s": round(wall, 1),
        "load_before": [round(x, 2) for x in load0],
        "load_after": [round(x, 2) for x in load1],
    }


def _row(r: dict[str, Any]) -> str:
    lag, vl = r["window_lag_ms"], r["verdict_latency_ms"]
    return (
        f"| {r['calls']} | {r['completed']}/{r['calls']} | {r['verdicts']} | "
        f"{r['windows_in_verdicts']} / {r['windows_expected']} | "
        f"{lag.get('p50', '')} / {lag.get('p95', '')} | "
        f"{vl.get('p50', '')} / {vl.get('p95', '')} | {r['server_cpu_pct']} | {r['server_peak_rss_mb']} | "
        f"{r['clients_cpu_pct']} | {r['dropped_s']} | {r['pushes_shed']} | {r['events_dropped']} | "
        f"{r['load_before'][0]} / {r['load_after'][0]} |"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m examples.bench_capacity", description=__doc__.split("\n")[0])
    p.add_argument("--server", choices=sorted(MODULES), default="audiosocket")
    p.add_argument("--model", default=None, help="detector (default: the bundled one)")
    p.add_argument("--calls", default="50,100,200", help="comma-separated concurrent call counts")
    p.add_argument("--clients", type=int, default=4, help="client processes sharing the calls")
    p.add_argument("--seconds", type=float, default=30.0, help="audio per call")
    p.add_argument("--ramp-s", type=float, default=2.0, help="calls start spread over this many seconds")
    p.add_argument("--server-arg", action="append", default=[], help="extra server option (repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        counts = [int(x) for x in args.calls.split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or not all(1 <= c <= 2000 for c in counts) or not 1 <= args.clients <= 32:
        print("bench_capacity: expected --calls in 1..2000 and --clients in 1..32", file=sys.stderr)
        return 2
    if not 0 < args.seconds <= 600:
        print("bench_capacity: expected 0 < --seconds <= 600", file=sys.stderr)
        return 2
    per_call = expected_windows(args.seconds, args.model)
    results = []
    with tempfile.TemporaryDirectory(prefix="spoof-capacity-") as tmp:
        for calls in counts:
            res = run_level(
                server=args.server,
                calls=calls,
                clients=min(args.clients, calls),
                seconds=args.seconds,
                ramp_s=args.ramp_s,
                model=args.model,
                workdir=Path(tmp),
                expected_per_call=per_call,
                server_args=list(args.server_arg),
            )
            results.append(res)
            print(json.dumps(res), flush=True)
    print(
        "| calls | completed | verdicts | windows scored / expected | lag p50 / p95 ms | "
        "verdict p50 / p95 ms | server CPU % | server peak RSS MB | clients CPU % | dropped s | "
        "pushes shed | events dropped | load 1 min before / after |"
    )
    print("|" + "---|" * 13)
    for r in results:
        print(_row(r))
    ok = all(
        r["completed"] == r["calls"] == r["verdicts"]
        and r["server_exit"] == 0
        and not r["duplicate_verdicts"]
        for r in results
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
