"""End to end: export() / spoof-export on a tiny checkpoint, the report, Triton, and every error exit code."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from spoof_export import cli, export
from spoof_export.errors import ExportArgumentError

ALL_SUFFIXES = (
    ".onnx",
    ".int8.onnx",
    ".int8-tensorrt.onnx",
    ".fp16.onnx",
    ".export_report.json",
    ".trt",
    ".trt.json",
)


def _leftovers(prefix: Path) -> list[str]:
    """Files at ``prefix`` but the run's text log (kept on failure: it says why; test_export_log.py)."""
    return sorted(p.name for p in prefix.parent.glob(prefix.name + "*") if not p.name.endswith(".export.log"))


@pytest.fixture(scope="module")
def full_export(tiny_checkpoint: Path, labelled_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("full")
    result = export(
        tiny_checkpoint,
        output=out / "tiny",
        int8=True,
        int8_target="both",
        calib=labelled_dir,
        calib_min_files=8,
        fp16=True,
        dev=labelled_dir,
        triton=out / "triton",
        latency_repeats=2,
    )
    return out, result


def test_every_requested_artifact_is_written_and_nothing_partial_is_left(full_export):
    out, result = full_export
    names = _leftovers(out / "tiny")
    assert names == sorted(
        f"tiny{s}"
        for s in (".onnx", ".int8.onnx", ".int8-tensorrt.onnx", ".fp16.onnx", ".export_report.json")
    )
    assert set(result.paths) == {"onnx", "int8", "int8_tensorrt", "fp16", "report", "triton", "log"}
    assert result.paths["log"] == out / "tiny.export.log"
    assert result.paths["log"].is_file()
    assert result.report["log"] == "tiny.export.log"


#: A line of the export log: timestamp, level, message.
LOG_LINE = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO "


def test_export_log_names_every_stage_that_ran_with_its_duration(full_export):
    out, result = full_export
    text = (out / "tiny.export.log").read_text(encoding="utf-8")
    ran = [s["name"] for s in result.report["stage_reports"]]
    assert ran == ["onnx", "quantize_cpu", "quantize_tensorrt", "fp16", "validate", "triton"]
    for name in ran:
        assert re.search(LOG_LINE + f"stage {name}: started$", text, re.M), name
        assert re.search(LOG_LINE + rf"stage {name}: done in \d+\.\d s$", text, re.M), name
    assert re.search(LOG_LINE + r"export finished in \d+\.\d s: tiny\.onnx, ", text, re.M)
    assert re.search(LOG_LINE + r"arguments: \{.*\"int8_target\": \"both\"", text, re.M)
    assert not [h for h in logging.getLogger("spoof_export").handlers if isinstance(h, logging.FileHandler)]


def test_manifests_carry_contract_b_and_the_checkpoint_calibration(full_export, tiny_checkpoint):
    from spoof_train.checkpoint import checkpoint_sha256
    from spoofsdk.manifest import read_manifest

    out, _ = full_export
    precisions = {}
    for suffix in (".onnx", ".int8.onnx", ".int8-tensorrt.onnx", ".fp16.onnx"):
        m = read_manifest(out / f"tiny{suffix}")
        precisions[suffix] = m.precision
        assert (m.sample_rate, m.window_samples, m.hop_samples, m.min_samples) == (16000, 16000, 8000, 400)
        assert (m.calibration.scale, m.calibration.bias, m.threshold) == (2.0, 0.1, 0.6)
        assert m.layers == 2
        assert m.label_order == ("bonafide", "spoof")
        assert m.source_sha256 == checkpoint_sha256(tiny_checkpoint)
    assert precisions == {
        ".onnx": "fp32",
        ".int8.onnx": "int8",
        ".int8-tensorrt.onnx": "int8",
        ".fp16.onnx": "fp16",
    }


def test_report_has_versions_hashes_stage_diffs_agreement_eer_latency(full_export):
    out, result = full_export
    report = json.loads((out / "tiny.export_report.json").read_text())
    assert report == json.loads(json.dumps(result.report, default=str))
    assert report["ok"] is True
    assert {"onnxruntime", "onnx", "torch", "spoofsdk"} <= set(report["versions"])
    stage = report["stages"]["torch->onnx"]
    assert stage["ok"]
    assert stage["max_abs_diff"]["logits"] <= stage["atol"] == 1e-3
    for k in ("int8", "int8_tensorrt", "fp16"):
        s = report["stages"][f"onnx->{k}"]
        assert s["ok"]
        assert s["atol"] == (0.1 if k == "fp16" else 0.25)  # the defaults: fp16_atol, int8_atol
        assert s["score_agreement"]["n"] == 4 + 16  # validation windows + every window of the 8 dev clips
    for k, art in report["artifacts"].items():
        data = (out / art["file"]).read_bytes()
        assert art["sha256"] == hashlib.sha256(data).hexdigest(), k
        assert art["bytes"] == len(data)
        assert art["latency_ms_per_window"] > 0
        assert art["rtf"] == pytest.approx(art["latency_ms_per_window"] / 1000, rel=0.01)
    dev = report["dev_eer"]
    assert (dev["clips"], dev["n_bonafide"], dev["n_spoof"]) == (8, 4, 4)
    assert dev["windows"] == 16  # 1.1 s clips, 1 s windows every 0.5 s: one at 0 and one ending at the end
    assert (dev["scoring"]["window_samples"], dev["scoring"]["hop_samples"]) == (16000, 8000)
    assert dev["torch"] == pytest.approx(dev["onnx"], abs=1e-9)
    assert dev["delta_points_vs_fp32"] is None  # 4 clips a class: one clip is 25 points
    assert dev["one_clip_points"] == 25.0
    q = report["stages"]["quantize_cpu"]
    assert q["int8_nodes"]["MatMul"] > 0
    assert q["fp32_reads_restored"] > 0
    assert report["tensorrt_check"]["int8_tensorrt"]["ok"] is True
    assert report["tensorrt_check"]["int8"]["ok"] is False  # the u8 CPU file is not a TensorRT input
    assert report["calibration"]["windows"] == 16  # the train split only


def _ort_logits(path: Path, batches: list[np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2  # as the exporter's validation process (num_threads=2)
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(["logits"], {"audio": np.ascontiguousarray(b)})[0] for b in batches])


def test_reported_agreement_and_dev_eer_are_those_of_the_files_written(full_export, labelled_dir):
    """Recompute, from the written files, what the report says about them: decisions at the manifest
    threshold, the score correlation and the dev EER of every artifact (the exporter's inputs: the first
    three calibration windows cut as the report's shapes say, then every window of each dev clip)."""
    from spoof_export.audio import load_audio_set
    from spoof_train.metrics import compute_eer

    out, result = full_export
    report = result.report
    sets = {
        what: load_audio_set(
            labelled_dir,
            sample_rate=16000,
            window_samples=16000,
            max_files=64 if what == "calibration" else 200,
            min_files=8 if what == "calibration" else 2,
            split="train" if what == "calibration" else "dev",
            seed=0 if what == "calibration" else 1,
            what=what,
            hop_samples=None if what == "calibration" else 8000,
            min_samples=400,
        )
        for what in ("calibration", "dev")
    }
    base = sets["calibration"].windows[:3]
    shapes = report["validation_inputs"]["shapes"]
    assert shapes[0] == [2, 16000]
    assert shapes[2] == [1, 24000]
    batches = [base[:2], base[2:3, : shapes[1][1]], np.tile(base, (1, 2))[:1, : shapes[2][1]]]
    clips = sets["dev"].clips
    assert clips is not None
    labels = np.array(sets["dev"].labels)
    threshold_logit = (np.log(0.6 / 0.4) - 0.1) / 2.0  # the checkpoint's calibration (2.0, 0.1, 0.6)
    logits = {
        k: _ort_logits(out / f"tiny{suffix}", [*batches, *clips.batches])
        for k, suffix in (
            ("onnx", ".onnx"),
            ("int8", ".int8.onnx"),
            ("int8_tensorrt", ".int8-tensorrt.onnx"),
            ("fp16", ".fp16.onnx"),
        )
    }
    d = {k: v[:, 1].astype(np.float64) - v[:, 0] for k, v in logits.items()}
    for k in ("int8", "int8_tensorrt", "fp16"):
        agreement = report["stages"][f"onnx->{k}"]["score_agreement"]
        assert agreement["decision_agreement"] == np.mean(
            (d["onnx"] > threshold_logit) == (d[k] > threshold_logit)
        ), k
        assert agreement["pearson"] == pytest.approx(np.corrcoef(d["onnx"], d[k])[0, 1], abs=1e-6), k
        assert agreement["max_abs_score_diff"] == pytest.approx(np.abs(d["onnx"] - d[k]).max(), abs=1e-5), k
    # FP16 keeps the ranking of this tiny model's scores; int8 moves them by up to 0.04 while they spread over
    # less than that (pearson 0.64 measured), so only its bound is checked: the stage's tolerance
    assert report["stages"]["onnx->fp16"]["score_agreement"]["pearson"] > 0.9999
    for k in ("int8", "int8_tensorrt"):
        assert np.abs(d["onnx"] - d[k]).max() <= report["stages"][f"onnx->{k}"]["atol"], k
    for k in ("onnx", "int8", "int8_tensorrt", "fp16"):
        dev_d = clips.clip_means(d[k][-clips.n_windows :])  # mean of each clip's windows
        eer, _ = compute_eer(-dev_d[labels == "bonafide"], -dev_d[labels == "spoof"])
        assert report["dev_eer"][k] == pytest.approx(eer, abs=1e-12), k


def test_triton_repository_parses_with_tritons_model_config_schema(full_export):
    pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient not installed")
    from spoof_export.triton import parse_config

    out, _ = full_export
    cfg_path = out / "triton" / "tiny_onnx" / "config.pbtxt"
    cfg = parse_config(cfg_path.read_text())
    assert cfg.name == "tiny_onnx"
    assert cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size == 32
    assert [(i.name, list(i.dims)) for i in cfg.input] == [("audio", [-1])]
    assert [(o.name, list(o.dims)) for o in cfg.output] == [("logits", [2])]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [1, 4, 8, 16, 32]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
    assert cfg.instance_group[0].count == 1
    assert cfg.parameters["spoof.sample_rate"].string_value == "16000"
    assert cfg.parameters["spoof.precision"].string_value == "int8"
    served = out / "triton" / "tiny_onnx" / "1" / "model.onnx"
    assert served.read_bytes() == (out / "tiny.int8.onnx").read_bytes()


def test_exported_int8_model_runs_in_the_sdk(full_export):
    """The SDK's score of the int8 file is the manifest calibration of the mean window logit difference
    that ONNX Runtime gives on the same windows (1.5 s: windows at 0 and 0.5 s, 1 s long, 0.5 s hop)."""
    from spoofsdk import Detector

    out, _ = full_export
    det = Detector(out / "tiny.int8.onnx", backend="cpu", speech_gate=False)  # synthetic, not speech
    x = (0.1 * np.sin(2 * np.pi * 150 * np.arange(24000) / 16000)).astype(np.float32)
    x += np.random.default_rng(0).normal(0, 0.02, x.size).astype(np.float32)
    score = det.score(x, sample_rate=16000)
    logits = _ort_logits(out / "tiny.int8.onnx", [np.stack([x[:16000], x[8000:24000]])])
    z = 2.0 * float(np.mean(logits[:, 1] - logits[:, 0])) + 0.1
    assert [w.start_s for w in score.windows] == [0.0, 0.5]
    assert score.logit == pytest.approx(z, abs=1e-4)
    assert score.spoof_prob == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-5)
    assert score.is_spoof == (score.spoof_prob >= 0.6)


# ---- the CLI and its exit codes ------------------------------------------------------------------------


def test_cli_layers_prunes_and_reports_it(tiny_checkpoint, tmp_path, capsys):
    from spoofsdk.manifest import read_manifest

    code = cli.main(
        [str(tiny_checkpoint), "-o", str(tmp_path / "l1"), "--layers", "1", "--latency-repeats", "1", "-q"]
    )
    assert code == 0
    assert "l1.onnx" in capsys.readouterr().out
    assert read_manifest(tmp_path / "l1.onnx").layers == 1
    report = json.loads((tmp_path / "l1.export_report.json").read_text())
    assert report["checkpoint"]["pruned_without_retraining"] is True
    assert report["checkpoint"]["layers_in_checkpoint"] == 2


def test_reexport_removes_artifacts_an_earlier_export_left_at_the_prefix(tiny_checkpoint, tmp_path):
    """An FP32-only export over a prefix that holds an earlier int8 / fp16 / engine export: the old files
    describe another model, so they go (and the report says so); unrelated files stay."""
    prefix = tmp_path / "m"
    suffixes = (".int8.onnx", ".int8-tensorrt.onnx", ".fp16.onnx", ".trt", ".trt.json")
    stale = [tmp_path / f"m{s}" for s in suffixes]
    for p in stale:
        p.write_bytes(b"from an earlier export")
    keep = [tmp_path / "m.notes.txt", tmp_path / "mx.int8.onnx"]
    for p in keep:
        p.write_text("not ours")
    code = cli.main([str(tiny_checkpoint), "-o", str(prefix), "--latency-repeats", "1", "-q"])
    assert code == 0
    assert not [p.name for p in stale if p.exists()]
    assert all(p.exists() for p in keep)
    report = json.loads((tmp_path / "m.export_report.json").read_text())
    assert sorted(report["removed_stale"]) == sorted(str(p) for p in stale)
    assert (tmp_path / "m.onnx").is_file()


def _cli_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main([*args, "-q"])
    return code, capsys.readouterr().err


def test_layers_beyond_the_backbone_exits_2(tiny_checkpoint, tmp_path, capsys):
    code, err = _cli_error([str(tiny_checkpoint), "-o", str(tmp_path / "x"), "--layers", "5"], capsys)
    assert code == 2
    assert "LayersError: layers: expected 1..2 (the checkpoint's transformer layers), given 5" in err
    assert _leftovers(tmp_path / "x") == []


def test_corrupt_and_missing_checkpoints_exit_5(tiny_checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("config.json", "training.json"):
        (bad / name).write_bytes((tiny_checkpoint / name).read_bytes())
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    code, err = _cli_error([str(bad), "-o", str(tmp_path / "x")], capsys)
    assert code == 5
    assert "CheckpointLoadError" in err
    assert "cannot load the checkpoint" in err
    code, err = _cli_error([str(tmp_path / "missing"), "-o", str(tmp_path / "x")], capsys)
    assert code == 5
    assert "expected a directory with config.json and model.safetensors" in err
    assert _leftovers(tmp_path / "x") == []


def test_empty_or_tiny_calibration_set_exits_6_and_writes_nothing(
    tiny_checkpoint, labelled_dir, tmp_path, capsys
):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = _cli_error(
        [str(tiny_checkpoint), "-o", str(tmp_path / "x"), "--int8", "--calib", str(empty)], capsys
    )
    assert code == 6
    assert "found none" in err
    code, err = _cli_error(
        [
            str(tiny_checkpoint),
            "-o",
            str(tmp_path / "x"),
            "--int8",
            "--calib",
            str(labelled_dir),
            "--calib-min-files",
            "20",
        ],
        capsys,
    )
    assert code == 6
    assert "expected at least 20 usable audio clips, given 16 of 16 picked" in err  # 16 train rows
    assert _leftovers(tmp_path / "x") == []


def test_int8_without_calibration_is_an_argument_error(tiny_checkpoint, tmp_path):
    with pytest.raises(ExportArgumentError, match="int8: static quantisation needs calibration audio"):
        export(tiny_checkpoint, output=tmp_path / "x", int8=True)
    with pytest.raises(ExportArgumentError, match="calib: given without int8"):
        export(tiny_checkpoint, output=tmp_path / "x", calib=tmp_path)
    with pytest.raises(
        ExportArgumentError, match="int8_ops: expected 'matmul-conv', 'matmul' or 'conv', given 'all'"
    ):
        export(tiny_checkpoint, output=tmp_path / "x", int8_ops="all")  # type: ignore[arg-type]
    with pytest.raises(ExportArgumentError, match=r"engine profile: expected min_seconds <= opt_seconds"):
        export(tiny_checkpoint, output=tmp_path / "x", min_seconds=5.0, max_seconds=2.0)
    with pytest.raises(ExportArgumentError, match=r"calib_percentile: expected a value in \(50, 100\)"):
        export(tiny_checkpoint, output=tmp_path / "x", calib_percentile=100.0)
    assert not list(tmp_path.glob("x*"))  # argument errors come before any file is written


def test_engine_without_tensorrt_exits_4_before_exporting(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    code, err = _cli_error([str(tiny_checkpoint), "-o", str(tmp_path / "x"), "--engine"], capsys)
    assert code == 4
    assert "ToolchainUnavailableError: engine build needs TensorRT 10+" in err
    assert not list(tmp_path.glob("x*"))  # not even a log: nothing ran


def test_failed_validation_exits_3_and_leaves_no_complete_looking_file(tiny_checkpoint, tmp_path, capsys):
    code, err = _cli_error(
        [str(tiny_checkpoint), "-o", str(tmp_path / "x"), "--atol", "1e-30", "--latency-repeats", "1"], capsys
    )
    assert code == 3
    assert "ValidationError: torch->onnx: output 'logits' differs by up to" in err
    assert "expected <= atol 1e-30" in err
    assert _leftovers(tmp_path / "x") == []
    # the log is kept and says why the export failed
    text = (tmp_path / "x.export.log").read_text(encoding="utf-8")
    assert "stage validate: failed after" in text
    assert "ERROR export failed after" in text
    assert "ValidationError: torch->onnx: output 'logits' differs by up to" in text
    assert not [h for h in logging.getLogger("spoof_export").handlers if isinstance(h, logging.FileHandler)]
