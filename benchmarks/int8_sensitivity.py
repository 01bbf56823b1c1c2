"""Which operators cost accuracy when quantised: int8 sensitivity of an exported detector, one op at a time.

Quantises the FP32 ONNX file of ``spoof-export`` (the exporter's own ``quantize_int8``: CPU target, first
conv FP32, FP32 reads restored) several times, each time with only one group of nodes in int8: every
``Conv`` alone, all ``MatMul``/``Gemm`` together, and the exporter's full ``matmul-conv`` set. Each variant
scores one centre window per clip of the dev and test splits (the export report's ``dev_eer`` rule) and is
compared with the FP32 file on the same windows: RMS of the spoof-logit difference, decision agreement and
the EER delta. It also prints how coarse a min/max u8 range is for each Conv input on the calibration
windows (median |x| in quantisation steps, share rounding to zero), and the same sweep can be run with
``--method percentile --percentile P``. docs/benchmarks.md ("Where the int8 error comes from") records a
run.

    spoof-export runs/corpus-v1-small/checkpoints/best -o /tmp/sens/t
    python benchmarks/int8_sensitivity.py /tmp/sens/t.onnx --corpus ../shared/data/corpus-v1 \
        --json /tmp/sens/sensitivity.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def _scores(path: Path, windows: dict[str, np.ndarray], threads: int) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out = {}
    for split, w in windows.items():
        logits = np.concatenate([sess.run(None, {name: w[i : i + 32]})[0] for i in range(0, len(w), 32)])
        out[split] = (logits[:, 1] - logits[:, 0]).astype(np.float64)
    return out


def _conv_input_ranges(model: object, tensors: list[str], windows: np.ndarray) -> list[dict[str, float]]:
    """Per tensor: the min/max u8 range of the calibration windows, its step, and how many steps the median
    value spans (what asymmetric min/max calibration would give each activation)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(model)  # type: ignore[arg-type]
    for name in tensors:
        m.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the tensors by name
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    outs = sess.run(tensors, {sess.get_inputs()[0].name: windows})
    rows = []
    for a in outs:
        lo, hi = min(float(a.min()), 0.0), max(float(a.max()), 0.0)
        step = (hi - lo) / 255.0
        absval = np.abs(a)
        rows.append(
            {
                "min": lo,
                "max": hi,
                "step": step,
                "median_steps": float(np.median(absval) / step),
                "zero_share": float(np.mean(absval < step / 2)),
            }
        )
    return rows


def main() -> int:
    from spoof_export.audio import load_audio_set
    from spoof_export.quantize import quantize_int8
    from spoof_train.metrics import compute_eer
    from spoofsdk.manifest import read_manifest

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", type=Path, help="FP32 ONNX written by spoof-export")
    ap.add_argument("--corpus", required=True, help="corpus-v1 directory or a manifest with dev/test splits")
    ap.add_argument("--calib-files", type=int, default=64)
    ap.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy"])
    ap.add_argument("--percentile", type=float, default=99.9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import onnx

    m = read_manifest(args.onnx)
    kw = {"sample_rate": m.sample_rate, "window_samples": m.window_samples, "min_files": 16}
    calib = load_audio_set(args.corpus, max_files=args.calib_files, split="train", **kw).windows
    sets = {s: load_audio_set(args.corpus, max_files=None, split=s, what=s, **kw) for s in ("dev", "test")}
    windows = {s: a.windows for s, a in sets.items()}
    labels = {s: np.array(a.labels) for s, a in sets.items()}

    def eer(scores: np.ndarray, split: str) -> float:
        lab = labels[split]
        return 100.0 * float(compute_eer(-scores[lab == "bonafide"], -scores[lab == "spoof"])[0])

    ref = _scores(args.onnx, windows, args.threads)
    graph = onnx.load(str(args.onnx))
    conv_nodes = [n for n in graph.graph.node if n.op_type == "Conv"]
    convs = [n.name for n in conv_nodes]
    ranges = _conv_input_ranges(graph, [n.input[0] for n in conv_nodes], calib)
    print("| Conv input | min/max range | u8 step | median abs / step | share rounding to 0 |")
    print("|---|---|---|---|---|")
    for i, r in enumerate(ranges):
        print(
            f"| Conv {i} | [{r['min']:.3g}, {r['max']:.3g}] | {r['step']:.3g} | {r['median_steps']:.2f} | "
            f"{100 * r['zero_share']:.0f} % |"
        )
    variants: dict[str, dict[str, object]] = {
        "matmul-conv (exporter default)": {},
        "MatMul/Gemm only": {"op_types": ("MatMul", "Gemm")},
    }
    for i, name in enumerate(convs[1:], start=1):  # the first conv stays FP32 in every exporter mode
        others = tuple(c for c in convs[1:] if c != name)
        variants[f"Conv {i} alone ({name})"] = {"op_types": ("Conv",), "exclude_nodes": others}
    rows = []
    print(f"FP32: EER dev {eer(ref['dev'], 'dev'):.2f} %, test {eer(ref['test'], 'test'):.2f} %")
    print("| int8 nodes | RMS logit diff dev / test | agreement dev / test | EER delta dev / test (points) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="int8-sens-") as tmp:
        for label, opts in variants.items():
            out = Path(tmp) / "q.onnx"
            quantize_int8(
                args.onnx,
                out,
                calib,
                method=args.method,
                percentile=args.percentile,
                **opts,  # type: ignore[arg-type]
            )
            got = _scores(out, windows, args.threads)
            row = {"variant": label}
            for s in ("dev", "test"):
                diff = got[s] - ref[s]
                row[f"rms_{s}"] = float(np.sqrt(np.mean(diff**2)))
                row[f"agreement_{s}"] = float(np.mean((got[s] > 0) == (ref[s] > 0)))
                row[f"eer_delta_{s}"] = eer(got[s], s) - eer(ref[s], s)
            rows.append(row)
            print(
                f"| {label} | {row['rms_dev']:.3f} / {row['rms_test']:.3f} | {row['agreement_dev']:.3f} / "
                f"{row['agreement_test']:.3f} | {row['eer_delta_dev']:+.2f} / {row['eer_delta_test']:+.2f} |",
                flush=True,
            )
    if args.json:
        spread = {s: float(np.std(ref[s])) for s in ("dev", "test")}
        doc = {"fp32_score_std": spread, "conv_input_ranges": ranges, "variants": rows}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
