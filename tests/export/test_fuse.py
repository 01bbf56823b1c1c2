"""``spoof-export fuse``: exported detector files fused into one graph (score-level fusion of model files).

Two tiny wavlm detectors with different weights are exported in-process; the fused file must give the
weighted mean of their logits, carry a manifest the SDK loads (uncalibrated, largest minimum input, lowest
precision), record its members, keep that record through calibration, and refuse bad input with typed
errors while writing nothing.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spoof_export import cli, export
from spoof_export.errors import ExportArgumentError, ModelFileError, ValidationError
from spoof_export.fuse import FUSION_KEY, fuse_models

from .conftest import SR, WINDOW, _tiny_checkpoint


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory, labelled_dir: Path) -> dict[str, Path]:
    """FP32 exports of two tiny detectors (seeds 0 and 1), the second's int8 files (both targets) and fp16."""
    d = tmp_path_factory.mktemp("fuse")
    a = export(_tiny_checkpoint(d / "ca", seed=0), output=d / "a", latency_repeats=1).paths["onnx"]
    b = export(
        _tiny_checkpoint(d / "cb", seed=1),
        output=d / "b",
        int8=True,
        int8_target="both",
        fp16=True,
        calib=labelled_dir,
        latency_repeats=1,
    ).paths
    return {
        "a": a,
        "b": b["onnx"],
        "b_int8": b["int8"],
        "b_int8_trt": b["int8_tensorrt"],
        "b_fp16": b["fp16"],
    }


def _logits(model: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.asarray(s.run(["logits"], {"audio": x})[0])


def _audio(n: int = 3, samples: int = WINDOW, seed: int = 5) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((n, samples))).astype(np.float32)


def test_the_fused_file_scores_the_weighted_mean_of_its_members_and_the_sdk_loads_it(members, tmp_path):
    from spoofsdk import Detector
    from spoofsdk.manifest import read_manifest, read_onnx_metadata

    out = tmp_path / "fused.onnx"
    report = fuse_models([members["a"], members["b"]], out, weights=[1.0, 3.0])
    x = _audio()
    want = 0.25 * _logits(members["a"], x) + 0.75 * _logits(members["b"], x)
    np.testing.assert_allclose(_logits(out, x), want, atol=1e-5)
    # a different input length than the validation used (the graph's samples axis stays dynamic)
    y = _audio(2, WINDOW + 3200, seed=6)
    np.testing.assert_allclose(
        _logits(out, y), 0.25 * _logits(members["a"], y) + 0.75 * _logits(members["b"], y), atol=1e-5
    )

    m, ma = read_manifest(out), read_manifest(members["a"])
    assert (m.sample_rate, m.window_samples, m.hop_samples) == (
        ma.sample_rate,
        ma.window_samples,
        ma.hop_samples,
    )
    assert m.min_samples == max(ma.min_samples, read_manifest(members["b"]).min_samples)
    assert m.precision == "fp32"
    assert m.backbone == f"fusion({ma.backbone}+{ma.backbone})"
    assert not m.is_calibrated  # fusion changes the score scale: calibrate next
    record = json.loads(read_onnx_metadata(out)[FUSION_KEY])
    assert [r["file"] for r in record["members"]] == ["a.onnx", "b.onnx"]
    assert [r["weight"] for r in record["members"]] == pytest.approx([0.25, 0.75])
    from spoofsdk._hashing import sha256_file

    assert [r["sha256"] for r in record["members"]] == [sha256_file(members["a"]), sha256_file(members["b"])]
    assert report["validation"]["max_abs_diff"] <= 1e-4
    assert report["tensorrt_offline_check"]["ok"] is True
    assert json.loads((tmp_path / "fused.onnx.fusion.json").read_text())["sha256"] == sha256_file(out)

    det = Detector(out, backend="cpu", num_threads=1, speech_gate=False)
    score = det.score(_audio(1, 2 * WINDOW)[0], sample_rate=SR)
    assert len(score.windows) >= 2
    assert np.isfinite(score.logit)


def test_an_int8_member_makes_the_file_int8_and_the_tensorrt_verdict_follows_its_target(members, tmp_path):
    from spoofsdk.manifest import read_manifest

    cpu = fuse_models([members["a"], members["b_int8"]], tmp_path / "cpu.onnx")
    trt = fuse_models([members["a"], members["b_int8_trt"]], tmp_path / "trt.onnx")
    assert read_manifest(tmp_path / "cpu.onnx").precision == "int8"
    assert [m["precision"] for m in trt["members"]] == ["fp32", "int8"]
    # u8 activations (the cpu target) are not TensorRT Q/DQ; the symmetric s8 target is
    assert cpu["tensorrt_offline_check"]["ok"] is False
    assert any("uint8" in b for b in cpu["tensorrt_offline_check"]["blockers"])
    assert trt["tensorrt_offline_check"]["ok"] is True
    x = _audio(2)
    want = 0.5 * _logits(members["a"], x) + 0.5 * _logits(members["b_int8_trt"], x)
    np.testing.assert_allclose(_logits(tmp_path / "trt.onnx", x), want, atol=1e-5)


def test_three_members_in_three_precisions(members, tmp_path):
    from spoofsdk.manifest import read_manifest

    out = tmp_path / "three.onnx"
    report = fuse_models([members["a"], members["b_fp16"], members["b_int8_trt"]], out, weights=[2, 1, 1])
    assert [m["precision"] for m in report["members"]] == ["fp32", "fp16", "int8"]
    assert read_manifest(out).precision == "int8"  # the lowest
    x = _audio(2)
    want = 0.5 * _logits(members["a"], x) + 0.25 * _logits(members["b_fp16"], x)
    want += 0.25 * _logits(members["b_int8_trt"], x)
    np.testing.assert_allclose(_logits(out, x), want, atol=1e-5)
    fp16 = fuse_models([members["a"], members["b_fp16"]], tmp_path / "fp16.onnx")
    assert fp16["precision"] == "fp16"


def test_a_fused_file_written_over_an_old_one_drops_the_old_calibration_report(members, tmp_path):
    out = tmp_path / "f.onnx"
    for stale in (".calibration.json", ".calibration.png", ".calibration.log"):
        (tmp_path / f"f.onnx{stale}").write_text("of an earlier model")
    out.write_bytes(b"an earlier model")
    fuse_models([members["a"], members["b"]], out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.onnx", "f.onnx.fusion.json"]


def test_calibrating_the_fused_file_keeps_its_member_record(members, tmp_path):
    from spoof_export.calibrate import write_calibration
    from spoof_export.contract import ScoreCalibration
    from spoofsdk.manifest import read_manifest, read_onnx_metadata

    out = tmp_path / "fused.onnx"
    fuse_models([members["a"], members["b"]], out)
    record = read_onnx_metadata(out)[FUSION_KEY]
    write_calibration(
        out, ScoreCalibration(scale=0.8, bias=0.2, threshold=0.4, calibrated=True, source="dev")
    )
    assert read_manifest(out).is_calibrated
    assert read_onnx_metadata(out)[FUSION_KEY] == record


def test_cli_fuse_prints_the_members_the_check_and_the_next_step(members, tmp_path, capsys):
    out = tmp_path / "f.onnx"
    code = cli.main(
        ["fuse", str(members["a"]), str(members["b"]), "-o", str(out), "--weights", "2", "1", "-q"]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "weight 0.6667" in text
    assert "weight 0.3333" in text
    assert "tensorrt check: ok" in text
    assert f"spoof-export calibrate {out} --dev MANIFEST" in text
    assert out.is_file()


def _with_manifest(src: Path, dst: Path, **changes: object) -> Path:
    from spoofsdk.manifest import read_manifest, write_onnx_manifest

    shutil.copyfile(src, dst)
    write_onnx_manifest(dst, replace(read_manifest(src), **changes))
    return dst


@pytest.mark.parametrize(
    ("case", "error", "needle"),
    [
        ("one model", ExportArgumentError, "at least 2"),
        ("weight count", ExportArgumentError, "one weight per model"),
        ("negative weight", ExportArgumentError, "> 0"),
        ("output is a member", ExportArgumentError, "is one of the members"),
        ("output not onnx", ExportArgumentError, ".onnx file"),
        ("engine member", ExportArgumentError, "not an .onnx model file"),
        ("other hop", ModelFileError, "hop_samples"),
        ("other labels", ModelFileError, "label_order"),
        ("not onnx bytes", ModelFileError, "a.onnx"),
        ("missing file", ModelFileError, "not found"),
        ("same file twice", ExportArgumentError, "given twice"),
        ("other opset", ModelFileError, "same --opset"),
    ],
)
def test_bad_input_is_a_typed_error_and_writes_nothing(members, tmp_path, case, error, needle):
    a, b = members["a"], members["b"]
    out = tmp_path / "out.onnx"
    args: dict[str, object] = {"models": [a, b], "output": out}
    if case == "one model":
        args["models"] = [a]
    elif case == "weight count":
        args["weights"] = [1.0, 2.0, 3.0]
    elif case == "negative weight":
        args["weights"] = [1.0, -1.0]
    elif case == "output is a member":
        args["output"] = b
    elif case == "output not onnx":
        args["output"] = tmp_path / "out.trt"
    elif case == "engine member":
        args["models"] = [a, tmp_path / "b.trt"]
    elif case == "other hop":
        args["models"] = [a, _with_manifest(b, tmp_path / "b2.onnx", hop_samples=WINDOW // 4)]
    elif case == "other labels":
        args["models"] = [a, _with_manifest(b, tmp_path / "b2.onnx", label_order=("real", "fake"))]
    elif case == "not onnx bytes":
        bad = tmp_path / "a.onnx"
        bad.write_bytes(b"\x00garbage, not a protobuf" * 10)
        args["models"] = [bad, b]
    elif case == "missing file":
        args["models"] = [a, tmp_path / "nowhere.onnx"]
    elif case == "same file twice":
        args["models"] = [a, b, Path(str(a).replace(a.name, f"../{a.parent.name}/{a.name}"))]
    elif case == "other opset":
        import onnx

        proto = onnx.load(str(b))
        next(i for i in proto.opset_import if i.domain in ("", "ai.onnx")).version = 18
        onnx.save(proto, str(tmp_path / "b18.onnx"))
        args["models"] = [a, tmp_path / "b18.onnx"]
    before = b.read_bytes()
    with pytest.raises(error, match=needle):
        fuse_models(args.pop("models"), args.pop("output"), **args)  # type: ignore[arg-type]
    assert not out.exists()
    assert not (tmp_path / "out.trt").exists()
    assert not list(tmp_path.glob("out*"))  # no .partial, no report
    assert b.read_bytes() == before


def test_a_fused_graph_that_does_not_reproduce_the_members_is_not_written(members, tmp_path, monkeypatch):
    from spoof_export import fuse

    real = fuse._fused_graph

    def off_by_a_weight(protos, weights):  # the graph gets weights the validation does not expect
        return real(protos, [w * 1.5 for w in weights])

    monkeypatch.setattr(fuse, "_fused_graph", off_by_a_weight)
    out = tmp_path / "out.onnx"
    with pytest.raises(ValidationError, match="differ from the weighted sum"):
        fuse_models([members["a"], members["b"]], out)
    assert not out.exists()
    assert not list(tmp_path.iterdir())


def test_cli_fuse_errors_exit_with_their_codes(members, tmp_path, capsys):
    assert cli.main(["fuse", str(members["a"]), "-o", str(tmp_path / "o.onnx")]) == 2
    assert "at least 2" in capsys.readouterr().err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    assert cli.main(["fuse", str(members["a"]), str(bad), "-o", str(tmp_path / "o.onnx")]) == 5
    assert "ModelFileError" in capsys.readouterr().err


def test_cli_fuse_exits_3_when_the_fused_graph_fails_validation(members, tmp_path, capsys, monkeypatch):
    from spoof_export import fuse

    monkeypatch.setattr(fuse, "_validation_windows", lambda *a: [np.full((1, WINDOW), np.nan, np.float32)])
    out = tmp_path / "o.onnx"
    assert cli.main(["fuse", str(members["a"]), str(members["b"]), "-o", str(out)]) == 3
    assert "ValidationError" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
