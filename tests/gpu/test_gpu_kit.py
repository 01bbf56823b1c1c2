"""The GPU validation kit's CPU rehearsal (issue 24): ``scripts/gpu-check.sh --rehearse --quick``.

Runs here and in CI (no GPU): everything up to the device boundary really runs (default detector as
FP32 / FP16 / int8 Q/DQ, a tiny WavLM exported by spoof_export, ORT CPU references, a CPU throughput
baseline, the sidecar check at manifest level); every item that needs CUDA is skipped with its reason.
Three runs show the kit is resumable: one with too small a budget defers, the next finishes, the last
has nothing left to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(
    tmp: Path, budget_s: int | None = None, mode: str = "--quick"
) -> tuple[subprocess.CompletedProcess[str], dict]:
    env = dict(os.environ, OUT=str(tmp / "out"), GPU_CHECK_STATE=str(tmp / "state"), PYTHON=sys.executable)
    if budget_s is not None:
        env["GPU_CHECK_BUDGET_S"] = str(budget_s)
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu-check.sh"), "--rehearse", mode, "--no-tests"],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    return proc, json.loads((tmp / "out" / "gpu-check.json").read_text())


def test_rehearsal_runs_to_the_device_boundary_and_resumes(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnx")

    # 1. A budget too small for the exports: they are deferred, the cheap sidecar check runs.
    proc, doc = _run(tmp_path, budget_s=1)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    items = doc["items"]
    assert items["models/default"]["status"] == "deferred"
    assert "time budget" in items["models/default"]["reason"]
    assert items["sidecar/manifest_check"]["status"] == "ok"
    assert doc["summary"]["complete"] is False

    # 2. The next run finishes what the first could not.
    proc, doc = _run(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    items = doc["items"]
    if doc["env"]["capabilities"]["gpu"]:
        pytest.skip("this machine has a GPU: the rehearsal's skip expectations do not apply")
    done = ["models/default", "models/wavlm-tiny", "tput/cpu/default/fp32/raw/b1"]
    done += [f"cpu/{m}/{p}" for m in ("default", "wavlm-tiny") for p in ("fp32", "fp16", "int8")]
    for key in done:
        assert items[key]["status"] == "ok", (key, items[key])
    assert "models/default" in doc["runs"][-1]["ran"]
    assert items["models/wavlm-tiny"]["export_stages"]["torch->onnx"]["ok"]
    assert items["tput/cpu/default/fp32/raw/b1"]["windows_per_s"] > 0
    messages = [c["message"] for c in items["sidecar/manifest_check"]["cases"].values() if "message" in c]
    assert any("built for compute capability 9.0" in m for m in messages)
    gpu_items = {k: v for k, v in items.items() if "gpu" in v.get("needs", [])}
    assert {k.split("/")[0] for k in gpu_items} == {"engine", "parity", "tput", "sidecar"}
    for key, v in gpu_items.items():
        assert v["status"] == "skipped", (key, v)
        assert v["reason"].startswith("no GPU"), (key, v["reason"])
    assert any(k.startswith("tput/trt/wavlm-tiny/fp16/scheduler/") for k in gpu_items)
    assert any(k.startswith("tput/ort-cuda/default/fp32/sessions/") for k in gpu_items)
    assert doc["summary"]["complete"] is True
    assert doc["summary"]["gpu_items_run"] == 0
    log = (tmp_path / "out" / "gpu-check.log").read_text()
    assert "done (exit 0)" in log

    # 3. Nothing is left: the third run runs no item again.
    proc, doc = _run(tmp_path)
    assert proc.returncode == 0
    assert doc["runs"][-1]["ran"] == []
    assert len(doc["runs"]) == 3


def test_fake_gpu_rehearsal_runs_the_tensorrt_items_through_the_sdk(tmp_path: Path) -> None:
    """--fake-gpu: engines built by spoof_export's builder against scripts/gpu_fakes.py, loaded by the SDK's
    TensorRT backend (sidecar checked first), compared with ORT CPU, timed; all marked fake_gpu."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    proc, doc = _run(tmp_path, mode="--fake-gpu")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    items = doc["items"]
    assert doc["fake_gpu"] is True
    trt = {k: v for k, v in items.items() if "tensorrt" in v.get("needs", []) and "ort_trt" not in v["needs"]}
    assert trt, "no TensorRT item was planned"
    for key, v in trt.items():
        assert v["status"] == "ok", (key, v)
        assert v["fake_gpu"] is True
    # Engine profiles: batch 1..64, up to max(4 s, the model's window) samples.
    for model, max_samples in (("default", 64000), ("wavlm-tiny", 64600)):
        for p in ("fp32", "fp16", "int8"):
            assert items[f"engine/{model}/{p}"]["engine_info"]["profile_max"] == [64, max_samples]
            assert items[f"parity/trt/{model}/{p}"]["max_abs_diff"] == 0.0
    cases = items["sidecar/detector"]["cases"]
    assert cases["other_gpu"]["raised"] == cases["other_tensorrt"]["raised"] == "EngineIncompatibleError"
    assert cases["unchanged"]["raised"] is None
    sched = items["tput/trt/wavlm-tiny/fp16/scheduler/b8"]
    assert sched["windows"] > 0
    assert 1 <= sched["largest_batch"] <= 8
    assert doc["summary"]["gpu_items_run"] == 0  # fakes are not GPU runs
