"""TensorRT: offline buildability checks (real onnx graphs) and the engine builder against a fake
``tensorrt`` module that records every call (no GPU or TensorRT here; tests/gpu builds real engines)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import TensorProto, helper

from spoof_export import tensorrt as trt_mod
from spoof_export.errors import EngineBuildError, TensorRTCompatibilityError, ToolchainUnavailableError
from spoof_export.tensorrt import build_engine, check_tensorrt_compatibility, import_tensorrt

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import gpu_fakes  # TensorRT 10 enums, IHostMemory, ParserError (checked in tests/gpu)


def _graph(
    nodes: list[Any], *, opset: int = 17, extra_opsets: tuple[tuple[str, int], ...] = ()
) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])
    g = helper.make_graph(nodes, "g", [x], [y])
    ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    return helper.make_model(g, opset_imports=ops, ir_version=9)


def test_exported_fp32_graph_passes(tiny_onnx):
    report = check_tensorrt_compatibility(tiny_onnx)
    assert report["ok"]
    assert report["opset"] == 17
    assert report["blockers"] == []
    assert report["op_counts"]["LayerNormalization"] > 0


def test_opset_outside_parser_range_is_a_blocker():
    model = _graph([helper.make_node("Identity", ["audio"], ["logits"])], opset=21)
    with pytest.raises(
        TensorRTCompatibilityError, match=r"opset 21: TensorRT 10's ONNX parser accepts 9\.\.20"
    ):
        check_tensorrt_compatibility(model)


def test_unsupported_and_custom_domain_ops_are_blockers():
    nodes = [
        helper.make_node("Unique", ["audio"], ["u"], name="uniq"),
        helper.make_node("FusedMatMul", ["u", "u"], ["logits"], name="fused", domain="com.microsoft"),
    ]
    report = check_tensorrt_compatibility(_graph(nodes, extra_opsets=(("com.microsoft", 1),)), strict=False)
    assert not report["ok"]
    text = " | ".join(report["blockers"])
    assert "custom operator domain 'com.microsoft'" in text
    assert "'uniq': Unique is not supported by TensorRT's ONNX parser" in text
    assert "com.microsoft::FusedMatMul is not an ONNX standard op" in text


def test_data_dependent_control_flow_is_a_blocker():
    body_in = helper.make_tensor_value_info("i", TensorProto.INT64, [])
    body_cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    body_out = helper.make_tensor_value_info("c_out", TensorProto.BOOL, [])
    body = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c_out"])], "body", [body_in, body_cond], [body_out]
    )
    nodes = [
        helper.make_node("ReduceMax", ["audio"], ["m"], keepdims=0),
        helper.make_node("Cast", ["m"], ["trip"], to=TensorProto.INT64),
        helper.make_node(
            "Constant", [], ["cond"], value=helper.make_tensor("v", TensorProto.BOOL, [], [True])
        ),
        helper.make_node("Loop", ["trip", "cond"], [], body=body, name="loop"),
        helper.make_node("Identity", ["audio"], ["logits"]),
    ]
    with pytest.raises(TensorRTCompatibilityError, match=r"'loop': Loop \(control flow on tensor values"):
        check_tensorrt_compatibility(_graph(nodes))


def test_conv_weights_must_be_initializers():
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 1, 3])
    x = helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])
    g = helper.make_graph([helper.make_node("Conv", ["audio", "w"], ["logits"], name="c")], "g", [x, w], [y])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    report = check_tensorrt_compatibility(model, strict=False)
    assert any("'c': Conv weights are not an initializer" in b for b in report["blockers"])
    assert any("contract B expects ['audio']" in w for w in report["warnings"])


# ---- the builder against a fake TensorRT -------------------------------------------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []


def fake_tensorrt(rec: _Recorder, *, parse_ok: bool = True, build_ok: bool = True, version: str = "10.3.0"):
    m = types.ModuleType("tensorrt")
    m.__version__ = version  # type: ignore[attr-defined]

    class Logger:
        WARNING = gpu_fakes.Severity.WARNING

        def __init__(self, level: int) -> None:
            rec.calls.append(("Logger", level))

    class Input:
        name = "audio"

    class Network:
        num_inputs = 1

        def get_input(self, i: int) -> Input:
            return Input()

    class Profile:
        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
            rec.calls.append(("set_shape", name, lo, opt, hi))

    class Cache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return b"timing-cache:" + self.data

    class Config:
        hardware_compatibility_level = None

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            rec.calls.append(("workspace", pool, size))

        def add_optimization_profile(self, p: Profile) -> None:
            rec.calls.append(("add_profile",))

        def set_flag(self, flag: str) -> None:
            rec.calls.append(("set_flag", flag))

        def create_timing_cache(self, data: bytes) -> Cache:
            rec.calls.append(("create_timing_cache", bytes(data)))
            return Cache(bytes(data))

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> None:
            self._cache = cache
            rec.calls.append(("set_timing_cache", ignore_mismatch))

        def get_timing_cache(self) -> Cache:
            return self._cache

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, flags: int) -> Network:
            rec.calls.append(("create_network", flags))
            return Network()

        def create_builder_config(self) -> Config:
            self.config = Config()
            return self.config

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> gpu_fakes.IHostMemory | None:
            rec.calls.append(("build", config.hardware_compatibility_level))
            return gpu_fakes.IHostMemory(b"ENGINE") if build_ok else None

    class OnnxParser:
        num_errors = 0 if parse_ok else 2

        def __init__(self, network: Network, logger: Logger) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            onnx.checker.check_model(onnx.load(path))  # the real file reaches the parser
            rec.calls.append(("parse", Path(path).name))
            return parse_ok

        def get_error(self, i: int) -> gpu_fakes.ParserError:
            return gpu_fakes.ParserError(f"parser error {i}")

    m.Logger = Logger  # type: ignore[attr-defined]
    m.Builder = Builder  # type: ignore[attr-defined]
    m.OnnxParser = OnnxParser  # type: ignore[attr-defined]
    for name, value in gpu_fakes.ENUMS.items():
        setattr(m, name, value)
    return m


def fake_cudart(devices: int):
    prop = types.SimpleNamespace(name=b"NVIDIA Orin (fake)", major=8, minor=7)
    return types.SimpleNamespace(
        cudaGetDeviceCount=lambda: (0, devices),
        cudaGetDeviceProperties=lambda i: (0, prop),
    )


def _build(tmp_path: Path, onnx_path: Path, **kw: Any):
    defaults = {
        "profile_min": (1, 16000),
        "profile_opt": (4, 64600),
        "profile_max": (16, 160000),
        "workspace_bytes": 1 << 30,
    }
    return build_engine(onnx_path, tmp_path / "m.trt", **(defaults | kw))


def test_build_engine_drives_the_tensorrt10_api(tiny_onnx, tmp_path, monkeypatch):
    rec = _Recorder()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(rec))
    monkeypatch.setattr(trt_mod, "_cudart", lambda: fake_cudart(1))
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    built = _build(tmp_path, tiny_onnx, timing_cache=cache, hardware_compatible=True, version_compatible=True)
    assert (tmp_path / "m.trt").read_bytes() == b"ENGINE"
    assert cache.read_bytes() == b"timing-cache:old"  # read before, written after the build
    assert ("create_network", 1 << 1) in rec.calls  # STRONGLY_TYPED network (TensorRT 10: flag 1)
    assert ("parse", tiny_onnx.name) in rec.calls
    assert ("workspace", gpu_fakes.MemoryPoolType.WORKSPACE, 1 << 30) in rec.calls
    assert ("set_shape", "audio", (1, 16000), (4, 64600), (16, 160000)) in rec.calls
    assert ("create_timing_cache", b"old") in rec.calls
    assert ("set_flag", gpu_fakes.BuilderFlag.VERSION_COMPATIBLE) in rec.calls
    assert ("build", gpu_fakes.HardwareCompatibilityLevel.AMPERE_PLUS) in rec.calls
    assert built.compute_capability == "8.7"
    assert built.tensorrt_version == "10.3.0"
    assert built.build_flags == (
        "strongly_typed",
        "hardware_compatibility_level=ampere_plus",
        "version_compatible",
    )


def test_engine_manifest_sidecar_is_written_by_the_sdk_writer(tiny_onnx, tmp_path, monkeypatch):
    from spoofsdk.manifest import Manifest, read_manifest, write_engine_manifest

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(_Recorder()))
    monkeypatch.setattr(trt_mod, "_cudart", lambda: fake_cudart(1))
    built = _build(tmp_path, tiny_onnx)
    m = Manifest(
        sample_rate=16000, window_samples=64600, hop_samples=32300, min_samples=400, precision="int8"
    )
    write_engine_manifest(built.path, m, built.engine_info())
    back = read_manifest(built.path)
    assert back.engine is not None
    assert back.engine.compute_capability == "8.7"
    assert back.engine.profile_max == (16, 160000)


def test_no_tensorrt_is_a_toolchain_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    with pytest.raises(ToolchainUnavailableError, match="engine build needs TensorRT 10"):
        import_tensorrt()


def test_old_tensorrt_is_a_toolchain_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(_Recorder(), version="8.6.1"))
    with pytest.raises(
        ToolchainUnavailableError, match=r"TensorRT >= 10 \(strongly typed networks\), given 8.6.1"
    ):
        import_tensorrt()


def test_no_gpu_stops_before_the_builder(tiny_onnx, tmp_path, monkeypatch):
    rec = _Recorder()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(rec))
    monkeypatch.setattr(trt_mod, "_cudart", lambda: fake_cudart(0))
    with pytest.raises(ToolchainUnavailableError, match="needs an NVIDIA GPU: no CUDA device found"):
        _build(tmp_path, tiny_onnx)
    assert not any(c[0] == "create_network" for c in rec.calls)
    assert not (tmp_path / "m.trt").exists()


def test_no_cuda_python_is_a_toolchain_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    with pytest.raises(ToolchainUnavailableError, match="needs cuda-python"):
        trt_mod.gpu_info(0)


def test_parser_and_build_failures_are_engine_build_errors(tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setattr(trt_mod, "_cudart", lambda: fake_cudart(1))
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(_Recorder(), parse_ok=False))
    with pytest.raises(EngineBuildError, match=r"rejected .*: 2 error\(s\): parser error 0; parser error 1"):
        _build(tmp_path, tiny_onnx)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(_Recorder(), build_ok=False))
    with pytest.raises(EngineBuildError, match="TensorRT failed to build an engine"):
        _build(tmp_path, tiny_onnx)
    assert not (tmp_path / "m.trt").exists()


# ---- the parity runner is the SDK's TensorRT backend ------------------------------------------------------
def _install_gpu_fakes(monkeypatch: pytest.MonkeyPatch) -> Any:
    """scripts/gpu_fakes.py's TensorRT builder + runtime and cuda-python, in sys.modules for this test only:
    the fake engine "executes" the ONNX file it was built from with ONNX Runtime."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "scripts"))
    import gpu_fakes

    runtime = gpu_fakes.make_cudart()
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = runtime  # type: ignore[attr-defined]
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings  # type: ignore[attr-defined]
    for name, module in {
        "cuda": cuda,
        "cuda.bindings": bindings,
        "cuda.bindings.runtime": runtime,
        "tensorrt": gpu_fakes.make_tensorrt(),
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    return gpu_fakes


def test_run_engine_is_the_sdks_tensorrt_backend_with_the_sidecar(tiny_onnx, tmp_path, monkeypatch):
    import numpy as np
    import onnxruntime as ort

    from spoofsdk.backends import tensorrt as sdk_trt
    from spoofsdk.manifest import Manifest, write_engine_manifest

    fakes = _install_gpu_fakes(monkeypatch)
    built = _build(tmp_path, tiny_onnx)
    gpu_name, (major, minor) = fakes.FAKE_GPU
    assert (built.gpu_name, built.compute_capability) == (gpu_name, f"{major}.{minor}")
    # one GPU identity: the builder records what the SDK's runtime reads
    assert sdk_trt.running_gpu(sdk_trt.import_cudart(), 0) == (built.compute_capability, built.gpu_name)
    m = Manifest(sample_rate=16000, window_samples=16000, hop_samples=8000, min_samples=400)
    engine = built.path
    with pytest.raises(
        EngineBuildError, match=r"the SDK's TensorRT backend cannot load it: .*sidecar is missing"
    ):
        trt_mod.run_engine(engine, np.zeros((1, 16000), np.float32))
    write_engine_manifest(engine, m, built.engine_info())
    loaded: list[str] = []
    real = sdk_trt.TensorRTBackend

    def spy(path: Any, manifest: Manifest, **kw: Any) -> Any:
        loaded.append(Path(path).name)
        assert manifest.engine == built.engine_info()
        return real(path, manifest, **kw)

    monkeypatch.setattr(sdk_trt, "TensorRTBackend", spy)
    x = (0.1 * np.random.default_rng(3).standard_normal((3, 16000))).astype(np.float32)
    got = trt_mod.run_engine(engine, x)
    want = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"]).run(
        ["logits"], {"audio": x}
    )
    np.testing.assert_array_equal(got, want[0])
    assert loaded == ["m.trt"]
    # the SDK's profile check: a batch outside the engine's profile is the engine's failure, typed
    with pytest.raises(EngineBuildError, match=r"failed on a batch of shape \(1, 200000\): .*160000 samples"):
        trt_mod.run_engine(engine, np.zeros((1, 200000), np.float32))


def test_run_engine_without_tensorrt_or_gpu_is_a_toolchain_error(tiny_onnx, tmp_path, monkeypatch):
    import numpy as np

    from spoofsdk.manifest import Manifest, write_engine_manifest

    _install_gpu_fakes(monkeypatch)
    built = _build(tmp_path, tiny_onnx)
    m = Manifest(sample_rate=16000, window_samples=16000, hop_samples=8000, min_samples=400)
    write_engine_manifest(built.path, m, built.engine_info())
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(
        ToolchainUnavailableError, match=r"running the engine .*needs the TensorRT Python package"
    ):
        trt_mod.run_engine(built.path, np.zeros((1, 16000), np.float32))


def test_gpu_info_is_the_sdks_gpu_identity(monkeypatch):
    from spoofsdk.backends import tensorrt as sdk_trt
    from spoofsdk.errors import BackendUnavailableError

    monkeypatch.setattr(trt_mod, "_cudart", lambda: fake_cudart(2))
    assert trt_mod.gpu_info(1) == {"name": "NVIDIA Orin (fake)", "compute_capability": "8.7"}
    assert sdk_trt.running_gpu(fake_cudart(2), 1) == ("8.7", "NVIDIA Orin (fake)")
    with pytest.raises(
        ToolchainUnavailableError, match=r"engine build: expected a CUDA device id in \[0, 1\], given 2"
    ):
        trt_mod.gpu_info(2)
    with pytest.raises(
        BackendUnavailableError, match="backend 'tensorrt' needs an NVIDIA GPU: no CUDA device found"
    ):
        sdk_trt.running_gpu(fake_cudart(0), 0)
