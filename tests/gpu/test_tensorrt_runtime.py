"""The TensorRT runtime backend on a real engine built from the tiny detector (TensorRT 10 builder)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from gpu_helpers import cuda_device, tensorrt_module

from spoofsdk import Detector
from spoofsdk.errors import EngineIncompatibleError, InvalidArgumentError
from spoofsdk.manifest import EngineInfo, engine_sidecar_path, read_manifest, write_engine_manifest

pytestmark = pytest.mark.gpu
PROFILE = ((1, 400), (4, 16000), (8, 16000))


@pytest.fixture(scope="module")
def engine(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    trt = tensorrt_module()
    cc, gpu = cuda_device()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(tiny_model.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        pytest.fail(f"TensorRT could not parse the tiny detector: {errors}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("audio", *PROFILE)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    assert serialized is not None, "TensorRT failed to build the tiny engine"
    path = tmp_path_factory.mktemp("engines") / "tiny.trt"
    path.write_bytes(bytes(serialized))
    info = EngineInfo(
        tensorrt_version=str(trt.__version__), compute_capability=cc, gpu_name=gpu,
        profile_min=PROFILE[0], profile_opt=PROFILE[1], profile_max=PROFILE[2], build_flags=(),
    )  # fmt: skip
    write_engine_manifest(path, read_manifest(tiny_model), info)
    return path


def test_engine_matches_cpu(engine: Path, tiny_model: Path, clip: np.ndarray) -> None:
    det = Detector(engine, speech_gate=False)
    assert det.backend == "tensorrt"
    assert det.max_batch == 8
    got = det.score(clip, 16000)
    ref = Detector(tiny_model, backend="cpu", speech_gate=False).score(clip, 16000)
    assert np.isfinite([w.logit for w in ref.windows]).all()  # ungated: NaN == NaN would prove nothing
    np.testing.assert_allclose([w.logit for w in got.windows], [w.logit for w in ref.windows], atol=1e-3)
    short = det.score(clip[:1000], 16000)  # a short clip is one window of its own length, inside the profile
    assert len(short.windows) == 1


def test_one_context_per_thread(engine: Path, clip: np.ndarray) -> None:
    det = Detector(engine, speech_gate=False)
    ref = det.score(clip, 16000)
    out: list[float] = []

    def work() -> None:
        for _ in range(5):
            out.append(det.score(clip, 16000).logit)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose(out, [ref.logit] * 20, atol=1e-5)
    assert len(det._backend._workers) >= 4  # type: ignore[attr-defined]
    det.close()


def test_window_outside_the_profile(engine: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="the engine accepts at most 16000 samples"):
        Detector(engine, window_s=2.0)


def test_engine_for_another_gpu_is_refused_before_deserialising(engine: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.trt"
    other.write_bytes(engine.read_bytes())
    doc = json.loads(engine_sidecar_path(engine).read_text())
    cc = doc["engine"]["compute_capability"]
    doc["engine"]["compute_capability"] = "7.2" if cc != "7.2" else "9.0"
    doc["engine"]["gpu_name"] = "some other GPU"
    engine_sidecar_path(other).write_text(json.dumps(doc))
    with pytest.raises(
        EngineIncompatibleError, match=rf"built for compute capability .* running on compute capability {cc}"
    ):
        Detector(other)
    doc["engine"]["compute_capability"] = cc
    doc["engine"]["tensorrt_version"] = "9.0.0"
    engine_sidecar_path(other).write_text(json.dumps(doc))
    with pytest.raises(EngineIncompatibleError, match=r"built for TensorRT 9\.0\.0, running TensorRT"):
        Detector(other)
