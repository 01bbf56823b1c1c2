"""The Triton tier end to end: a repository written by spoof-export, served by the real tritonserver of the
nvidia-pytriton wheel on loopback, used through Detector("grpc://..." / "http://...").

Scores are compared with local ONNX Runtime on the same exported file with the speech gate off: the gate
runs on the client either way, so it is the same code on both sides and would only hide windows.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from triton_helpers import MODEL, ROOT, free_ports  # type: ignore[import-not-found]

from spoofsdk import (
    BatchScheduler,
    DeadlineExceededError,
    Detector,
    InvalidArgumentError,
    ModelLoadError,
    ModelNotReadyError,
    ServerUnavailableError,
    ShapeMismatchError,
)
from spoofsdk.backends.triton import TritonBackend

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

ATOL = 1e-5


def _audio(seconds: float, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sr)) / sr
    f0 = 110 + 30 * seed
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (0.2 * x / np.abs(x).max() + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def _url(server: Any, scheme: str, model: str = MODEL) -> str:
    return f"{server.grpc_url if scheme == 'grpc' else server.http_url}/{model}"


def _metric(text: str, name: str, model: str = MODEL) -> float:
    m = re.search(rf'^{name}\{{model="{model}",version="1"\}} ([0-9.e+]+)$', text, re.M)
    assert m is not None, f"{name} for {model} not in the metrics"
    return float(m.group(1))


def _close_windows(a: Any, b: Any) -> float:
    assert [(w.start_s, w.end_s) for w in a] == [(w.start_s, w.end_s) for w in b]
    return max(abs(x.logit - y.logit) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def local(exported: tuple[Path, Path]) -> Detector:
    return Detector(exported[0], backend="cpu", num_threads=1, speech_gate=False)


# ---------------------------------------------------------------------------------------------------------
def test_repository_written_by_spoof_export(exported: tuple[Path, Path]) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from spoofsdk.manifest import read_onnx_metadata

    onnx_path, repo = exported
    cfg = text_format.Parse(
        (repo / MODEL / "config.pbtxt").read_text(encoding="utf-8"), model_config_pb2.ModelConfig()
    )
    assert cfg.name == MODEL
    assert cfg.backend == "python"
    assert cfg.max_batch_size == 16
    assert list(cfg.dynamic_batching.preferred_batch_size) == [1, 4, 8, 16]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
    assert [(i.name, list(i.dims)) for i in cfg.input] == [("audio", [-1])]
    assert [(o.name, list(o.dims)) for o in cfg.output] == [("logits", [2])]
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    manifest = {k: v for k, v in read_onnx_metadata(onnx_path).items() if k.startswith("spoof.")}
    assert {k: v for k, v in params.items() if k.startswith("spoof.")} == manifest
    assert params["onnx_intra_op_threads"] == "1"
    assert (repo / MODEL / "1" / "model.onnx").read_bytes() == onnx_path.read_bytes()
    assert "class TritonPythonModel" in (repo / MODEL / "1" / "model.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_offline_scores_equal_local_onnxruntime(server: Any, local: Detector, scheme: str) -> None:
    url = _url(server, scheme)
    with Detector(url, speech_gate=False) as remote:
        assert remote.backend == "triton"
        assert remote.url == url
        assert remote.path is None
        assert remote.manifest == local.manifest  # read from the server's model config
        assert remote.max_batch == 16
        x = _audio(5.3, 16000, seed=1)
        a, b = local.score(x, 16000), remote.score(x, 16000)
    assert len(a.windows) == 10
    assert _close_windows(a.windows, b.windows) <= ATOL
    assert abs(a.logit - b.logit) <= ATOL


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_streaming_scores_equal_local_onnxruntime(server: Any, local: Detector, scheme: str) -> None:
    x = _audio(4.2, 8000, seed=2)
    data = _pcm16(x)
    with Detector(_url(server, scheme), speech_gate=False) as remote:
        ref = local.score(np.frombuffer(data, "<i2"), 8000)
        sched = BatchScheduler(remote, max_batch=8, max_wait_ms=2)
        try:
            for scheduler in (None, sched):
                with remote.stream(8000, encoding="pcm16", scheduler=scheduler) as call:
                    got = []
                    for k in range(0, len(data), 320):  # 20 ms frames
                        got.extend(call.push(data[k : k + 320]))
                    final = call.flush()
                assert len(got) == len(final.windows) - 1  # the tail window comes with flush()
                assert _close_windows(ref.windows, final.windows) <= ATOL
                assert abs(ref.logit - final.logit) <= ATOL
        finally:
            sched.close()


def test_dynamic_batching_under_concurrent_load(server: Any, exported: tuple[Path, Path]) -> None:
    """Many clients sending one window each: Triton's dynamic batcher runs them in batches > 1 (its own
    metrics: inferences per model execution)."""
    windows = [_audio(1.0, 16000, seed=s) for s in range(4)]
    before = server.metrics()
    errors: list[BaseException] = []
    with Detector(_url(server, "grpc"), speech_gate=False) as remote:

        def client(i: int) -> None:
            try:
                for k in range(25):
                    remote.infer_logits([windows[(i + k) % 4]])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors

    def delta(after: str, name: str) -> float:
        return _metric(after, name) - _metric(before, name)

    # Triton counts a request in its statistics after the response has gone out, so the last responses a
    # client holds may not be counted yet: read the metrics until all 200 are (or 10 s pass).
    deadline = time.monotonic() + 10.0
    after = server.metrics()
    while delta(after, "nv_inference_request_success") < 200 and time.monotonic() < deadline:
        time.sleep(0.1)
        after = server.metrics()
    inferences = delta(after, "nv_inference_count")
    executions = delta(after, "nv_inference_exec_count")
    requests = delta(after, "nv_inference_request_success")
    assert requests == 200
    assert inferences == 200
    assert inferences / executions > 1.0, f"mean batch {inferences / executions:.2f} over {executions} runs"


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_missing_model_is_a_typed_error_naming_what_is_there(server: Any, scheme: str) -> None:
    with pytest.raises(ModelNotReadyError, match=rf"model 'nope' is not on the server.*{MODEL}"):
        Detector(_url(server, scheme, "nope"))


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_deadline_exceeded_is_typed_and_not_retried(server: Any, scheme: str) -> None:
    with Detector(_url(server, scheme), speech_gate=False, remote_options={"timeout_s": 0.001}) as remote:
        batch = [_audio(1.0, 16000, seed=s) for s in range(16)]
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceededError, match=r"no answer within the deadline of 0\.001 s"):
            remote.infer_logits(batch, max_batch=16)
        assert time.monotonic() - t0 < 2.0


def _edit_model(repo: Path, src: str, dst: str, edit: Any) -> None:
    import shutil

    shutil.copytree(repo / src, repo / dst)
    cfg = repo / dst / "config.pbtxt"
    cfg.write_text(edit(cfg.read_text(encoding="utf-8").replace(src, dst)), encoding="utf-8")


def test_inconsistent_models_are_load_errors(exported: tuple[Path, Path], tmp_path: Path) -> None:
    """Models the server runs but that break the contract: no manifest, a bad manifest key, other outputs,
    a fixed input length (requests of another length are rejected by the server: a shape mismatch)."""
    import shutil

    from examples.triton_tier import start_tritonserver

    repo = tmp_path / "repo"
    shutil.copytree(exported[1], repo)

    def strip_spoof(text: str) -> str:
        return re.sub(r'parameters \{\n  key: "spoof\.[^"]+"\n  value: .*\n\}\n', "", text)

    _edit_model(repo, MODEL, "bare", strip_spoof)
    _edit_model(
        repo,
        MODEL,
        "badkey",
        lambda t: re.sub(r'(key: "spoof.window_samples"\n  value: \{ string_value: )"\d+"', r'\1"a lot"', t),
    )
    _edit_model(repo, MODEL, "threeway", lambda t: t.replace("dims: [ 2 ]", "dims: [ 3 ]"))
    _edit_model(repo, MODEL, "fixed", lambda t: t.replace("dims: [ -1 ]", "dims: [ 8000 ]"))
    g, h, m = free_ports(3)
    with start_tritonserver(repo, grpc_port=g, http_port=h, metrics_port=m, log_path=tmp_path / "log") as srv:
        with pytest.raises(ModelLoadError, match=r"has no spoofsdk manifest \(no 'spoof\.\*' parameters"):
            Detector(f"{srv.grpc_url}/bare")
        with pytest.raises(ModelLoadError, match=r"manifest key 'spoof.window_samples': expected"):
            Detector(f"{srv.http_url}/badkey")
        with pytest.raises(
            ModelLoadError, match=r"expected output 'logits' TYPE_FP32 dims \[2\], given TYPE_FP32"
        ):
            Detector(f"{srv.grpc_url}/threeway")
        with pytest.raises(InvalidArgumentError, match="the engine accepts at most 8000 samples"):
            Detector(f"{srv.grpc_url}/fixed", speech_gate=False)
        backend = TritonBackend(f"{srv.grpc_url}/fixed")
        try:
            assert backend.limits.max_samples == 8000
            assert backend.run(np.zeros((2, 8000), np.float32)).shape == (2, 2)
            with pytest.raises(ShapeMismatchError, match="the server rejected the request"):
                backend.run(np.zeros((2, 16000), np.float32))
        finally:
            backend.close()


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_server_stopped_mid_call_then_restarted(
    exported: tuple[Path, Path], local: Detector, tmp_path: Path, scheme: str
) -> None:
    """Killing the server mid-call: the push that completes a window raises ServerUnavailableError after the
    bounded retries, nothing is scored locally; after a restart on the same ports the same session goes on
    and its windows equal local inference again."""
    from examples.triton_tier import start_tritonserver

    g, h, m = free_ports(3)
    log = tmp_path / "log"
    srv = start_tritonserver(exported[1], grpc_port=g, http_port=h, metrics_port=m, log_path=log)
    try:
        url = _url(srv, scheme)
        opts = {"retries": 2, "backoff_s": 0.05, "max_backoff_s": 0.2, "timeout_s": 5.0}
        data = _pcm16(_audio(6.0, 8000, seed=3))
        ref = local.score(np.frombuffer(data, "<i2"), 8000)
        sec = 8000 * 2  # bytes per second of pcm16 at 8 kHz
        cuts = [0, 2 * sec, 3 * sec, len(data)]  # the middle push completes windows while the server is down
        with local.stream(8000) as ref_call:
            expected = [ref_call.push(data[cuts[k] : cuts[k + 1]]) for k in range(3)]
            expected_tail = ref_call.flush().windows[-1]
        assert all(expected)
        with Detector(url, speech_gate=False, remote_options=opts) as remote, remote.stream(8000) as call:
            before = call.push(data[cuts[0] : cuts[1]])
            srv.stop(kill=True)
            t0 = time.monotonic()
            with pytest.raises(ServerUnavailableError, match="server unreachable after 3 attempts"):
                call.push(data[cuts[1] : cuts[2]])
            assert time.monotonic() - t0 < 5.0
            srv = start_tritonserver(exported[1], grpc_port=g, http_port=h, metrics_port=m, log_path=log)
            after = call.push(data[cuts[2] : cuts[3]])
            final = call.flush()
        assert _close_windows(expected[0], before) <= ATOL
        assert _close_windows(expected[2], after) <= ATOL
        assert _close_windows([expected_tail], [final.windows[-1]]) <= ATOL
        missing = {w.start_s for w in expected[1]}
        assert missing.isdisjoint(w.start_s for w in final.windows)  # not scored, not invented
        assert len(final.windows) == len(ref.windows) - len(missing)
    finally:
        srv.stop()


# ---------------------------------------------------------------------------------------------------------
def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the call-centre server exited with {proc.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {timeout_s} s")


def test_two_callcentre_servers_share_one_triton(server: Any, tmp_path: Path) -> None:
    """Two AudioSocket server processes with --model grpc://.../MODEL score their calls on one Triton."""
    from examples.simulate_calls import audiosocket_call, synth_audio

    before = server.metrics()
    ports = free_ports(2)
    procs, outs = [], []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        for i, port in enumerate(ports):
            out = tmp_path / f"events{i}.jsonl"
            cmd = [sys.executable, "-m", "examples.asterisk_audiosocket", "--port", str(port)]
            cmd += ["--model", _url(server, "grpc"), "--out", str(out), "--log-level", "WARNING"]
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE))
            outs.append(out)
        for port, proc in zip(ports, procs, strict=True):
            _wait_port(port, proc)
        calls = {
            (port, str(uuid.uuid4())): synth_audio("tones", 3.0, seed=k) for k, port in enumerate(ports * 2)
        }

        async def play() -> None:
            await asyncio.gather(
                *(
                    audiosocket_call("127.0.0.1", port, cid, pcm, realtime=False)
                    for (port, cid), pcm in calls.items()
                )
            )

        asyncio.run(asyncio.wait_for(play(), 120))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    windows = 0
    for (port, cid), _pcm in calls.items():
        events = [json.loads(line) for line in outs[ports.index(port)].read_text().splitlines()]
        verdict = [e for e in events if e["event"] == "verdict" and e["call_id"] == cid]
        assert len(verdict) == 1, events
        assert verdict[0]["label"] in ("spoof", "bonafide"), verdict
        assert verdict[0]["pushes_unscored"] == 0
        scored = [
            e for e in events if e["event"] == "window" and e["call_id"] == cid and e["state"] == "scored"
        ]
        assert scored
        windows += len(scored)
        assert not [e for e in events if e["event"] in ("call_error", "scores_missing")]
    after = server.metrics()
    served = _metric(after, "nv_inference_count") - _metric(before, "nv_inference_count")
    assert served >= windows  # every scored window of both processes was inferred on this Triton


def test_callcentre_calls_go_on_while_the_tier_is_down(exported: tuple[Path, Path], tmp_path: Path) -> None:
    """The engine with a remote detector: while Triton is down the call goes on, the missing scores are
    events (scores_missing), nothing crashes; after a restart the same call is scored again."""
    from examples.asterisk_audiosocket.server import AudioSocketServer
    from examples.callcentre.engine import EngineConfig, ScoringEngine
    from examples.simulate_calls import audiosocket_call, synth_audio
    from examples.triton_tier import start_tritonserver

    g, h, m = free_ports(3)
    log = tmp_path / "log"
    state: dict[str, Any] = {"srv": None}
    state["srv"] = start_tritonserver(exported[1], grpc_port=g, http_port=h, metrics_port=m, log_path=log)
    try:
        remote = Detector(
            f"{state['srv'].grpc_url}/{MODEL}",
            speech_gate=False,
            remote_options={"retries": 1, "backoff_s": 0.05, "max_backoff_s": 0.1, "timeout_s": 2.0},
        )
        events: list[dict[str, Any]] = []

        async def scenario() -> None:
            engine = ScoringEngine(remote, config=EngineConfig(max_calls=4), on_event=events.append)
            server = AudioSocketServer(engine, port=0)
            await server.start()
            try:
                cid = str(uuid.uuid4())
                call = asyncio.create_task(
                    audiosocket_call("127.0.0.1", server.port, cid, synth_audio("tones", 14.0, seed=7))
                )
                await asyncio.sleep(3.2)
                await asyncio.to_thread(state["srv"].stop, kill=True)
                await asyncio.sleep(2.5)
                state["srv"] = await asyncio.to_thread(
                    start_tritonserver, exported[1], grpc_port=g, http_port=h, metrics_port=m, log_path=log
                )
                await call
            finally:
                await server.close()
                await engine.shutdown()

        asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        state["srv"].stop()
    missing = [e for e in events if e["event"] == "scores_missing"]
    assert missing, [e["event"] for e in events]
    assert all(e["error"] in ("ServerUnavailableError", "DeadlineExceededError") for e in missing)
    windows = [e for e in events if e["event"] == "window"]
    assert any(w["end_s"] <= missing[0]["from_s"] for w in windows)  # scored before the outage
    assert any(w["start_s"] >= missing[-1]["to_s"] for w in windows)  # and again after the restart
    verdict = [e for e in events if e["event"] == "verdict"]
    assert len(verdict) == 1
    assert verdict[0]["pushes_unscored"] == len(missing)
    assert verdict[0]["label"] in ("spoof", "bonafide")
    assert not [e for e in events if e["event"] == "call_error"]
