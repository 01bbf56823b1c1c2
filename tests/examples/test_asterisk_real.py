"""The AudioSocket server against a real Asterisk (issue 21, Deliver 1).

Runs when an Asterisk build is found: ``$ASTERISK_PREFIX``, else ``runs/asterisk`` or ``/opt/asterisk``
(built by ``scripts/asterisk-build.sh SRC_DIR PREFIX``); skipped with the reason otherwise.

Each test module run starts one Asterisk as an unprivileged process (``nobody`` when the tests run as
root) with its own configuration in a temporary folder, HTTP/ARI on a free loopback port, and the
*shipped* ``examples/asterisk_audiosocket/extensions.conf`` included verbatim; the lane adds only its
own contexts (a caller and an agent that play recordings, a 16 kHz AudioSocket channel) and points
the shipped globals at the in-process server's port with ``dialplan set global``. Asterisk is driven
through its CLI (``asterisk -rx``) and ARI; the AudioSocket server runs in-process with the tiny test
detector, and every audio payload it receives is recorded so that the tests can compare it with what
Asterisk played.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from ex_helpers import HAVE_WEBSOCKETS, arun, by_kind, running

from examples.asterisk_audiosocket.protocol import AUDIO_RATES
from examples.asterisk_audiosocket.server import AudioSocketServer

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DIALPLAN = ROOT / "examples" / "asterisk_audiosocket" / "extensions.conf"
CALLER_WAV = ROOT / "examples" / "audio" / "real" / "it-carlo-demo-thanks.wav"  # 4.47 s, 8 kHz
AGENT_WAV = ROOT / "examples" / "audio" / "real" / "it-carlo-agent-incorrect.wav"  # 5.62 s, 8 kHz
REQUIRED_MODULES = (
    "app_audiosocket",
    "chan_audiosocket",
    "res_audiosocket",
    "pbx_config",
    "app_playback",
    "app_exec",
    "app_chanspy",
    "app_originate",
    "app_dial",
    "res_clioriginate",
    "func_shell",
    "func_timeout",
    "res_ari",
    "res_ari_channels",
    "res_ari_bridges",
    "res_stasis",
    "res_stasis_playback",
    "res_http_websocket",
    "bridge_softmix",
    "chan_bridge_media",
    "res_timing_timerfd",
    "format_wav",
)
ARI_USER, ARI_PASSWORD, ARI_APP = "spooftest", "spooftest-secret", "spooftest"


def _find_asterisk() -> tuple[Path | None, str]:
    env = os.environ.get("ASTERISK_PREFIX")
    candidates = [Path(env)] if env else [ROOT / "runs" / "asterisk", Path("/opt/asterisk")]
    reasons = []
    for prefix in candidates:
        binary = prefix / "sbin" / "asterisk"
        if not binary.is_file():
            reasons.append(f"no {binary}")
            continue
        mods = prefix / "lib" / "asterisk" / "modules"
        missing = [m for m in REQUIRED_MODULES if not (mods / f"{m}.so").is_file()]
        if missing:
            reasons.append(f"{prefix} lacks modules {', '.join(missing)}")
            continue
        return prefix, ""
    return None, (
        "no Asterisk build found (" + "; ".join(reasons) + "): build one with "
        "scripts/asterisk-build.sh SRC_DIR runs/asterisk, or set ASTERISK_PREFIX"
    )


PREFIX, SKIP_REASON = _find_asterisk()
pytestmark = [pytest.mark.skipif(PREFIX is None, reason=SKIP_REASON), pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _to_16k(pcm8: np.ndarray) -> np.ndarray:
    """8 -> 16 kHz by FFT zero-padding (band-limited): a 16 kHz recording for the slin16 kinds."""
    spec = np.fft.rfft(pcm8.astype(np.float64))
    out = np.fft.irfft(np.concatenate([spec, np.zeros(len(pcm8) // 2)]), 2 * len(pcm8)) * 2
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


class Asterisk:
    """One Asterisk process with its own configuration folder; ``rx`` runs a CLI command in it."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.binary = prefix / "sbin" / "asterisk"
        # not under pytest's tmp_path: its parent is private to the user running the tests, and
        # Asterisk runs as nobody when the tests run as root
        self.dir = Path(tempfile.mkdtemp(prefix="spoof-asterisk-"))
        self.etc = self.dir / "etc"
        self.sounds = self.dir / "data" / "sounds" / "en"
        self.http_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "console.log"

    # --- configuration -------------------------------------------------------------------------
    def write_config(self) -> None:
        d = self.dir
        for sub in ("etc", "data/sounds/en", "lib", "spool", "run", "log", "agi"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (self.etc / "asterisk.conf").write_text(
            "[directories]\n"
            f"astetcdir => {self.etc}\n"
            f"astmoddir => {self.prefix / 'lib' / 'asterisk' / 'modules'}\n"
            f"astvarlibdir => {d / 'lib'}\n"
            f"astdbdir => {d / 'lib'}\n"
            f"astkeydir => {d / 'lib'}\n"
            f"astdatadir => {d / 'data'}\n"
            f"astagidir => {d / 'agi'}\n"
            f"astspooldir => {d / 'spool'}\n"
            f"astrundir => {d / 'run'}\n"
            f"astlogdir => {d / 'log'}\n"
            f"astsbindir => {self.prefix / 'sbin'}\n"
            "[options]\nverbose = 3\nnocolor = yes\n"
        )
        (self.etc / "modules.conf").write_text("[modules]\nautoload = yes\n")
        (self.etc / "logger.conf").write_text(
            "[general]\n[logfiles]\nmessages.log => notice,warning,error,verbose\n"
        )
        (self.etc / "http.conf").write_text(
            f"[general]\nenabled = yes\nbindaddr = 127.0.0.1\nbindport = {self.http_port}\n"
        )
        (self.etc / "ari.conf").write_text(
            "[general]\nenabled = yes\n"
            f"[{ARI_USER}]\ntype = user\nread_only = no\npassword = {ARI_PASSWORD}\npassword_format = plain\n"
        )
        # the shipped dialplan verbatim, then the lane's own contexts
        (self.etc / "extensions.conf").write_text(
            f'#include "{SHIPPED_DIALPLAN}"\n'
            "\n; --- the test lane's own contexts ---\n"
            # callers start speaking 1 s after the answer: a voice frame that reaches a channel
            # within Answer()'s 500 ms media wait is lost (measured: a caller who speaks at once
            # loses its first 20 ms), which would defeat the sample-exact comparisons
            "[spooftest-caller]  ; the caller's phone: speaks one recording, hangs up\n"
            "exten => s,1,Wait(1)\n"
            " same => n,Playback(spooftest-caller)\n"
            " same => n,Hangup()\n"
            "[spooftest-long-caller]  ; a longer call: the recording three times (13.4 s)\n"
            "exten => s,1,Wait(1)\n"
            " same => n,Playback(spooftest-caller&spooftest-caller&spooftest-caller)\n"
            " same => n,Hangup()\n"
            "[spooftest-agent]  ; the agent answers and speaks another recording\n"
            "exten => agent,1,Answer()\n"
            " same => n,Playback(spooftest-agent)\n"
            " same => n,Wait(30)\n"
            "[spooftest-verified]  ; SPOOF_VERIFIED: where [spoof-verify] goes on after scoring\n"
            "exten => s,1,Set(GLOBAL(SPOOFTEST_VERIFIED)=${SPOOF_UUID} ${TRYSTATUS})\n"
            " same => n,Hangup()\n"
            "[spooftest-play16]  ; into a chan_audiosocket channel created with c(slin16)\n"
            "exten => s,1,Playback(spooftest-caller16)\n"
            " same => n,Hangup()\n"
        )
        pcm8, rate = sf.read(CALLER_WAV, dtype="int16")
        assert rate == 8000
        sf.write(self.sounds / "spooftest-caller.wav", pcm8, 8000, subtype="PCM_16")
        agent, _ = sf.read(AGENT_WAV, dtype="int16")
        sf.write(self.sounds / "spooftest-agent.wav", agent, 8000, subtype="PCM_16")
        # format_wav reads 16 kHz WAV files under the extension .wav16
        sf.write(self.sounds / "spooftest-caller16.wav", _to_16k(pcm8), 16000, subtype="PCM_16")
        shutil.copy(self.sounds / "spooftest-caller16.wav", self.sounds / "spooftest-caller16.wav16")

    # --- process -------------------------------------------------------------------------------
    def start(self) -> None:
        self.write_config()
        cmd = [str(self.binary), "-C", str(self.etc / "asterisk.conf"), "-f", "-n"]
        if os.geteuid() == 0:  # never run a PBX as root: drop to nobody
            shutil.chown(self.dir, "nobody", "nogroup")
            for p in self.dir.rglob("*"):
                shutil.chown(p, "nobody", "nogroup")
            cmd += ["-U", "nobody", "-G", "nogroup"]
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"asterisk exited with {self.proc.returncode}:\n{self.tail()}")
            if (self.dir / "run" / "asterisk.ctl").exists():
                out = self.rx("core waitfullybooted", timeout=60, check=False)
                if "fully booted" in out:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"asterisk did not boot within 60 s:\n{self.tail()}")
            time.sleep(0.2)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.rx("core stop now", timeout=10, check=False)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:  # our own process group (start_new_session)
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def tail(self, n: int = 40) -> str:
        text = ""
        for p in (self.log_path, self.dir / "log" / "messages.log"):
            if p.exists():
                text += f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-n:]) + "\n"
        return text

    # --- CLI and ARI ---------------------------------------------------------------------------
    def rx(self, command: str, *, timeout: float = 20, check: bool = True) -> str:
        res = subprocess.run(
            [str(self.binary), "-C", str(self.etc / "asterisk.conf"), "-rx", command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and (res.returncode != 0 or res.stdout.startswith("No such command")):
            raise RuntimeError(f"asterisk -rx {command!r}: exit {res.returncode}: {res.stdout}{res.stderr}")
        return res.stdout + res.stderr

    async def arx(self, command: str, **kw: Any) -> str:
        return await asyncio.to_thread(self.rx, command, **kw)

    def ari(self, method: str, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/ari/{path}" + (f"?{query}" if query else ""), method=method
        )
        token = base64.b64encode(f"{ARI_USER}:{ARI_PASSWORD}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(
                f"ARI {method} {path}: {exc.code} {exc.read().decode(errors='replace')}"
            ) from None
        return json.loads(body) if body else None

    async def aari(self, method: str, path: str, **params: str) -> Any:
        return await asyncio.to_thread(self.ari, method, path, **params)

    def channels(self) -> list[str]:
        """``core show channels concise``: one ``!``-separated line per channel."""
        return [ln for ln in self.rx("core show channels concise").splitlines() if "!" in ln]


@pytest.fixture(scope="module")
def asterisk() -> Iterator[Asterisk]:
    assert PREFIX is not None
    ast = Asterisk(PREFIX)
    try:
        ast.start()
        yield ast
    finally:
        ast.stop()
        ast.cleanup()


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple[int, bytes]]]:
    """Every audio payload the AudioSocket server feeds, per call_id: [(kind, payload), ...]."""
    log: dict[str, list[tuple[int, bytes]]] = {}
    feed = AudioSocketServer._feed

    def recording_feed(call: Any, kind: int, rate: int, payload: bytes) -> None:
        log.setdefault(call.call_id, []).append((kind, payload))
        feed(call, kind, rate, payload)

    monkeypatch.setattr(AudioSocketServer, "_feed", staticmethod(recording_feed))
    return log


def _played(wav: Path) -> np.ndarray:
    """The samples Asterisk plays from ``wav``: all but the last 44 bytes of its data. format_wav
    (22.10.1) stops reading where the file offset reaches the data chunk's length, which ignores the
    44-byte header (``wav_read``: ``fs->maxlen - ftello(f)``), so every WAV loses its last 44 bytes."""
    pcm, _ = sf.read(wav, dtype="int16")
    return np.asarray(pcm[:-22])


def _pcm(frames: list[tuple[int, bytes]]) -> np.ndarray:
    return np.frombuffer(b"".join(p for _, p in frames), dtype="<i2")


def _spoof_score(model: Path, wav: Path) -> dict[str, Any]:
    exe = Path(sys.executable).parent / "spoof-score"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "spoofsdk.cli"]
    res = subprocess.run(
        [*cmd, "--model", str(model), "--threads", "1", "--format", "json", str(wav)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    (result,) = json.loads(res.stdout)["results"]
    assert result["ok"], result
    return dict(result)


def _best_match(received: np.ndarray, clip: np.ndarray) -> tuple[int, float]:
    """Where ``clip`` sits in ``received``: (lag, normalised correlation at that lag), by FFT."""
    r = received.astype(np.float64)
    c = clip.astype(np.float64)
    if len(r) < len(c):
        r = np.concatenate([r, np.zeros(len(c) - len(r))])
    n = 1 << int(np.ceil(np.log2(len(r) + len(c))))
    xc = np.fft.irfft(np.fft.rfft(r, n) * np.conj(np.fft.rfft(c, n)), n)[: len(r) - len(c) + 1]
    energy = np.concatenate([[0.0], np.cumsum(r * r)])
    window = energy[len(c) :] - energy[: len(r) - len(c) + 1]
    norm = np.sqrt(np.maximum(window, 1e-9) * float(c @ c))
    corr = xc / norm
    lag = int(np.argmax(corr))
    return lag, float(corr[lag])


async def _verdict(
    ast: Asterisk, events: list[dict[str, Any]], call_id: str | None = None, timeout: float = 30.0
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = by_kind(events, "verdict", call_id)
        if found:
            return found[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no verdict for {call_id} within {timeout} s; events: {events[-5:]}\n{ast.tail()}")


async def _point_dialplan_at(ast: Asterisk, port: int, agent: str = "Local/agent@spooftest-agent/n") -> None:
    await ast.arx(f"dialplan set global SPOOF_SERVER 127.0.0.1:{port}")
    await ast.arx(f"dialplan set global SPOOF_AGENT {agent}")


def _uuid_verdicts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = by_kind(events, "verdict")
    for v in out:
        uuid.UUID(v["call_id"])  # Asterisk's UUID, as the dialplan chose it
    return out


# --- tests -------------------------------------------------------------------------------------


def test_audiosocket_app_8khz_equals_spoof_score(
    asterisk: Asterisk,
    detector: Any,
    tiny_model: Path,
    received: dict[str, list[tuple[int, bytes]]],
    tmp_path: Path,
) -> None:
    """The shipped [spoof-verify] context: AudioSocket() owns the channel; the caller speaks a recording."""

    async def go() -> list[dict[str, Any]]:
        async with running(detector) as (server, events):
            await _point_dialplan_at(asterisk, server.port)
            await asterisk.arx("channel originate Local/s@spoof-verify/n extension s@spooftest-caller")
            await _verdict(asterisk, events)
            return events

    events = arun(go(), timeout=60)
    (verdict,) = _uuid_verdicts(events)
    frames = received[verdict["call_id"]]
    assert {kind for kind, _ in frames} == {0x10}  # AudioSocket() sends 8 kHz slin
    assert max(len(p) for _, p in frames) == 320  # 20 ms frames
    played = _played(asterisk.sounds / "spooftest-caller.wav")
    got = _pcm(frames)
    assert np.array_equal(got, played), (len(got), len(played), _best_match(got, played))
    assert verdict["reason"] == "hangup"
    (start,) = by_kind(events, "call_start")
    assert start["sample_rate"] == 8000
    # spoof-score on the same audio: the WAV as Asterisk played it
    sf.write(tmp_path / "played.wav", played, 8000, subtype="PCM_16")
    offline = _spoof_score(tiny_model, tmp_path / "played.wav")
    assert verdict["spoof_prob"] == pytest.approx(offline["spoof_prob"], abs=1e-6)
    assert verdict["n_windows"] == offline["n_windows"]
    assert verdict["label"] == offline["label"]
    assert verdict["duration_s"] == pytest.approx(offline["duration_s"], abs=1e-6)


def _global(ast: Asterisk, name: str) -> str | None:
    for line in ast.rx("dialplan show globals").splitlines():
        key, _, value = line.strip().partition("=")
        if key == name:
            return value
    return None


def test_verify_window_ends_without_dropping_the_caller(
    asterisk: Asterisk, detector: Any, received: dict[str, list[tuple[int, bytes]]]
) -> None:
    """[spoof-verify]: after the 8 s scoring window the caller goes on to SPOOF_VERIFIED (extension T),
    and a scoring server that cannot be reached does not hang the caller up either."""

    async def go() -> tuple[list[dict[str, Any]], str | None, str | None]:
        async with running(detector) as (server, events):
            await _point_dialplan_at(asterisk, server.port)
            await asterisk.arx("dialplan set global SPOOF_VERIFIED spooftest-verified,s,1")
            await asterisk.arx("dialplan set global SPOOFTEST_VERIFIED none")
            # a caller who talks for 13.4 s: longer than the window
            await asterisk.arx("channel originate Local/s@spoof-verify/n extension s@spooftest-long-caller")
            await _verdict(asterisk, events, timeout=20)
            deadline = time.monotonic() + 5
            while (after := await asyncio.to_thread(_global, asterisk, "SPOOFTEST_VERIFIED")) == "none":
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            # the server is down: nothing listens on the port
            await asterisk.arx(f"dialplan set global SPOOF_SERVER 127.0.0.1:{_free_port()}")
            await asterisk.arx("dialplan set global SPOOFTEST_VERIFIED none")
            await asterisk.arx("channel originate Local/s@spoof-verify/n extension s@spooftest-long-caller")
            deadline = time.monotonic() + 10
            while (down := await asyncio.to_thread(_global, asterisk, "SPOOFTEST_VERIFIED")) == "none":
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            return events, after, down

    events, after, down = arun(go(), timeout=60)
    (verdict,) = _uuid_verdicts(events)  # the unreachable server's call opened nothing
    assert verdict["reason"] == "hangup"  # AudioSocket() closed the socket at the end of the window
    # the 8 s window starts when Answer() returns (after its 500 ms media wait); the caller speaks
    # from 1 s after the answer: 7.5 s of audio (measured 7.506)
    assert 7.0 < verdict["received_s"] < 8.0, verdict
    assert after is not None
    assert after.split()[0] == verdict["call_id"], after  # went on to SPOOF_VERIFIED, not hung up
    assert down is not None
    uid, status = down.split()
    uuid.UUID(uid)
    assert uid != verdict["call_id"]
    assert status == "FAILED", down  # TryExec: AudioSocket() could not connect; the caller stays


def test_audiosocket_channel_slin16_equals_spoof_score(
    asterisk: Asterisk,
    detector: Any,
    tiny_model: Path,
    received: dict[str, list[tuple[int, bytes]]],
    tmp_path: Path,
) -> None:
    """chan_audiosocket created with c(slin16): kind 0x12, scored at 16 kHz, equal to spoof-score."""
    call_id = str(uuid.uuid4())

    async def go() -> list[dict[str, Any]]:
        async with running(detector) as (server, events):
            await asterisk.arx(
                f"channel originate AudioSocket/127.0.0.1:{server.port}/{call_id}/c(slin16) "
                "extension s@spooftest-play16"
            )
            await _verdict(asterisk, events, call_id)
            return events

    events = arun(go(), timeout=60)
    frames = received[call_id]
    assert {kind for kind, _ in frames} == {0x12}
    assert AUDIO_RATES[0x12] == 16000
    played = _played(asterisk.sounds / "spooftest-caller16.wav")
    got = _pcm(frames)
    assert np.array_equal(got, played), (len(got), len(played), _best_match(got, played))
    (start,) = by_kind(events, "call_start", call_id)
    assert start["sample_rate"] == 16000
    (verdict,) = by_kind(events, "verdict", call_id)
    assert verdict["reason"] == "hangup"
    sf.write(tmp_path / "played16.wav", played, 16000, subtype="PCM_16")
    offline = _spoof_score(tiny_model, tmp_path / "played16.wav")
    assert verdict["spoof_prob"] == pytest.approx(offline["spoof_prob"], abs=1e-6)
    assert verdict["n_windows"] == offline["n_windows"]
    assert verdict["duration_s"] == pytest.approx(offline["duration_s"], abs=1e-6)


def test_chanspy_passive_monitoring_hears_only_the_caller(
    asterisk: Asterisk, detector: Any, received: dict[str, list[tuple[int, bytes]]]
) -> None:
    """The shipped [from-pstn] / [spoof-tap]: a live caller <-> agent call, tapped through ChanSpy."""

    async def go() -> list[dict[str, Any]]:
        async with running(detector) as (server, events):
            await _point_dialplan_at(asterisk, server.port)
            await asterisk.arx("channel originate Local/5551000@from-pstn/n extension s@spooftest-caller")
            await _verdict(asterisk, events, timeout=40)
            return events

    events = arun(go(), timeout=80)
    (verdict,) = _uuid_verdicts(events)
    assert verdict["reason"] == "hangup"  # ChanSpy's E: the tap ends with the caller
    frames = received[verdict["call_id"]]
    assert {kind for kind, _ in frames} == {0x10}
    got = _pcm(frames)
    caller, _ = sf.read(CALLER_WAV, dtype="int16")
    agent, _ = sf.read(AGENT_WAV, dtype="int16")
    lag, corr_caller = _best_match(got, caller[: len(got)])
    _, corr_agent = _best_match(got, agent)
    # the caller's voice, whole (o: only the audio coming from the spied channel), not the agent's
    assert corr_caller > 0.95, (corr_caller, lag, len(got))
    assert corr_agent < 0.3, corr_agent
    # sample-exact from the first sample; the end is short by up to a few 20 ms frames: the
    # audiohook hands ChanSpy whole frames only (the recording's last, partial frame is never heard),
    # and when the caller hangs up ChanSpy (option E) leaves with its last frame or two still queued
    # (measured: 1 or 2 frames short, run to run)
    played = _played(asterisk.sounds / "spooftest-caller.wav")
    assert lag == 0
    assert np.array_equal(got, played[: len(got)]), (len(got), len(played))
    assert len(played) - len(got) <= 0.1 * 8000, (len(got), len(played))
    assert verdict["duration_s"] == pytest.approx(len(got) / 8000, abs=0.05)


def _ari_events_url(asterisk: Asterisk) -> str:
    return f"ws://127.0.0.1:{asterisk.http_port}/ari/events?app={ARI_APP}&api_key={ARI_USER}:{ARI_PASSWORD}"


async def _ari_event(ws: Any, kind: str, *, channel_id: str | None = None, timeout: float = 30) -> None:
    """Wait (``timeout`` s at most) for the ARI event ``kind`` on the events socket ``ws``, of the channel
    ``channel_id`` when given; events that arrived before the call are still queued on the socket."""
    deadline = time.monotonic() + timeout
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if msg.get("type") == kind and channel_id in (None, msg.get("channel", {}).get("id")):
            return


async def _external_media_bridge(
    asterisk: Asterisk, ws: Any, port: int, call_id: str, fmt: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An ARI externalMedia channel (AudioSocket over TCP to our server, ``fmt`` audio, the UUID
    ``call_id``) in a new mixing bridge: (channel, bridge). The channel joins the bridge after its
    StasisStart: before it, ARI answers addChannel with 422 "Channel not in Stasis application"."""
    chan = await asterisk.aari(
        "POST",
        "channels/externalMedia",
        app=ARI_APP,
        external_host=f"127.0.0.1:{port}",
        encapsulation="audiosocket",
        transport="tcp",
        format=fmt,
        data=call_id,
    )
    bridge = await asterisk.aari("POST", "bridges", type="mixing")
    await _ari_event(ws, "StasisStart", channel_id=chan["id"])
    await asterisk.aari("POST", f"bridges/{bridge['id']}/addChannel", channel=chan["id"])
    return chan, bridge


async def _play_into_bridge(asterisk: Asterisk, ws: Any, bridge: dict[str, Any], sound: str) -> None:
    """Play ``sound:SOUND`` into the bridge and wait (30 s at most) for ARI's PlaybackFinished event."""
    await asterisk.aari("POST", f"bridges/{bridge['id']}/play", media=f"sound:{sound}")
    await _ari_event(ws, "PlaybackFinished")
    await asyncio.sleep(0.3)


async def _delete_channel_and_bridge(
    asterisk: Asterisk, chan: dict[str, Any], bridge: dict[str, Any]
) -> None:
    await asterisk.aari("DELETE", f"channels/{chan['id']}")
    await asterisk.aari("DELETE", f"bridges/{bridge['id']}")


@pytest.mark.skipif(not HAVE_WEBSOCKETS, reason="needs websockets (the examples extra)")
def test_ari_external_media_audiosocket(
    asterisk: Asterisk,
    detector: Any,
    tiny_model: Path,
    received: dict[str, list[tuple[int, bytes]]],
    tmp_path: Path,
) -> None:
    """ARI externalMedia (encapsulation audiosocket, slin16) in a mixing bridge that plays a recording."""
    from websockets.asyncio.client import connect

    call_id = str(uuid.uuid4())

    async def go() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        async with running(detector) as (server, events):
            async with connect(_ari_events_url(asterisk)) as ws:
                chan, bridge = await _external_media_bridge(asterisk, ws, server.port, call_id, "slin16")
                await _play_into_bridge(asterisk, ws, bridge, "spooftest-caller16")
                await _delete_channel_and_bridge(asterisk, chan, bridge)
            await _verdict(asterisk, events, call_id)
            return events, chan

    events, chan = arun(go(), timeout=80)
    assert chan["name"].startswith("AudioSocket/")
    frames = received[call_id]
    assert {kind for kind, _ in frames} == {0x12}  # slin16
    (start,) = by_kind(events, "call_start", call_id)
    assert start["sample_rate"] == 16000
    (verdict,) = by_kind(events, "verdict", call_id)
    assert verdict["reason"] == "hangup"
    # sample-exact: a mixing bridge with one talker passes its audio through unchanged at slin16
    # (the played recording, no leading or trailing silence: softmix writes nothing while no one talks)
    got = _pcm(frames)
    played = _played(asterisk.sounds / "spooftest-caller16.wav")
    assert np.array_equal(got, played), (len(got), len(played), _best_match(got, played))
    sf.write(tmp_path / "played16.wav", played, 16000, subtype="PCM_16")
    offline = _spoof_score(tiny_model, tmp_path / "played16.wav")
    assert verdict["spoof_prob"] == pytest.approx(offline["spoof_prob"], abs=1e-6)
    assert verdict["n_windows"] == offline["n_windows"]


@pytest.mark.skipif(not HAVE_WEBSOCKETS, reason="needs websockets (the examples extra)")
def test_external_media_in_a_silent_bridge_stays_up(
    asterisk: Asterisk, detector: Any, received: dict[str, list[tuple[int, bytes]]]
) -> None:
    """chan_audiosocket sends only the frames written to it: an externalMedia channel in a bridge where
    no one talks gets nothing for as long as that lasts. The server, with its default options, must
    keep such a call (it used to end it after 10 s idle, reason timeout, and its closing the socket
    hung up Asterisk's channel)."""
    from websockets.asyncio.client import connect

    call_id = str(uuid.uuid4())

    async def go() -> list[dict[str, Any]]:
        async with running(detector) as (server, events):  # the server's defaults
            async with connect(_ari_events_url(asterisk)) as ws:
                chan, bridge = await _external_media_bridge(asterisk, ws, server.port, call_id, "slin")
                await asyncio.sleep(11.0)  # no one talks
                silent = [e for e in events if e.get("call_id") == call_id and e["event"] != "call_start"]
                assert not silent, silent
                await _play_into_bridge(asterisk, ws, bridge, "spooftest-caller")
                await _delete_channel_and_bridge(
                    asterisk, chan, bridge
                )  # the channel is still there: 404 if not
            await _verdict(asterisk, events, call_id)
            return events

    events = arun(go(), timeout=90)
    (verdict,) = by_kind(events, "verdict", call_id)
    assert verdict["reason"] == "hangup"
    assert verdict["wall_s"] > 11.0
    assert np.array_equal(_pcm(received[call_id]), _played(asterisk.sounds / "spooftest-caller.wav"))


def test_hangups_and_reload_during_calls(
    asterisk: Asterisk, detector: Any, received: dict[str, list[tuple[int, bytes]]]
) -> None:
    """Calls through the shipped [spoof-tap]: one hung up by Asterisk mid-call, a `core reload` while
    the others go on, a call placed after the reload; each call gets one verdict, reason hangup."""
    ids = [str(uuid.uuid4()) for _ in range(3)]

    async def go() -> tuple[list[dict[str, Any]], dict[str, float]]:
        async with running(detector) as (server, events):
            await _point_dialplan_at(asterisk, server.port)
            for call_id in ids:
                await asterisk.arx(
                    f"channel originate Local/{call_id}@spoof-tap/n extension s@spooftest-long-caller"
                )
            await asyncio.sleep(3.0)
            # Asterisk hangs up the first call's AudioSocket channel
            (chan,) = [ln.split("!")[0] for ln in asterisk.channels() if ln.startswith(f"Local/{ids[0]}@")
                       and ln.split("!")[0].endswith(";2")]  # fmt: skip
            await asterisk.arx(f"channel request hangup {chan}")
            await _verdict(asterisk, events, ids[0], timeout=10)
            before = {i: len(_pcm(received.get(i, []))) / 8000 for i in ids}
            out = await asterisk.arx("core reload")
            assert "rror" not in out, out
            # a reload re-reads the shipped [globals]: point SPOOF_SERVER at this server again
            await _point_dialplan_at(asterisk, server.port)
            late = str(uuid.uuid4())
            ids.append(late)
            await asterisk.arx(f"channel originate Local/{late}@spoof-tap/n extension s@spooftest-caller")
            for call_id in ids[1:]:
                await _verdict(asterisk, events, call_id, timeout=30)
            return events, before

    events, before = arun(go(), timeout=90)
    verdicts = {v["call_id"]: v for v in by_kind(events, "verdict")}
    assert sorted(verdicts) == sorted(ids)
    assert len(by_kind(events, "verdict")) == len(ids)
    assert {v["reason"] for v in verdicts.values()} == {"hangup"}
    assert not by_kind(events, "call_error")
    played = _played(asterisk.sounds / "spooftest-caller.wav")
    # the call hung up mid-call was cut short; the others went on through the reload to the end
    assert 2.0 < verdicts[ids[0]]["duration_s"] < 6.0
    for call_id in ids[1:3]:
        got = _pcm(received[call_id])
        assert len(got) / 8000 > before[call_id] + 5.0
        assert np.array_equal(got, np.tile(played, 3)), (len(got), 3 * len(played))
    assert np.array_equal(_pcm(received[ids[3]]), played)


def test_asterisk_stopping_ends_calls_as_hangups(
    detector: Any, received: dict[str, list[tuple[int, bytes]]]
) -> None:
    """`core stop now` mid-call (an Asterisk of its own): its sockets close, each call gets one verdict,
    reason hangup, for the audio received."""
    assert PREFIX is not None
    ast = Asterisk(PREFIX)
    ids = [str(uuid.uuid4()) for _ in range(2)]
    try:
        ast.start()

        async def go() -> list[dict[str, Any]]:
            async with running(detector) as (server, events):
                await _point_dialplan_at(ast, server.port)
                for call_id in ids:
                    await ast.arx(
                        f"channel originate Local/{call_id}@spoof-tap/n extension s@spooftest-long-caller"
                    )
                await asyncio.sleep(3.0)
                assert ast.proc is not None
                await ast.arx("core stop now", check=False)
                await asyncio.to_thread(ast.proc.wait, 20)
                for call_id in ids:
                    await _verdict(ast, events, call_id, timeout=10)
                return events

        events = arun(go(), timeout=90)
    finally:
        ast.stop()
        ast.cleanup()
    assert sorted(v["call_id"] for v in by_kind(events, "verdict")) == sorted(ids)
    for v in by_kind(events, "verdict"):
        assert v["reason"] == "hangup"
        assert 2.0 < v["received_s"] < 6.0
