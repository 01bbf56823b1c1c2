"""ONNX Runtime on the GPU: CUDA EP and TensorRT EP give the CPU's scores, report their backend, batch."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from gpu_helpers import skip_unless_provider

from spoofsdk import BatchScheduler, Detector

pytestmark = pytest.mark.gpu


def _cpu_reference(model: Path, clip: np.ndarray):  # type: ignore[no-untyped-def]
    # Ungated: the test clip is a tone, which the speech gate marks no_speech (NaN logits would compare
    # equal and prove nothing).
    ref = Detector(model, backend="cpu", speech_gate=False).score(clip, 16000)
    assert np.isfinite([w.logit for w in ref.windows]).all()
    return ref


def test_cuda_ep_matches_cpu(tiny_model: Path, clip: np.ndarray) -> None:
    skip_unless_provider("CUDAExecutionProvider")
    det = Detector(tiny_model, backend="cuda", device_id=0, speech_gate=False)
    assert det.backend == "cuda"
    assert det._backend.providers[0] == "CUDAExecutionProvider"  # type: ignore[attr-defined]
    got, ref = det.score(clip, 16000), _cpu_reference(tiny_model, clip)
    np.testing.assert_allclose([w.logit for w in got.windows], [w.logit for w in ref.windows], atol=1e-4)


def test_cuda_ep_threads_and_scheduler(tiny_model: Path, clip: np.ndarray) -> None:
    skip_unless_provider("CUDAExecutionProvider")
    det = Detector(tiny_model, backend="cuda", speech_gate=False)
    ref = det.score(clip, 16000)
    results: list[object] = []

    def work() -> None:
        for _ in range(5):
            results.append(det.score(clip, 16000))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 40
    for r in results:
        np.testing.assert_allclose(r.logit, ref.logit, atol=1e-5)  # type: ignore[attr-defined]
    with BatchScheduler(det, max_batch=8) as sched:
        sessions = [sched.stream(16000, encoding="float32") for _ in range(8)]
        for s in sessions:
            s.push(clip)
        for s in sessions:
            np.testing.assert_allclose(s.flush().logit, ref.logit, atol=1e-4)
            s.close()
        assert sched.stats().largest_batch >= 1


@pytest.mark.parametrize(("fp16", "atol"), [(False, 1e-3), (True, 5e-2)])
def test_tensorrt_ep_with_engine_cache(tiny_model: Path, clip: np.ndarray, tmp_path: Path, fp16: bool,
                                       atol: float) -> None:  # fmt: skip
    skip_unless_provider("TensorrtExecutionProvider")
    cache = tmp_path / "trt-cache"
    opts = {"engine_cache_dir": str(cache), "fp16": fp16, "max_batch": 8, "opt_batch": 2}
    det = Detector(tiny_model, backend="tensorrt", tensorrt_options=opts, speech_gate=False)
    assert det.backend == "tensorrt"
    got, ref = det.score(clip, 16000), _cpu_reference(tiny_model, clip)
    np.testing.assert_allclose([w.logit for w in got.windows], [w.logit for w in ref.windows], atol=atol)
    assert any(cache.iterdir()), "the TensorRT EP wrote no engine to its cache"
    again = Detector(
        tiny_model, backend="tensorrt", tensorrt_options=opts, speech_gate=False
    )  # served from the cache
    np.testing.assert_allclose(again.score(clip, 16000).logit, got.logit, atol=1e-6)


def test_auto_prefers_the_gpu(tiny_model: Path) -> None:
    from spoofsdk import available_backends

    best = available_backends()[0]
    if best == "cpu":
        pytest.skip(
            "no GPU execution provider in this onnxruntime; 'auto' resolves to 'cpu' (tested in tests/sdk)"
        )
    det = Detector(tiny_model)
    assert det.backend in ("tensorrt", "cuda")
    assert det.backend == best or best == "tensorrt"  # TensorRT EP may fail to build and fall to CUDA, logged
