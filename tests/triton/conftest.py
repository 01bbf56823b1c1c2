"""Fixtures of the Triton lane: a tiny checkpoint exported by spoof-export into a Python-backend repository,
and the real ``tritonserver`` of the nvidia-pytriton wheel started on loopback ports.

The lane skips, with the reason, where the wheel's server cannot run (not installed, not Linux x86-64, no
stub for this Python) or tritonclient is missing.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT, Path(__file__).resolve().parent):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from triton_helpers import MODEL, WINDOW, free_ports  # type: ignore[import-not-found]  # noqa: E402


@pytest.fixture(scope="session")
def triton_runnable() -> None:
    """Skip the lane (with the reason) where the bundled tritonserver or tritonclient is not usable."""
    pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed (the triton extra)")
    pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed (the triton extra)")
    from examples.triton_tier import TritonServerError, find_tritonserver

    try:
        find_tritonserver()
    except TritonServerError as exc:
        pytest.skip(f"the bundled tritonserver cannot run here: {exc}")


@pytest.fixture(scope="session")
def exported(triton_runnable: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(PREFIX.onnx, repository)`` written by ``spoof-export CKPT -o PREFIX --triton DIR --triton-backend
    python`` from a tiny WavLM checkpoint built in-process (no download)."""
    pytest.importorskip("torch", reason="spoof-export needs the export extra (torch)")
    from spoof_export import cli
    from spoof_train.checkpoint import save_checkpoint
    from spoof_train.models import build_detector
    from spoof_train.presets import get_preset

    root = tmp_path_factory.mktemp("triton_export")
    config = dataclasses.replace(get_preset("wavlm-tiny"), window_samples=WINDOW, hop_samples=WINDOW // 2)
    ckpt = save_checkpoint(root / "ckpt", build_detector(config, seed=0), config, {"origin": "tests/triton"})
    prefix, repo = root / "tiny", root / "repo"
    argv = [str(ckpt), "-o", str(prefix), "--triton", str(repo), "--triton-backend", "python"]
    assert cli.main([*argv, "--triton-max-batch", "16", "--latency-repeats", "1", "-q"]) == 0
    assert (repo / MODEL / "config.pbtxt").is_file()
    return prefix.with_suffix(".onnx"), repo


@pytest.fixture(scope="module")
def server(exported: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One tritonserver for the module (gRPC, HTTP, metrics on free loopback ports)."""
    from examples.triton_tier import start_tritonserver

    grpc_port, http_port, metrics_port = free_ports(3)
    log = tmp_path_factory.mktemp("triton_log") / "tritonserver.log"
    srv = start_tritonserver(
        exported[1], grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port, log_path=log
    )
    try:
        yield srv
    finally:
        srv.stop()
