"""Backends: ORT provider options and resolution, no silent fallback, TensorRT runtime on a fake engine."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fake_tensorrt import ENGINE_BYTES, FakeEngine, make_fake_cudart, make_fake_trt
from sdk_models import reference_logits, requires_native, tiny_manifest

import spoofsdk.backends.tensorrt as trt_backend
from spoofsdk.backends import available_backends, create_backend
from spoofsdk.backends.ort import (
    OrtBackend,
    OrtOptions,
    TensorRTOptions,
    coerce_options,
    cuda_provider_options,
    tensorrt_provider_options,
)
from spoofsdk.backends.tensorrt import EngineIO, TensorRTBackend, check_profile_shape
from spoofsdk.errors import (
    BackendUnavailableError,
    EngineIncompatibleError,
    InvalidArgumentError,
    InvalidAudioError,
    ModelLoadError,
)
from spoofsdk.manifest import EngineInfo, write_engine_manifest

ENGINE_INFO = EngineInfo(
    tensorrt_version="10.3.0",
    compute_capability="8.7",
    gpu_name="Orin",
    profile_min=(1, 400),
    profile_opt=(4, 16000),
    profile_max=(8, 16000),
)


# ---------------------------------------------------------------------------- option mapping
def test_tensorrt_provider_options_mapping() -> None:
    opts = TensorRTOptions(
        engine_cache_dir="/cache", timing_cache_dir="/timing", fp16=True, int8=True,
        int8_calibration_table="calib.flatbuffers", max_batch=32, opt_batch=8, workspace_bytes=1 << 30,
        builder_optimization_level=5, dla_core=1,
    )  # fmt: skip
    got = tensorrt_provider_options(opts, tiny_manifest(), device_id=1, window_samples=16000)
    assert got == {
        "device_id": "1",
        "trt_fp16_enable": "True",
        "trt_int8_enable": "True",
        "trt_builder_optimization_level": "5",
        "trt_profile_min_shapes": "audio:1x400",
        "trt_profile_opt_shapes": "audio:8x16000",
        "trt_profile_max_shapes": "audio:32x16000",
        "trt_cuda_graph_enable": "False",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": "/cache",
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": "/timing",
        "trt_int8_calibration_table_name": "calib.flatbuffers",
        "trt_max_workspace_size": str(1 << 30),
        "trt_dla_enable": "True",
        "trt_dla_core": "1",
    }
    default = tensorrt_provider_options(TensorRTOptions(), tiny_manifest(), device_id=0, window_samples=8000)
    assert default["trt_profile_opt_shapes"] == "audio:4x8000"
    assert default["trt_profile_max_shapes"] == "audio:16x16000"  # covers the manifest window too
    assert "trt_engine_cache_path" not in default


def test_cuda_provider_options_mapping() -> None:
    got = cuda_provider_options(OrtOptions(cuda_mem_limit_bytes=2 << 30, cuda_graph=True), device_id=2)
    assert got == {
        "device_id": "2",
        "cudnn_conv_algo_search": "HEURISTIC",
        "do_copy_in_default_stream": "True",
        "enable_cuda_graph": "1",
        "gpu_mem_limit": str(2 << 30),
    }


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: OrtOptions(intra_op_num_threads=-1), "threads: expected >= 0"),
        (lambda: OrtOptions(graph_optimization_level="max"), "graph_optimization_level: expected one of"),
        (lambda: OrtOptions(cudnn_conv_algo_search="fast"), "cudnn_conv_algo_search"),
        (lambda: TensorRTOptions(opt_batch=8, max_batch=4), "opt_batch <= max_batch"),
        (lambda: TensorRTOptions(builder_optimization_level=9), "builder_optimization_level: expected 0..5"),
        (lambda: coerce_options({"fp32": True}, TensorRTOptions, "tensorrt_options"), "unknown option"),
        (
            lambda: coerce_options(3, OrtOptions, "ort_options"),
            "expected OrtOptions, a dict or None, given int",
        ),
    ],
)
def test_option_validation(factory, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgumentError, match=match):
        factory()


def test_coerce_options_accepts_dicts() -> None:
    assert coerce_options({"fp16": True}, TensorRTOptions, "x") == TensorRTOptions(fp16=True)
    assert coerce_options(None, OrtOptions, "x") == OrtOptions()


# ---------------------------------------------------------------------------- ORT backends
def test_cpu_backend_runs_and_matches_reference(tiny_model: Path) -> None:
    be = OrtBackend(
        tiny_model, tiny_manifest(), backend="cpu", ort_options=OrtOptions(intra_op_num_threads=1)
    )
    assert be.name == "cpu"
    assert be.providers[0] == "CPUExecutionProvider"
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 1600)).astype(np.float32)
    np.testing.assert_allclose(be.run(x), reference_logits(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["cuda", "tensorrt"])
def test_explicit_gpu_backend_unavailable_lists_what_is(tiny_model: Path, backend: str) -> None:
    if backend in available_backends():
        pytest.skip(f"{backend} is available here")
    with pytest.raises(BackendUnavailableError, match=r"available backends: \['cpu'\]"):
        OrtBackend(tiny_model, tiny_manifest(), backend=backend)


def test_silent_ort_fallback_is_detected(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ORT falls back to the CPU when a provider fails to initialise; an explicit 'cuda' must not."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA really is available here")
    real = ort.get_available_providers
    monkeypatch.setattr(ort, "get_available_providers", lambda: [*real(), "CUDAExecutionProvider"])
    with pytest.raises(
        BackendUnavailableError, match="requested CUDAExecutionProvider but ONNX Runtime created"
    ):
        OrtBackend(tiny_model, tiny_manifest(), backend="cuda")


def test_auto_skips_a_failing_gpu_provider(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA really is available here")
    real = ort.get_available_providers
    monkeypatch.setattr(ort, "get_available_providers", lambda: [*real(), "CUDAExecutionProvider"])
    with caplog.at_level(logging.INFO, logger="spoofsdk"):
        be = create_backend(
            tiny_model, tiny_manifest(), backend="auto", device_id=0, window_samples=16000,
            ort_options=OrtOptions(intra_op_num_threads=1), tensorrt_options=TensorRTOptions(),
        )  # fmt: skip
    assert be.name == "cpu"
    assert "skipped 'cuda'" in caplog.text
    assert "resolved to 'cpu'" in caplog.text


def test_unknown_backend_and_engine_on_cpu(tiny_model: Path, tmp_path: Path) -> None:
    kw = {
        "device_id": 0,
        "window_samples": 16000,
        "ort_options": OrtOptions(),
        "tensorrt_options": TensorRTOptions(),
    }
    with pytest.raises(
        InvalidArgumentError,
        match=r"backend: expected one of \('auto', 'cpu', 'cuda', 'tensorrt', 'triton'\)",
    ):
        create_backend(tiny_model, tiny_manifest(), backend="gpu", **kw)  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailableError, match="is a TensorRT engine, which runs only on backend"):
        create_backend(tmp_path / "m.trt", tiny_manifest(), backend="cpu", **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- TensorRT runtime (fake engine)
@pytest.fixture
def engine_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.trt"
    path.write_bytes(ENGINE_BYTES)
    write_engine_manifest(path, tiny_manifest(precision="fp16"), ENGINE_INFO)
    return path


def _install(monkeypatch: pytest.MonkeyPatch, trt: SimpleNamespace, cudart: SimpleNamespace) -> None:
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(trt_backend, "import_cudart", lambda: cudart)


def _manifest_of(path: Path):  # type: ignore[no-untyped-def]
    from spoofsdk.manifest import read_manifest

    return read_manifest(path)


def test_tensorrt_runtime_runs_with_per_thread_contexts(
    engine_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trt, cudart = make_fake_trt(), make_fake_cudart()
    _install(monkeypatch, trt, cudart)
    be = TensorRTBackend(engine_file, _manifest_of(engine_file))
    assert be.name == "tensorrt"
    assert be.limits.max_batch == 8
    assert be.limits.min_samples == 400
    assert "Orin (sm 8.7)" in be.detail
    rng = np.random.default_rng(1)
    results: dict[int, np.ndarray] = {}
    inputs = {i: rng.uniform(-0.5, 0.5, (1 + i % 8, 1000 + 100 * i)).astype(np.float32) for i in range(6)}

    def work(i: int) -> None:
        for _ in range(3):
            results[i] = be.run(inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, x in inputs.items():
        np.testing.assert_allclose(results[i], reference_logits(x), rtol=1e-5, atol=1e-5)
    engine = trt.state.engine
    assert len(engine.contexts) == 6  # one execution context per worker thread
    assert all(c.executions == 3 for c in engine.contexts)
    be.close()
    assert cudart.ops.free == cudart.ops.malloc == 6 * 4
    assert cudart.ops.streams_destroyed == 6


def test_tensorrt_profile_shapes_are_enforced(engine_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, make_fake_trt(), make_fake_cudart())
    be = TensorRTBackend(engine_file, _manifest_of(engine_file))
    with pytest.raises(InvalidAudioError, match=r"expected windows of 400\.\.16000 samples .* given 300"):
        be.run(np.zeros((1, 300), np.float32))
    with pytest.raises(InvalidAudioError, match=r"expected windows of 400\.\.16000 samples .* given 16001"):
        be.run(np.zeros((1, 16001), np.float32))
    with pytest.raises(InvalidAudioError, match=r"expected a batch of 1\.\.8 windows .* given 9"):
        be.run(np.zeros((9, 1000), np.float32))
    with pytest.raises(InvalidAudioError, match="given 0"):
        check_profile_shape((0, 1000), (1, 400), (8, 16000))


@pytest.mark.parametrize(
    ("trt_version", "cc", "match"),
    [
        ("10.4.1", (8, 7), r"built for TensorRT 10\.3\.0, running TensorRT 10\.4\.1"),
        (
            "10.3.0",
            (9, 0),
            r"built for compute capability 8\.7 \(Orin\), running on compute capability 9\.0 \(NVIDIA H100",
        ),
    ],
)
def test_incompatible_engine_is_rejected_before_deserialising(
    engine_file: Path, monkeypatch: pytest.MonkeyPatch, trt_version: str, cc: tuple[int, int], match: str
) -> None:
    trt = make_fake_trt(trt_version)
    _install(monkeypatch, trt, make_fake_cudart(cc=cc, name=b"NVIDIA H100 80GB HBM3"))
    with pytest.raises(EngineIncompatibleError, match=match):
        TensorRTBackend(engine_file, _manifest_of(engine_file))
    assert trt.state.deserialized == 0


def test_tensorrt_engine_errors(engine_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = _manifest_of(engine_file)
    _install(monkeypatch, make_fake_trt(), make_fake_cudart())
    engine_file.write_bytes(b"corrupt")
    with pytest.raises(ModelLoadError, match="could not deserialise the engine"):
        TensorRTBackend(engine_file, m)
    engine_file.write_bytes(ENGINE_BYTES)
    _install(
        monkeypatch, make_fake_trt(engine=FakeEngine(names=("input_values", "logits"))), make_fake_cudart()
    )
    with pytest.raises(
        ModelLoadError, match=r"expected one input named 'audio', given inputs \['input_values'\]"
    ):
        TensorRTBackend(engine_file, m)
    _install(monkeypatch, make_fake_trt(engine=FakeEngine(dtype="HALF")), make_fake_cudart())
    with pytest.raises(ModelLoadError, match="expected tensor 'audio' of type FLOAT"):
        TensorRTBackend(engine_file, m)
    other = FakeEngine(profile=((1, 400), (4, 16000), (4, 16000)))
    _install(monkeypatch, make_fake_trt(engine=other), make_fake_cudart())
    with pytest.raises(ModelLoadError, match="the sidecar disagrees with the engine"):
        TensorRTBackend(engine_file, m)
    _install(monkeypatch, make_fake_trt(), make_fake_cudart(devices=1))
    with pytest.raises(BackendUnavailableError, match=r"expected a CUDA device id in \[0, 0\], given 3"):
        TensorRTBackend(engine_file, m, device_id=3)
    _install(monkeypatch, make_fake_trt(), make_fake_cudart(devices=0))
    with pytest.raises(BackendUnavailableError, match="no CUDA device is visible"):
        TensorRTBackend(engine_file, m)


def test_engine_io_from_engine() -> None:
    trt = make_fake_trt()
    io = EngineIO.from_engine(FakeEngine(), trt)
    assert io == EngineIO("audio", "logits", (1, 400), (4, 16000), (8, 16000))


def test_tensorrt_missing_here_is_a_typed_error(engine_file: Path) -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailableError, match=r"pip install 'spoofsdk\[tensorrt\]'"):
            TensorRTBackend(engine_file, _manifest_of(engine_file))
    else:
        pytest.skip("tensorrt is installed here")


@requires_native
def test_detector_on_the_fake_tensorrt_runtime(
    engine_file: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole Detector path over the TensorRT backend: same windows and scores as ORT CPU."""
    from spoofsdk import Detector

    _install(monkeypatch, make_fake_trt(), make_fake_cudart())
    det = Detector(engine_file)
    assert det.backend == "tensorrt"
    assert det.max_batch == 8
    x = (0.3 * np.sin(np.arange(44000) / 7.0)).astype(np.float32)
    got = det.score(x, 16000)
    ref = Detector(tiny_model, backend="cpu", num_threads=1).score(x, 16000)
    assert [w.start_s for w in got.windows] == [w.start_s for w in ref.windows]
    np.testing.assert_allclose([w.logit for w in got.windows], [w.logit for w in ref.windows], atol=1e-5)
    with pytest.raises(InvalidArgumentError, match=r"the engine accepts at most 16000 samples"):
        Detector(engine_file, window_s=2.0)
    with pytest.raises(BackendUnavailableError, match="runs only on backend 'tensorrt'"):
        Detector(engine_file, backend="cuda")
