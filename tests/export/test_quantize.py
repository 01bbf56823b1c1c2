"""int8 Q/DQ (cpu and tensorrt targets), fp16, and calibration-set resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from spoof_export.audio import load_audio_set, resolve_clips, window_of
from spoof_export.errors import CalibrationError, ExportArgumentError
from spoof_export.quantize import QUANT_OP_TYPES, convert_fp16, first_conv_nodes, quantize_int8
from spoof_export.tensorrt import check_tensorrt_compatibility


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"audio": x})[0]


def _zero_points(model: onnx.ModelProto) -> list[np.ndarray]:
    inits = {t.name: t for t in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits:
            out.append(numpy_helper.to_array(inits[n.input[2]]))
    return out


@pytest.fixture(scope="module")
def int8_models(tiny_onnx: Path, calib_windows: np.ndarray, tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("int8")
    info = {}
    for target in ("cpu", "tensorrt"):
        info[target] = quantize_int8(tiny_onnx, d / f"{target}.onnx", calib_windows, target=target)
    return d, info


def test_cpu_target_is_u8_activations_and_quantises_only_matmul_gemm_conv(
    tiny_onnx, int8_models, calib_windows
):
    d, info = int8_models
    model = onnx.load(str(d / "cpu.onnx"))
    zps = _zero_points(model)
    assert zps
    # u8 activations, s8 weights, int32 biases (ORT fuses those into QLinearConv / QLinearMatMul)
    assert {z.dtype for z in zps} == {np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.int32)}
    producer = {o: n for n in model.graph.node for o in n.output}
    # A non-quantised op may read a dequantised tensor only if that tensor is a quantised Conv's output
    # (what QLinearConv emits) or if it only reads its shape. LayerNorm, softmax, residual adds, GELU of
    # the transformer and the relative-position arithmetic keep reading FP32 tensors.
    offenders = []
    for n in model.graph.node:
        if n.op_type in (*QUANT_OP_TYPES, "QuantizeLinear", "Shape"):
            continue
        for i in n.input:
            dq = producer.get(i)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is None:  # DQ of an initializer: a quantised constant (weights, int32 bias), not activations
                continue
            source = producer.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
            if source is None or source.op_type != "Conv" or n.op_type in ("LayerNormalization", "Softmax"):
                offenders.append((n.op_type, n.name))
    assert offenders == []
    assert info["cpu"]["int8_nodes"]["MatMul"] > 0
    assert info["cpu"]["int8_nodes"]["Conv"] == 7  # 7 encoder convs + positional conv, minus the first
    first = first_conv_nodes(onnx.load(str(tiny_onnx)))
    assert info["cpu"]["nodes_kept_fp32"] == first
    assert info["cpu"]["reduce_range"] is True
    ref, got = _run(tiny_onnx, calib_windows[:3]), _run(d / "cpu.onnx", calib_windows[:3])
    assert got.shape == ref.shape == (3, 2)
    # measured 0.011; the inputs move the logits by 0.14 about their mean, so a model that ignored its
    # input (or quantised the first conv wrongly) would fail this, which a tolerance of 0.2 did not see
    assert np.abs(ref - ref.mean(axis=0)).max() > 0.1
    assert np.abs(ref - got).max() < 0.035


def test_tensorrt_target_is_symmetric_s8_and_buildable_offline(int8_models):
    d, _ = int8_models
    model = onnx.load(str(d / "tensorrt.onnx"))
    zps = _zero_points(model)
    assert zps
    assert all(z.dtype == np.int8 and not z.any() for z in zps)  # symmetric s8, FP32 biases
    assert check_tensorrt_compatibility(model)["ok"]
    cpu = check_tensorrt_compatibility(d / "cpu.onnx", strict=False)
    assert not cpu["ok"]
    assert any("uint8 zero point" in b for b in cpu["blockers"])


def test_quantize_rejects_bad_target_method_and_empty_windows(tiny_onnx, calib_windows, tmp_path):
    with pytest.raises(ExportArgumentError, match="int8_target: expected one of"):
        quantize_int8(tiny_onnx, tmp_path / "x.onnx", calib_windows, target="gpu")  # type: ignore[arg-type]
    with pytest.raises(ExportArgumentError, match="calib_method: expected one of"):
        quantize_int8(tiny_onnx, tmp_path / "x.onnx", calib_windows, method="kl")  # type: ignore[arg-type]
    with pytest.raises(CalibrationError, match=r"non-empty \[N, samples\]"):
        quantize_int8(tiny_onnx, tmp_path / "x.onnx", calib_windows[:0])


def _activation_scales(model: onnx.ModelProto) -> dict[str, float]:
    """Scale of every QuantizeLinear of an activation (input not an initializer), by quantised tensor."""
    inits = {t.name: t for t in model.graph.initializer}
    return {
        n.input[0]: float(numpy_helper.to_array(inits[n.input[1]]))
        for n in model.graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits and n.input[1] in inits
    }


def test_percentile_calibration_clips_the_activation_tails(tiny_onnx, calib_windows, tmp_path):
    quantize_int8(tiny_onnx, tmp_path / "mm.onnx", calib_windows, method="minmax")
    info = quantize_int8(tiny_onnx, tmp_path / "pc.onnx", calib_windows, method="percentile", percentile=99.0)
    assert info["calibration_method"] == "percentile"
    assert info["calibration_percentile"] == 99.0
    minmax = _activation_scales(onnx.load(str(tmp_path / "mm.onnx")))
    pct = _activation_scales(onnx.load(str(tmp_path / "pc.onnx")))
    assert set(pct) == set(minmax)
    ratios = np.array([pct[k] / minmax[k] for k in minmax])
    assert (ratios <= 1.0 + 1e-6).all()  # a clipped range is never wider than the full one
    assert (ratios < 0.9).sum() >= len(ratios) // 2  # and most are clearly narrower
    for bad in (50.0, 100.0, 120.0):
        with pytest.raises(ExportArgumentError, match="calib_percentile: expected a value in"):
            quantize_int8(tiny_onnx, tmp_path / "x.onnx", calib_windows, method="percentile", percentile=bad)


@pytest.mark.parametrize("ops", ["matmul", "conv"])
def test_int8_ops_modes_quantise_only_their_op_types(tiny_onnx, calib_windows, tmp_path, ops):
    from spoof_export.api import INT8_OPS

    info = quantize_int8(tiny_onnx, tmp_path / "q.onnx", calib_windows, op_types=INT8_OPS[ops])
    counts = info["int8_nodes"]
    if ops == "conv":
        assert counts.get("Conv", 0) == 7
        assert counts.get("MatMul", 0) == counts.get("Gemm", 0) == 0
    else:
        assert counts.get("MatMul", 0) > 0
        assert counts.get("Conv", 0) == 0


def test_fp16_keeps_float32_io_and_tracks_fp32(tiny_onnx, calib_windows, tmp_path):
    out = tmp_path / "fp16.onnx"
    convert_fp16(tiny_onnx, out)
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    onnx.checker.check_model(model)  # topologically sorted (the input Casts come first)
    ref, got = _run(tiny_onnx, calib_windows[:2]), _run(out, calib_windows[:2])
    # measured 2.2e-4 (FP16 rounding); the two inputs' logits differ from their mean by 0.029
    assert np.abs(ref - ref.mean(axis=0)).max() > 0.02
    assert np.abs(ref - got).max() < 1e-3


# ---- calibration sets ------------------------------------------------------------------------------------


def test_window_of_centres_long_clips_and_tiles_short_ones():
    long = np.arange(10, dtype=np.float32)
    assert window_of(long, 4).tolist() == [3, 4, 5, 6]
    short = np.array([1, 2, 3], dtype=np.float32)
    assert window_of(short, 7).tolist() == [1, 2, 3, 1, 2, 3, 1]


def test_directory_without_manifest_uses_its_audio_files(clip_dir):
    s = load_audio_set(
        clip_dir, sample_rate=16000, window_samples=8000, max_files=12, min_files=4, split="train"
    )
    assert s.windows.shape == (12, 8000)
    assert s.windows.dtype == np.float32
    assert all(lb is None for lb in s.labels)


def test_directory_resamples_other_rates(tmp_path, write_clips):
    write_clips(tmp_path, 4, sr=8000, seconds=1.0)
    s = load_audio_set(
        tmp_path, sample_rate=16000, window_samples=16000, max_files=None, min_files=4, split=None
    )
    assert s.windows.shape == (4, 16000)
    assert float(np.abs(s.windows).max()) > 0.1  # 1 s at 8 kHz -> 16000 samples of signal, not padding


def test_empty_and_tiny_calibration_sets_are_typed_errors(tmp_path, clip_dir):
    with pytest.raises(
        CalibrationError, match="expected a manifest file or a directory, given a missing path"
    ):
        resolve_clips(tmp_path / "nope", split=None)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here")
    with pytest.raises(CalibrationError, match="found none"):
        load_audio_set(empty, sample_rate=16000, window_samples=8000, max_files=8, min_files=1, split=None)
    with pytest.raises(CalibrationError, match="expected at least 30 usable audio clips, given 20"):
        load_audio_set(
            clip_dir, sample_rate=16000, window_samples=8000, max_files=64, min_files=30, split=None
        )


def test_unreadable_clips_are_skipped_and_counted(tmp_path, write_clips):
    write_clips(tmp_path, 3)
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wav")
    s = load_audio_set(
        tmp_path, sample_rate=16000, window_samples=8000, max_files=None, min_files=3, split=None
    )
    assert len(s.paths) == 3
    with pytest.raises(
        CalibrationError, match=r"given 3 of 4 picked; skipped 1 unreadable \(first: .*broken.wav"
    ):
        load_audio_set(
            tmp_path, sample_rate=16000, window_samples=8000, max_files=None, min_files=4, split=None
        )


def test_matmul_only_keeps_the_conv_encoder_fp32(tiny_onnx, calib_windows, tmp_path):
    info = quantize_int8(tiny_onnx, tmp_path / "mm.onnx", calib_windows, op_types=("MatMul", "Gemm"))
    assert "Conv" not in info["int8_nodes"]
    assert info["fp32_nodes_of_quantisable_types"]["Conv"] == 8
    assert info["int8_nodes"]["MatMul"] > 0
    with pytest.raises(ExportArgumentError, match="op_types: expected a subset of"):
        quantize_int8(tiny_onnx, tmp_path / "x.onnx", calib_windows, op_types=("Add",))
