"""The TensorRT fakes against the real ``tensorrt`` module: a contract test that runs wherever it imports.

Three fakes stand in for TensorRT 10 where there is no GPU: scripts/gpu_fakes.py (the GPU kit's rehearsal
and the export parity test), tests/sdk/fake_tensorrt.py (the SDK's TensorRT backend) and the recording fake
of tests/export/test_tensorrt.py (the engine builder). Every enum member they use must have the real value
(``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` is 1 in TensorRT 10), every method or property they
offer must exist on the real class, and what they return must be of the real return type
(``build_serialized_network`` gives an ``IHostMemory``, not ``bytes``; ``get_error`` an ``IParserError``
object, not ``str``). Without ``tensorrt`` only the agreement of the three fakes is checked.
"""

from __future__ import annotations

import enum
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests" / "sdk"))

import gpu_fakes  # noqa: E402

# Fake state and test knobs, not TensorRT API (the recorded ONNX path, profiles, the fake engine's settings).
FAKE_ONLY = {
    "onnx_path",
    "profiles",
    "shapes",
    "contexts",
    "names",
    "dtype",
    "profile",
    "addr",
    "shape",
    "thread",
    "executions",
    "engine",
    "session",
    "data",
    "level",
    "severity",
    "network",
    "config",
}


def _export_fake() -> ModuleType:
    """tests/export/test_tensorrt.py's recording fake ``tensorrt`` module."""
    spec = importlib.util.spec_from_file_location(
        "_export_test_tensorrt", ROOT / "tests" / "export" / "test_tensorrt.py"
    )
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.fake_tensorrt(mod._Recorder())  # type: ignore[no-any-return]


def _sdk_fake() -> Any:
    from fake_tensorrt import make_fake_trt

    return make_fake_trt()


def _fakes() -> dict[str, Any]:
    pytest.importorskip("onnx")
    return {"gpu_fakes": gpu_fakes.make_tensorrt(), "sdk": _sdk_fake(), "export": _export_fake()}


def _enum_classes(fake: Any) -> dict[str, type[enum.Enum]]:
    return {
        name: value
        for name, value in vars(fake).items()
        if isinstance(value, type) and issubclass(value, enum.Enum)
    }


def test_the_three_fakes_agree() -> None:
    """Offline: every fake's enums are gpu_fakes' (so the contract below covers them) and its Logger levels
    are TensorRT's severities."""
    for where, fake in _fakes().items():
        enums = _enum_classes(fake)
        assert enums, where
        for name, cls in enums.items():
            assert cls is gpu_fakes.ENUMS[name], (where, name)
        for level in ("ERROR", "WARNING"):
            if hasattr(fake.Logger, level):
                assert getattr(fake.Logger, level) == gpu_fakes.Severity[level], (where, level)
    assert int(gpu_fakes.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 1
    mem = gpu_fakes.IHostMemory(b"abc")
    assert not isinstance(mem, (bytes, bytearray))
    assert bytes(mem) == b"abc"
    assert mem.nbytes == 3
    with pytest.raises(TypeError):
        len(mem)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trt() -> Any:
    return pytest.importorskip(
        "tensorrt", reason="the contract test of the TensorRT fakes needs the real tensorrt package"
    )


def test_enum_values_are_tensorrts(trt: Any) -> None:
    for name, cls in gpu_fakes.ENUMS.items():
        real = getattr(trt, name)
        for member in cls:
            got = getattr(real, member.name)
            assert int(got) == int(member), f"{name}.{member.name}: TensorRT {int(got)}, fake {int(member)}"
            assert str(got).rsplit(".", 1)[-1] == member.name
    for member in gpu_fakes.Severity:
        assert int(getattr(trt.Logger, member.name)) == int(member), member.name
        assert int(getattr(trt.ILogger.Severity, member.name)) == int(member), member.name


def _public(obj: Any, *, keep: frozenset[str] = frozenset()) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_") and (n in keep or n not in FAKE_ONLY)}


def _real_parser_error(trt: Any) -> Any:
    return getattr(trt, "IParserError", None) or trt.ParserError


def _check_class(fake_obj: Any, real_cls: Any, where: str, *, keep: frozenset[str] = frozenset()) -> None:
    missing = sorted(n for n in _public(fake_obj, keep=keep) if not hasattr(real_cls, n))
    assert not missing, f"{where}: not on tensorrt.{real_cls.__name__}: {missing}"


def test_fake_classes_offer_only_real_api(trt: Any, tmp_path: Path) -> None:
    onnx_file = tmp_path / "m.onnx"
    _write_identity_onnx(onnx_file)
    for where, fake in _fakes().items():
        logger = fake.Logger(2)
        _check_class(logger, trt.Logger, f"{where} Logger")
        if hasattr(fake, "Runtime"):
            _check_class(fake.Runtime(logger), trt.Runtime, f"{where} Runtime")
        if not hasattr(fake, "Builder"):
            continue
        builder = fake.Builder(logger)
        _check_class(builder, trt.Builder, f"{where} Builder")
        network = builder.create_network(1 << int(fake.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        _check_class(network, trt.INetworkDefinition, f"{where} network")
        config = builder.create_builder_config()
        _check_class(config, trt.IBuilderConfig, f"{where} builder config")
        profile = builder.create_optimization_profile()
        _check_class(profile, trt.IOptimizationProfile, f"{where} profile")
        cache = config.create_timing_cache(b"")
        _check_class(cache, trt.ITimingCache, f"{where} timing cache")
        parser = fake.OnnxParser(network, logger)
        _check_class(parser, trt.OnnxParser, f"{where} OnnxParser")
        error = parser.get_error(0)
        assert not isinstance(error, str), f"{where}: get_error returns str, TensorRT an IParserError"
        _check_class(error, _real_parser_error(trt), f"{where} parser error")
        assert parser.parse_from_file(str(onnx_file))
        profile.set_shape("audio", (1, 400), (1, 16000), (1, 16000))
        config.add_optimization_profile(profile)
        built = builder.build_serialized_network(network, config)
        assert not isinstance(built, (bytes, bytearray)), f"{where}: bytes, TensorRT an IHostMemory"
        _check_class(built, trt.IHostMemory, f"{where} serialized network", keep=frozenset({"dtype"}))


def test_fake_engines_offer_only_real_api(trt: Any) -> None:
    from fake_tensorrt import FakeEngine

    engines = {"sdk": FakeEngine(), "gpu_fakes": gpu_fakes._Engine("m.onnx", [[1, 400], [1, 400], [1, 400]])}
    for where, engine in engines.items():
        _check_class(engine, trt.ICudaEngine, f"{where} engine")
        assert isinstance(engine.get_tensor_mode("audio"), gpu_fakes.TensorIOMode)
        assert isinstance(engine.get_tensor_dtype("audio"), gpu_fakes.DataType)
        context = engine.create_execution_context()
        _check_class(context, trt.IExecutionContext, f"{where} execution context")


@pytest.mark.parametrize(
    ("cls", "method", "returns"),
    [
        ("Builder", "build_serialized_network", "IHostMemory"),
        ("OnnxParser", "get_error", "ParserError"),
        ("ICudaEngine", "get_tensor_mode", "TensorIOMode"),
        ("ICudaEngine", "get_tensor_dtype", "DataType"),
    ],
)
def test_real_return_types_are_what_the_fakes_return(trt: Any, cls: str, method: str, returns: str) -> None:
    """pybind11 writes the return type into each method's signature line: the fakes' return types."""
    doc = inspect.getdoc(getattr(getattr(trt, cls), method)) or ""
    signature = doc.splitlines()[0] if doc else ""
    assert "->" in signature, signature
    assert returns in signature.split("->", 1)[1], signature


def _write_identity_onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "samples"])
    g = helper.make_graph([helper.make_node("Identity", ["audio"], ["logits"])], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
