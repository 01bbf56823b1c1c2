"""spoof-train qat: fake quantisation equals ORT's Q/DQ arithmetic; its checkpoint loads and exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spoof_train.errors import CheckpointError, ConfigError
from spoof_train.qat import ActivationFakeQuant, FakeQuantizer, QATConfig, fake_quant_weight, qat, quant_range


def _ort_qdq(x: np.ndarray, scale: np.ndarray, zp: np.ndarray, qtype: int, axis: int | None) -> np.ndarray:
    """Run a one-node-pair QuantizeLinear -> DequantizeLinear model in ONNX Runtime."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    np_type = np.uint8 if qtype == TensorProto.UINT8 else np.int8
    attrs = {} if axis is None else {"axis": axis}
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **attrs),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **attrs),
        ],
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))],
        initializer=[
            numpy_helper.from_array(scale.astype(np.float32), "s"),
            numpy_helper.from_array(zp.astype(np_type), "z"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_activation_fake_quant_equals_ort_qdq(target):
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 257)) * 3 + 0.7).astype(np.float32)
    x[2:] *= 4  # beyond the observed range: clipped
    fq = ActivationFakeQuant(target)
    fq.quantizing = False
    fq(torch.from_numpy(x[:2]))  # observe part of the data: the rest is clipped
    fq.quantizing, fq.observing = True, False
    qtype = TensorProto.UINT8 if target == "cpu" else TensorProto.INT8
    symmetric = target == "tensorrt"
    qmin, qmax = get_qmin_qmax_for_qType(qtype, reduce_range=False, symmetric=symmetric)
    assert (int(qmin), int(qmax)) == quant_range(target, "activation")[:2]
    zp, scale = compute_scale_zp(x[:2].min(), x[:2].max(), qmin, qmax, symmetric=symmetric)
    ours_scale, ours_zp = fq.qparams()
    assert float(ours_scale) == pytest.approx(float(scale), rel=1e-7)
    assert int(ours_zp) == int(zp)
    expected = _ort_qdq(x, np.asarray(scale), np.asarray(zp), qtype, None)
    got = fq(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, expected)
    assert (x > x[:2].max()).any()  # the comparison covered clipping


@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_weight_fake_quant_equals_ort_per_channel(target):
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType

    rng = np.random.default_rng(1)
    w = (rng.standard_normal((6, 4, 3)) * rng.uniform(0.01, 2, (6, 1, 1))).astype(np.float32)
    qmin, qmax = get_qmin_qmax_for_qType(TensorProto.INT8, reduce_range=target == "cpu", symmetric=True)
    assert (int(qmin), int(qmax)) == quant_range(target, "weight")[:2]
    pairs = [compute_scale_zp(c.min(), c.max(), qmin, qmax, symmetric=True) for c in w]
    scale = np.array([s for _, s in pairs], dtype=np.float32)
    zp = np.array([z for z, _ in pairs], dtype=np.int8)
    expected = _ort_qdq(w, scale, zp, TensorProto.INT8, 0)
    got = fake_quant_weight(torch.from_numpy(w), target).numpy()
    np.testing.assert_array_equal(got, expected)


def test_straight_through_gradient_is_zero_only_where_clipped():
    fq = ActivationFakeQuant("cpu")
    fq.quantizing = False
    fq(torch.tensor([-1.0, 1.0]))
    fq.quantizing = True
    fq.observing = False
    x = torch.tensor([-3.0, -0.5, 0.0, 0.5, 3.0], requires_grad=True)
    fq(x).sum().backward()
    assert x.grad is not None
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_fake_quantizer_mirrors_the_exporters_op_choice_and_removes_cleanly(tiny_checkpoint):
    from spoof_train.checkpoint import load_checkpoint

    model, _, _ = load_checkpoint(tiny_checkpoint)
    keys = set(model.state_dict())
    wave = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        ref = model(wave)
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv1d)]
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    fq = FakeQuantizer(model, target="cpu", int8_ops="matmul-conv")
    assert fq.skipped == convs[:1]  # the first conv stays FP32, like the exporter's default
    assert set(fq.wrapped) == set(linears) | set(convs[1:])
    assert set(model.state_dict()) == keys  # observers are not in the checkpoint
    assert len(fq.attention) == 2  # WavLM attention routed through the projections + Q K^T / P V fake-quant
    fq.set_mode(observing=True, quantizing=False)
    with torch.no_grad():
        torch.testing.assert_close(model(wave), ref, rtol=1e-5, atol=1e-6)  # patched graph == FP32 graph
        fq.set_mode(observing=False, quantizing=True)
        quantised = model(wave)
    assert not torch.equal(quantised, ref)
    assert all(np.isfinite(v).all() for v in fq.ranges().values())
    fq.remove()
    with torch.no_grad():
        torch.testing.assert_close(model(wave), ref, rtol=0, atol=0)

    model2, _, _ = load_checkpoint(tiny_checkpoint)
    fq2 = FakeQuantizer(model2, int8_ops="matmul")
    assert set(fq2.skipped) == set(convs)
    assert set(fq2.wrapped) == set(linears)


def test_qat_writes_a_checkpoint_that_loads_and_exports(tiny_checkpoint, labelled_dir, tmp_path, capsys):
    from spoof_export import export
    from spoof_train import cli
    from spoof_train.checkpoint import load_checkpoint

    out = tmp_path / "qat"
    code = cli.main(
        [
            "qat",
            str(tiny_checkpoint),
            "--manifest",
            str(labelled_dir / "MANIFEST.tsv"),
            "-o",
            str(out),
            "--steps",
            "3",
            "--batch-size",
            "4",
            "--crop-seconds",
            "1",
            "--calib-batches",
            "2",
            "--lr",
            "1e-3",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    assert "qat:" in capsys.readouterr().out
    info = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert info["origin"] == "qat"
    assert info["steps"] == 3
    assert info["qat"]["target"] == "cpu"
    assert info["qat"]["int8_ops"] == "matmul-conv"
    assert info["qat"]["kept_fp32_modules"]
    model, _, _ = load_checkpoint(out)
    src, _, _ = load_checkpoint(tiny_checkpoint)
    assert set(model.state_dict()) == set(src.state_dict())
    pairs = zip(model.state_dict().values(), src.state_dict().values(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)
    res = export(
        str(out),
        output=str(tmp_path / "exp" / "m"),
        int8=True,
        calib=str(labelled_dir),
        calib_min_files=4,
    )
    assert Path(res.paths["int8"]).is_file()


def test_bad_input_gets_typed_errors(tiny_checkpoint, labelled_dir, tmp_path):
    man = str(labelled_dir / "MANIFEST.tsv")
    with pytest.raises(ConfigError, match=r"qat steps: expected an integer > 0, given 0"):
        qat(QATConfig(checkpoint=str(tiny_checkpoint), manifest=man, out_dir=str(tmp_path / "a"), steps=0))
    with pytest.raises(ConfigError, match=r"qat target: expected one of \('cpu', 'tensorrt'\), given 'gpu'"):
        QATConfig(checkpoint="-", manifest="-", out_dir="-", target="gpu").validate()
    with pytest.raises(ConfigError, match=r"qat int8_ops: expected one of"):
        QATConfig(checkpoint="-", manifest="-", out_dir="-", int8_ops="all").validate()
    with pytest.raises(ConfigError, match=r"qat lr: expected a finite number > 0, given nan"):
        QATConfig(checkpoint="-", manifest="-", out_dir="-", lr=float("nan")).validate()
    with pytest.raises(ConfigError, match="already exists"):
        qat(QATConfig(checkpoint=str(tiny_checkpoint), manifest=man, out_dir=str(tmp_path)))
    with pytest.raises(CheckpointError):
        qat(QATConfig(checkpoint=str(tmp_path / "missing"), manifest=man, out_dir=str(tmp_path / "b")))
    with pytest.raises(ConfigError, match="no Linear/Conv module"):
        FakeQuantizer(torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3)), int8_ops="matmul")


def test_qat_killed_and_resumed_equals_the_uninterrupted_run(
    tiny_checkpoint, labelled_dir, tmp_path, monkeypatch, crash_at
):
    """QAT trains in fit with its fake quantisation as a hook: killed in epoch 2 and resumed, the observers
    come back from the trainer state (not recalibrated), and weights and activation ranges equal the
    uninterrupted run's."""
    from spoof_train.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    base = {
        "checkpoint": str(tiny_checkpoint),
        "manifest": str(labelled_dir / "MANIFEST.tsv"),
        "steps": 6,
        "batch_size": 4,
        "crop_seconds": 0.5,
        "observer": "ema",
    }
    full = qat(QATConfig(out_dir=str(tmp_path / "full"), **base))
    crash_at(5)
    with pytest.raises(KeyboardInterrupt):
        qat(QATConfig(out_dir=str(tmp_path / "cut"), **base))
    monkeypatch.undo()
    cut = qat(QATConfig(out_dir=str(tmp_path / "cut"), resume=True, **base))
    a, _, info_a = load_checkpoint(full)
    b, _, info_b = load_checkpoint(cut)
    for key, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[key]), key
    assert info_b["steps"] == 6
    assert info_a["qat"]["activation_ranges"] == info_b["qat"]["activation_ranges"]
    log_text = (tmp_path / "cut.run" / "train.log").read_text()
    assert log_text.count("observers calibrated") == 1  # the first start; the resumed run restored them
