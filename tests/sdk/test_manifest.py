"""Contract B: the manifest schema, its one validating reader, the writers and engine compatibility."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from sdk_models import save_tiny_detector, tiny_graph, tiny_manifest

from spoofsdk.errors import EngineIncompatibleError, InvalidArgumentError, ModelLoadError
from spoofsdk.manifest import (
    KEY_PREFIX,
    Calibration,
    EngineInfo,
    Manifest,
    check_engine_compatibility,
    engine_sidecar_path,
    manifest_from_dict,
    read_manifest,
    read_onnx_metadata,
    write_engine_manifest,
    write_onnx_manifest,
)

ENGINE = EngineInfo(
    tensorrt_version="10.3.0",
    compute_capability="8.7",
    gpu_name="Orin",
    profile_min=(1, 400),
    profile_opt=(4, 16000),
    profile_max=(16, 16000),
    build_flags=("fp16",),
)


def test_roundtrip_onnx(tmp_path: Path) -> None:
    m = tiny_manifest(
        calibration=Calibration(scale=1.7, bias=-0.25), threshold=0.42, precision="int8", layers=6,
        backbone="wavlm-base", source_sha256="ab" * 32,
    )  # fmt: skip
    path = save_tiny_detector(tmp_path / "m.onnx", m)
    got = read_manifest(path)
    assert got.created_at  # filled in by the writer
    assert replace(got, created_at="") == m
    assert got.window_s == pytest.approx(1.0)
    assert got.hop_s == pytest.approx(0.5)
    assert got.bonafide_index == 0


def test_reader_matches_onnxruntime(tiny_model: Path) -> None:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tiny_model), providers=["CPUExecutionProvider"])
    assert read_onnx_metadata(tiny_model) == dict(sess.get_modelmeta().custom_metadata_map)
    assert all(k.startswith(KEY_PREFIX) for k in read_onnx_metadata(tiny_model))


def test_writer_keeps_foreign_metadata_and_replaces_ours(tmp_path: Path) -> None:
    model = tiny_graph()
    entry = model.metadata_props.add()
    entry.key, entry.value = "author", "someone"
    write_onnx_manifest(model, tiny_manifest(threshold=0.2))
    write_onnx_manifest(model, tiny_manifest(threshold=0.7))
    keys = [p.key for p in model.metadata_props]
    assert keys.count("spoof.threshold") == 1
    assert "author" in keys
    onnx.save(model, str(tmp_path / "m.onnx"))
    assert read_manifest(tmp_path / "m.onnx").threshold == 0.7


def test_writer_on_a_path_with_output(tmp_path: Path) -> None:
    src = tmp_path / "plain.onnx"
    onnx.save(tiny_graph(), str(src))
    with pytest.raises(ModelLoadError, match="no spoofsdk manifest"):
        read_manifest(src)
    write_onnx_manifest(src, tiny_manifest(), output=tmp_path / "out.onnx")
    assert read_manifest(tmp_path / "out.onnx").sample_rate == 16000
    with pytest.raises(InvalidArgumentError, match=r"expected a spoofsdk.manifest.Manifest"):
        write_onnx_manifest(src, {"sample_rate": 16000})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_name": "wave"}, "expected one input named 'audio', given inputs \\['wave'\\]"),
        ({"input_rank": 3}, "expected input 'audio' of rank 2 \\[batch, samples\\], given rank 3"),
        ({"n_out": 3}, "expected output 'logits' of shape \\[batch, 2\\]"),
        ({"output_name": "scores"}, "expected an output named 'logits', given \\['scores'\\]"),
    ],
)
def test_writer_rejects_a_graph_that_disagrees(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ModelLoadError, match=match):
        write_onnx_manifest(tiny_graph(**kwargs), tiny_manifest())  # type: ignore[arg-type]


def _raw(**changes: object) -> dict[str, object]:
    raw: dict[str, object] = dict(tiny_manifest().to_metadata())
    for key, value in changes.items():
        if value is None:
            raw.pop(KEY_PREFIX + key)
        else:
            raw[KEY_PREFIX + key] = value
    return raw


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"threshold": None}, "'spoof.threshold' is missing"),
        (
            {"sample_rate": None, "hop_samples": None},
            "'spoof.sample_rate' is missing \\(also missing: spoof.hop_samples",
        ),
        ({"manifest_version": "2"}, "'spoof.manifest_version': expected 1"),
        ({"sample_rate": "16k"}, "'spoof.sample_rate': expected an integer, given '16k'"),
        ({"sample_rate": "100"}, "'spoof.sample_rate': expected an integer in \\[1000, 384000\\]"),
        (
            {"hop_samples": "20000"},
            "'spoof.hop_samples': expected an integer in \\[1, window_samples=16000\\]",
        ),
        ({"hop_samples": "0"}, "'spoof.hop_samples'"),
        ({"min_samples": "16001"}, "'spoof.min_samples'"),
        ({"window_samples": "-5"}, "'spoof.window_samples': expected a positive integer"),
        ({"label_order": '["bonafide"]'}, "'spoof.label_order': expected two distinct"),
        ({"label_order": '["a", "a"]'}, "'spoof.label_order'"),
        ({"label_order": "bonafide,spoof"}, "'spoof.label_order': expected a JSON value"),
        ({"spoof_index": "2"}, "'spoof.spoof_index': expected 0 or 1"),
        ({"threshold": "1.5"}, "'spoof.threshold': expected a spoof probability in \\(0, 1\\), given 1.5"),
        ({"threshold": "nan"}, "'spoof.threshold'"),
        (
            {"precision": "fp8"},
            "'spoof.precision': expected one of \\('fp32', 'fp16', 'int8'\\), given 'fp8'",
        ),
        ({"calibration": '{"scale": -1, "bias": 0}'}, "'spoof.calibration': expected a finite scale > 0"),
        ({"calibration": '{"scale": 1}'}, "'spoof.calibration': expected a JSON object"),
        ({"calibration": '{"type": "platt", "scale": 1, "bias": 0}'}, "'spoof.calibration': expected type"),
        ({"source_sha256": "xyz"}, "'spoof.source_sha256': expected 64 lower-case hex digits"),
        ({"created_at": "yesterday"}, "'spoof.created_at': expected an ISO 8601 timestamp"),
        ({"layers": "-1"}, "'spoof.layers': expected an integer >= 0"),
    ],
)
def test_invalid_manifest_names_the_key(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ModelLoadError, match=match):
        manifest_from_dict(_raw(**changes))


def test_unknown_keys_are_ignored_within_a_version() -> None:
    m = manifest_from_dict(_raw(future_key="x"))
    assert m.sample_rate == 16000


def test_manifest_from_onnx_file_missing_key(tmp_path: Path) -> None:
    model = tiny_graph()
    for k, v in _raw(window_samples=None).items():
        e = model.metadata_props.add()
        e.key, e.value = k, str(v)
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(ModelLoadError, match=r"m.onnx: manifest key 'spoof.window_samples' is missing"):
        read_manifest(tmp_path / "m.onnx")


def test_missing_empty_truncated_and_garbage_files(tmp_path: Path, tiny_model: Path) -> None:
    with pytest.raises(ModelLoadError, match="model file not found"):
        read_manifest(tmp_path / "nope.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty \\(0 bytes\\)"):
        read_manifest(tmp_path / "empty.onnx")
    data = tiny_model.read_bytes()
    (tmp_path / "trunc.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        read_manifest(tmp_path / "trunc.onnx")
    (tmp_path / "text.onnx").write_bytes(b"this is not a model\n" * 10)
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        read_manifest(tmp_path / "text.onnx")
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(ModelLoadError, match="cannot read"):
        read_manifest(tmp_path / "dir.onnx")


def test_random_bytes_only_give_model_load_errors(tmp_path: Path, tiny_model: Path) -> None:
    rng = np.random.default_rng(0)
    data = tiny_model.read_bytes()
    path = tmp_path / "fuzz.onnx"
    for i in range(300):
        if i % 3 == 0:
            blob = rng.integers(0, 256, int(rng.integers(1, 2000)), dtype=np.uint8).tobytes()
        else:  # flip bytes of a real model: exercises the protobuf walker deeper
            arr = np.frombuffer(data, dtype=np.uint8).copy()
            idx = rng.integers(0, arr.size, int(rng.integers(1, 20)))
            arr[idx] = rng.integers(0, 256, idx.size, dtype=np.uint8)
            blob = arr[: int(rng.integers(1, arr.size + 1))].tobytes()
        path.write_bytes(blob)
        with contextlib.suppress(ModelLoadError):
            read_manifest(path)


# ---------------------------------------------------------------------------- engine sidecar
def test_engine_sidecar_roundtrip(tmp_path: Path) -> None:
    engine = tmp_path / "wavlm6.trt"
    engine.write_bytes(b"\0" * 16)
    sidecar = write_engine_manifest(engine, tiny_manifest(precision="fp16"), ENGINE)
    assert sidecar == engine_sidecar_path(engine) == tmp_path / "wavlm6.trt.json"
    got = read_manifest(engine)
    assert got.engine == ENGINE
    assert got.precision == "fp16"
    assert read_manifest(sidecar) == got
    doc = json.loads(sidecar.read_text())
    assert doc["engine"]["profile_max"] == [16, 16000]
    assert doc["label_order"] == ["bonafide", "spoof"]


def test_engine_sidecar_errors(tmp_path: Path) -> None:
    engine = tmp_path / "e.plan"
    with pytest.raises(ModelLoadError, match="engine file not found"):
        read_manifest(engine)
    engine.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=r"sidecar is missing.*NAME.trt.json"):
        read_manifest(engine)
    side = engine_sidecar_path(engine)
    side.write_text("{not json")
    with pytest.raises(ModelLoadError, match="not a readable JSON manifest"):
        read_manifest(engine)
    side.write_text("[1, 2]")
    with pytest.raises(ModelLoadError, match="expected a JSON object, given list"):
        read_manifest(engine)
    side.write_text(json.dumps(tiny_manifest().to_json_dict()))
    with pytest.raises(ModelLoadError, match="manifest key 'engine' is missing"):
        read_manifest(engine)
    doc = tiny_manifest().to_json_dict() | {"engine": {"tensorrt_version": "10.3"}}
    side.write_text(json.dumps(doc))
    with pytest.raises(ModelLoadError, match=r"'engine.compute_capability' is missing"):
        read_manifest(engine)
    bad_profile = replace(ENGINE, profile_opt=(4, 8000), profile_max=(16, 8000))
    with pytest.raises(ModelLoadError, match=r"'engine.profile_max': expected samples >= window_samples"):
        write_engine_manifest(engine, tiny_manifest(), bad_profile)
    with pytest.raises(ModelLoadError, match="min <= opt <= max"):
        replace(tiny_manifest(), engine=replace(ENGINE, profile_opt=(32, 16000)))
    with pytest.raises(ModelLoadError, match=r"'engine.compute_capability'"):
        replace(tiny_manifest(), engine=replace(ENGINE, compute_capability="sm87"))
    doc = tiny_manifest().to_json_dict() | {
        "engine": {**json.loads(json.dumps(ENGINE.__dict__)), "profile_min": [1]}
    }
    side.write_text(json.dumps(doc))
    with pytest.raises(ModelLoadError, match=r"'engine.profile_min': expected \[batch, samples\]"):
        read_manifest(engine)


@pytest.mark.parametrize(
    ("engine", "running", "ok_or_match"),
    [
        (ENGINE, ("10.3.0", "8.7"), None),
        (ENGINE, ("10.3.0.26", "8.7"), None),  # build number is not part of compatibility
        (ENGINE, ("10.4.0", "8.7"), "built for TensorRT 10.3.0, running TensorRT 10.4.0"),
        (
            ENGINE,
            ("10.3.0", "9.0"),
            r"built for compute capability 8.7 \(Orin\), running on compute capability 9.0 \(H100\)",
        ),
        (replace(ENGINE, version_compatible=True), ("10.8.0", "8.7"), None),
        (
            replace(ENGINE, version_compatible=True),
            ("10.2.0", "8.7"),
            "built for TensorRT 10.3.0 \\(version-compatible\\)",
        ),
        (replace(ENGINE, version_compatible=True), ("11.0.0", "8.7"), "running TensorRT 11.0.0"),
        (replace(ENGINE, hardware_compatibility_level="ampere_plus"), ("10.3.0", "9.0"), None),
        (
            replace(ENGINE, hardware_compatibility_level="ampere_plus"),
            ("10.3.0", "7.5"),
            "compute capability >= 8.0",
        ),
    ],
)
def test_engine_compatibility(engine: EngineInfo, running: tuple[str, str], ok_or_match: str | None) -> None:
    def check() -> None:
        check_engine_compatibility(
            engine,
            tensorrt_version=running[0],
            compute_capability=running[1],
            gpu_name="H100",
            source="e.trt",
        )

    if ok_or_match is None:
        check()
    else:
        with pytest.raises(EngineIncompatibleError, match=ok_or_match):
            check()


def test_manifest_is_frozen_and_validated_on_construction() -> None:
    m = tiny_manifest()
    with pytest.raises(AttributeError):
        m.threshold = 0.1  # type: ignore[misc]
    with pytest.raises(ModelLoadError, match=r"spoof.hop_samples"):
        Manifest(sample_rate=16000, window_samples=100, hop_samples=200, min_samples=10)


def test_runtime_imports_stay_light() -> None:
    code = (
        "import sys, spoofsdk, spoofsdk.manifest, spoofsdk.cli, spoofsdk.backends.tensorrt;"
        "bad = [m for m in ('torch', 'onnx', 'transformers', 'tensorrt', 'spoof_train', 'spoof_export') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("calibration", "threshold", "written", "is_calibrated"),
    [
        (Calibration(scale=1.0, bias=0.0, calibrated=False), 0.5, False, False),  # export without dev
        (Calibration(scale=1.7, bias=-0.2, calibrated=True), 0.3, True, True),  # fitted on dev
        # files written before the field: the exporter's placeholders read as uncalibrated, anything else
        # (a fit, or a hand-set threshold) as calibrated
        (Calibration(scale=1.0, bias=0.0), 0.5, None, False),
        (Calibration(scale=1.0, bias=0.0), 0.4, None, True),
        (Calibration(scale=0.6, bias=-0.4), 0.5, None, True),
    ],
)
def test_calibrated_flag_roundtrips_and_old_files_read_back_compatibly(
    tmp_path: Path, calibration: Calibration, threshold: float, written: bool | None, is_calibrated: bool
) -> None:
    m = tiny_manifest(calibration=calibration, threshold=threshold)
    meta = json.loads(m.to_metadata()["spoof.calibration"])
    assert meta.get("calibrated") == written
    assert ("calibrated" in meta) == (written is not None)  # old files stay byte-identical
    got = read_manifest(save_tiny_detector(tmp_path / "m.onnx", m))
    assert got.calibration.calibrated == written
    assert got.is_calibrated is is_calibrated


def test_calibrated_flag_must_be_a_boolean() -> None:
    raw = tiny_manifest().to_metadata()
    raw["spoof.calibration"] = '{"type": "logistic", "scale": 1.0, "bias": 0.0, "calibrated": "no"}'
    with pytest.raises(ModelLoadError, match="calibrated"):
        manifest_from_dict(raw)
