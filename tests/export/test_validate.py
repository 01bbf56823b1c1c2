"""Stage comparisons, the spawned ONNX Runtime runner, its profile parser, and Triton config rendering."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spoof_export.errors import ExportArgumentError, ShapeError, ValidationError
from spoof_export.triton import render_config, write_triton_repository
from spoof_export.validate import OrtJob, compare_outputs, parse_ort_profile, run_ort_jobs, score_agreement


def test_compare_outputs_reports_and_enforces_the_tolerance():
    ref = np.array([[0.0, 1.0], [2.0, 3.0]], dtype=np.float32)
    ok = compare_outputs(ref, ref + 1e-4, stage="a->b", atol=1e-3)
    assert ok["ok"]
    assert ok["max_abs_diff"]["logits"] == pytest.approx(1e-4, rel=1e-3)
    with pytest.raises(
        ValidationError, match=r"a->b: output 'logits' differs by up to 0\.5, expected <= atol 0\.001"
    ) as e:
        compare_outputs(ref, ref + np.array([[0, 0.5], [0, 0]], dtype=np.float32), stage="a->b", atol=1e-3)
    assert e.value.diffs == {"logits": pytest.approx(0.5)}
    assert e.value.exit_code == 3
    with pytest.raises(ShapeError, match=r"expected output 'logits' of shape \(2, 2\), given \(2, 3\)"):
        compare_outputs(ref, np.zeros((2, 3), np.float32), stage="a->b", atol=1.0)
    with pytest.raises(ValidationError, match="non-finite"):
        compare_outputs(ref, ref * np.nan, stage="a->b", atol=1.0)


def test_score_agreement_counts_decisions_at_the_threshold():
    a = np.array([[0.0, 1.0], [0.0, -1.0], [0.0, 2.0]], dtype=np.float32)  # spoof logit diffs 1, -1, 2
    b = np.array([[0.0, 0.5], [0.0, 0.2], [0.0, 3.0]], dtype=np.float32)  # 0.5, 0.2, 3
    r = score_agreement(a, b, spoof_index=1, threshold_logit=0.0)
    assert r["n"] == 3
    assert r["decision_agreement"] == pytest.approx(2 / 3)
    assert r["max_abs_score_diff"] == pytest.approx(1.2)


def test_spawned_runner_runs_batches_and_times_windows(tiny_onnx, calib_windows):
    (res,) = run_ort_jobs(
        [
            OrtJob(
                path=str(tiny_onnx),
                batches=[calib_windows[:2], calib_windows[2:3, :8000]],
                latency_samples=16000,
                latency_repeats=2,
                profile=True,
            )
        ]
    )
    assert res.logits is not None
    assert res.logits.shape == (3, 2)
    assert res.output_shapes == [(2, 2), (1, 2)]
    assert len(res.latency_all_ms) == 2
    assert res.latency_ms is not None
    assert res.latency_ms > 0
    assert res.profile is not None
    assert "Conv" in res.profile["ops"]
    assert sum(v["share"] for v in res.profile["ops"].values()) == pytest.approx(1.0, abs=0.01)


def test_a_corrupt_model_is_a_validation_error_not_a_crash(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ValidationError, match=r"ONNX Runtime could not run \['bad.onnx'\]"):
        run_ort_jobs([OrtJob(path=str(bad), batches=[np.zeros((1, 16000), np.float32)])])


def test_profile_parser_sums_kernel_time_per_operator(tmp_path):
    events = [
        {"cat": "Node", "name": "a_kernel_time", "dur": 3000, "args": {"op_name": "QLinearConv"}},
        {"cat": "Node", "name": "b_kernel_time", "dur": 1000, "args": {"op_name": "MatMul"}},
        {"cat": "Node", "name": "a_kernel_time", "dur": 1000, "args": {"op_name": "QLinearConv"}},
        {"cat": "Node", "name": "a_fence_before", "dur": 99999, "args": {"op_name": "QLinearConv"}},
        {"cat": "Session", "name": "model_run", "dur": 99999},
    ]
    trace = tmp_path / "t.json"
    trace.write_text(json.dumps(events))
    prof = parse_ort_profile(trace)
    assert prof["ops"]["QLinearConv"] == {"ms": 4.0, "share": 0.8, "nodes": 1}
    assert prof["int8_share"] == 0.8
    assert list(prof["ops"]) == ["QLinearConv", "MatMul"]


def test_triton_render_and_argument_checks(tiny_onnx, tmp_path):
    text = render_config(
        name="m_trt",
        kind="trt",
        max_batch_size=8,
        preferred_batch_sizes=[1, 8],
        max_queue_delay_us=500,
        instance_count=2,
        instance_kind="KIND_GPU",
        parameters={"spoof.note": 'say "hi"'},
    )
    assert 'platform: "tensorrt_plan"' in text
    assert 'default_model_filename: "model.plan"' in text
    assert "kind: KIND_GPU" in text
    assert r'string_value: "say \"hi\""' in text
    with pytest.raises(ExportArgumentError, match="triton_max_batch: expected an integer >= 1, given 0"):
        write_triton_repository(
            tmp_path, name="m", onnx_path=tiny_onnx, engine_path=None, manifest_metadata={}, max_batch_size=0
        )
    with pytest.raises(ExportArgumentError, match="triton model name: expected letters, digits"):
        write_triton_repository(
            tmp_path, name="a/b", onnx_path=tiny_onnx, engine_path=None, manifest_metadata={}
        )


def test_triton_repository_with_an_engine_has_both_platforms(tiny_onnx, tmp_path):
    pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient not installed")
    from spoof_export.triton import parse_config

    engine = tmp_path / "m.trt"
    engine.write_bytes(b"ENGINE")
    models = write_triton_repository(
        tmp_path / "repo",
        name="det",
        onnx_path=tiny_onnx,
        engine_path=engine,
        manifest_metadata={"spoof.sample_rate": "16000"},
        max_batch_size=32,
        instance_count=2,
        engine_max_batch=16,
    )
    assert [m.name for m in models] == ["det_onnx", "det_trt"]
    trt_cfg = parse_config(models[1].config_path.read_text())
    assert trt_cfg.platform == "tensorrt_plan"
    assert trt_cfg.max_batch_size == 16  # never above the engine profile's max batch
    assert trt_cfg.instance_group[0].kind == trt_cfg.instance_group[0].KIND_GPU
    assert trt_cfg.instance_group[0].count == 2
    assert models[1].model_path.read_bytes() == b"ENGINE"
    onnx_cfg = parse_config(models[0].config_path.read_text())
    assert onnx_cfg.instance_group[0].kind == onnx_cfg.instance_group[0].KIND_CPU
    assert not list((tmp_path / "repo").glob(".*partial"))
