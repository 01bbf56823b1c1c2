"""Score-level fusion of exported detector files into one ONNX graph (``spoof-export fuse``).

``spoof-train ensemble`` fuses checkpoints before export; this fuses model files after it, for members
whose checkpoint is not at hand (a detector shipped earlier) or that should enter in another precision
than FP32 (an int8 member beside an FP32 one). :func:`fuse_models` writes one graph that feeds its single
``audio`` input to every member and outputs ``logits = sum_i w_i * logits_i`` (weights normalised to sum
1), which averages the members' logit differences with those weights: the same fusion as
``EnsembleDetector``. Every member keeps its own nodes, initializers and precision (names prefixed
``m0/``, ``m1/``, ...; each member reads the shared input through an ``Identity``, which works with every
onnx release: before 1.19 ``add_prefix_graph(rename_inputs=False)`` still renamed the input's edges).

Members must agree on what the SDK needs to frame audio once for all of them (sample rate, window, hop,
label order and spoof index) and on the ONNX opset of each domain. The fused manifest takes the largest
``min_samples``, the lowest precision (``int8`` when any member has Q/DQ nodes) and is **uncalibrated**:
fusion changes the score scale, so the result is calibrated on dev afterwards (``spoof-export calibrate``).
Which files went in, with their sha256 and weights, is recorded under the non-manifest metadata key
``spoof_export.fusion`` (kept when the manifest is rewritten by calibration). Writing a fused file
removes the ``OUTPUT.calibration.{json,png,log}`` an earlier file at that path left: they describe
another model.

The fused file is validated before it is written: on seeded windows its logits must equal the weighted
sum of the members' own logits run alone in ONNX Runtime (max |diff| <= ``atol``); the offline TensorRT
check of the fused graph is part of the report.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from spoof_export.errors import ExportArgumentError, ModelFileError, ValidationError
from spoof_export.onnx_export import INPUT_NAME, OUTPUT_NAME

__all__ = ["FUSION_KEY", "fuse_models"]

log = logging.getLogger("spoof_export")

FUSION_KEY = "spoof_export.fusion"
_PRECISION_ORDER = ("fp32", "fp16", "int8")  # a fused graph is as low as its lowest member
_SAME = ("sample_rate", "window_samples", "hop_samples", "label_order", "spoof_index")


def _weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0 / n] * n
    if len(weights) != n:
        raise ExportArgumentError(f"fuse: {n} models but {len(weights)} weights; give one weight per model")
    w = [float(x) for x in weights]
    if not all(np.isfinite(x) and x > 0 for x in w):
        raise ExportArgumentError(f"fuse: weights must be finite and > 0, given {w}")
    total = sum(w)
    return [x / total for x in w]


def _load_member(path: Path) -> tuple[Any, Any]:
    """(ModelProto, Manifest) of one member file, or a typed error naming the file."""
    import onnx

    from spoofsdk.errors import ModelLoadError
    from spoofsdk.manifest import read_manifest

    if path.suffix.lower() != ".onnx":
        raise ExportArgumentError(f"fuse: {path} is not an .onnx model file (engines cannot be fused)")
    try:
        manifest = read_manifest(path)
    except ModelLoadError as exc:
        raise ModelFileError(f"fuse: {exc}") from exc
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError / OSError variants
        raise ModelFileError(f"fuse: cannot read {path} as ONNX: {exc}") from exc
    inputs = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise ModelFileError(
            f"fuse: {path} has inputs {inputs} and outputs {outputs}; expected one input '{INPUT_NAME}' and "
            f"one output '{OUTPUT_NAME}' (a spoof-export detector file)"
        )
    if proto.functions:
        raise ModelFileError(f"fuse: {path} has local ONNX functions, which fusion does not rename")
    return proto, manifest


def _opsets(protos: Sequence[Any], paths: Sequence[Path]) -> dict[str, int]:
    out: dict[str, int] = {}
    origin: dict[str, Path] = {}
    for proto, path in zip(protos, paths, strict=True):
        for imp in proto.opset_import:
            domain = "" if imp.domain in ("", "ai.onnx") else imp.domain
            if domain in out and out[domain] != imp.version:
                raise ModelFileError(
                    f"fuse: {path} imports opset {imp.version} of domain '{domain or 'ai.onnx'}' but "
                    f"{origin[domain]} imports {out[domain]}; export the members with the same --opset"
                )
            out[domain] = int(imp.version)
            origin.setdefault(domain, path)
    return out


def _has_qdq(proto: Any) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node)


def _fused_graph(protos: Sequence[Any], weights: Sequence[float]) -> Any:
    import onnx
    from onnx import TensorProto, helper
    from onnx.compose import add_prefix_graph

    nodes: list[Any] = []
    initializers: list[Any] = []
    value_info: list[Any] = []
    scaled: list[str] = []
    for i, (proto, w) in enumerate(zip(protos, weights, strict=True)):
        prefix = f"m{i}/"
        g = add_prefix_graph(proto.graph, prefix)
        nodes.append(helper.make_node("Identity", [INPUT_NAME], [prefix + INPUT_NAME], f"{prefix}input"))
        nodes.extend(g.node)
        initializers.extend(g.initializer)
        value_info.extend(g.value_info)
        weight = f"{prefix}fusion_weight"
        initializers.append(helper.make_tensor(weight, TensorProto.FLOAT, [], [w]))
        nodes.append(
            helper.make_node(
                "Mul", [prefix + OUTPUT_NAME, weight], [f"{prefix}fusion_weighted"], f"{prefix}fuse"
            )
        )
        scaled.append(f"{prefix}fusion_weighted")
    nodes.append(helper.make_node("Sum", scaled, [OUTPUT_NAME], "fusion/sum"))
    audio = onnx.ValueInfoProto()
    audio.CopyFrom(next(i for i in protos[0].graph.input if i.name == INPUT_NAME))  # shared by all
    logits = onnx.ValueInfoProto()
    logits.CopyFrom(protos[0].graph.output[0])  # the members' output: [batch, 2] float
    graph = helper.make_graph(
        nodes,
        "fused_detector",
        [audio],
        [logits],
        initializer=initializers,
        value_info=value_info,
    )
    return graph


def _validation_windows(rate: int, window: int, min_samples: int, seed: int) -> list[Any]:
    """Seeded inputs: a batch of 2 full windows (noise; a 220 Hz tone) and one shortest-input row."""
    rng = np.random.default_rng(seed)
    t = np.arange(window) / rate
    full = np.stack(
        [
            0.05 * rng.standard_normal(window),
            0.3 * np.sin(2 * np.pi * 220.0 * t) + 0.01 * rng.standard_normal(window),
        ]
    ).astype(np.float32)
    short = (0.05 * rng.standard_normal((1, max(min_samples, 1)))).astype(np.float32)
    return [full, short]


def _validate(
    fused: Any,
    *,
    protos: Sequence[Any],
    weights: Sequence[float],
    manifest: Any,
    min_samples: int,
    atol: float,
    seed: int,
) -> float:
    import onnxruntime as ort

    def session(proto: Any) -> Any:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    worst = 0.0
    try:
        fused_s = session(fused)
        members = [session(p) for p in protos]
        runs = []
        for x in _validation_windows(manifest.sample_rate, manifest.window_samples, min_samples, seed):
            got = fused_s.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
            want = sum(
                w * m.run([OUTPUT_NAME], {INPUT_NAME: x})[0] for w, m in zip(weights, members, strict=True)
            )
            runs.append((x, got, want))
    except Exception as exc:  # ONNX Runtime raises its own exception types (Fail, InvalidGraph, ...)
        raise ValidationError(f"fuse: ONNX Runtime could not run the fused graph: {exc}") from exc
    for x, got, want in runs:
        if got.shape != want.shape or not np.all(np.isfinite(got)):
            raise ValidationError(
                f"fuse: fused logits of shape {got.shape} (finite: {np.isfinite(got).all()}) "
                f"for input {x.shape}; expected {want.shape}, finite"
            )
        worst = max(worst, float(np.max(np.abs(got - want))))
    if worst > atol:
        raise ValidationError(
            f"fuse: the fused graph's logits differ from the weighted sum of the members by {worst:.3g} "
            f"(atol {atol}); nothing was written"
        )
    return worst


def fuse_models(
    models: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    weights: Sequence[float] | None = None,
    atol: float = 1e-4,
    seed: int = 0,
) -> dict[str, Any]:
    """Fuse the detector files ``models`` (>= 2 ``.onnx``) into ``output`` (``.onnx``); see the module doc.

    Returns the report (members with sha256, weights, precision, size, validation, offline TensorRT
    check), also written to ``OUTPUT.fusion.json``. Raises :class:`ExportArgumentError` for bad
    arguments, :class:`ModelFileError` for unreadable or incompatible members and
    :class:`ValidationError` when the fused graph does not reproduce the weighted sum (nothing written).
    """
    import onnx
    from onnx import helper

    from spoof_export import __version__
    from spoof_export.tensorrt import check_tensorrt_compatibility
    from spoofsdk._hashing import sha256_file
    from spoofsdk.manifest import Calibration, Manifest, write_onnx_manifest

    started = time.perf_counter()
    paths = [Path(m) for m in models]
    out = Path(output)
    if len(paths) < 2:
        raise ExportArgumentError(f"fuse: expected at least 2 model files, got {len(paths)}")
    if out.suffix.lower() != ".onnx":
        raise ExportArgumentError(f"fuse: the output must be an .onnx file, given {out}")
    if any(out.resolve() == p.resolve() for p in paths):
        raise ExportArgumentError(f"fuse: the output {out} is one of the members; expected a new file")
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise ExportArgumentError(f"fuse: a model file is given twice in {[str(p) for p in paths]}")
    if not atol > 0:
        raise ExportArgumentError(f"fuse: atol must be > 0, given {atol}")
    w = _weights(weights, len(paths))
    loaded = [_load_member(p) for p in paths]
    protos = [p for p, _ in loaded]
    manifests = [m for _, m in loaded]
    for path, m in zip(paths[1:], manifests[1:], strict=True):
        for key in _SAME:
            if getattr(m, key) != getattr(manifests[0], key):
                raise ModelFileError(
                    f"fuse: {path} has {key}={getattr(m, key)!r} but {paths[0]} has "
                    f"{getattr(manifests[0], key)!r}; members are scored on the same windows, expected equal"
                )
    opsets = _opsets(protos, paths)
    precisions = ["int8" if _has_qdq(p) else m.precision for p, m in loaded]
    precision = max(precisions, key=_PRECISION_ORDER.index)
    base = manifests[0]
    min_samples = max(m.min_samples for m in manifests)

    graph = _fused_graph(protos, w)
    fused = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
        producer_name="spoof_export.fuse",
        producer_version=__version__,
    )
    fused.ir_version = max(p.ir_version for p in protos)
    try:
        onnx.checker.check_model(fused)
    except onnx.checker.ValidationError as exc:
        raise ValidationError(f"fuse: the fused graph is not valid ONNX: {exc}") from exc
    worst = _validate(
        fused, protos=protos, weights=w, manifest=base, min_samples=min_samples, atol=atol, seed=seed
    )

    members = [
        {
            "file": str(p),
            "sha256": sha256_file(p),
            "weight": wi,
            "precision": prec,
            "backbone": m.backbone,
            "layers": m.layers,
            "source_sha256": m.source_sha256,
            "calibration": {"scale": m.calibration.scale, "bias": m.calibration.bias},
        }
        for p, wi, prec, m in zip(paths, w, precisions, manifests, strict=True)
    ]
    manifest = Manifest(
        sample_rate=base.sample_rate,
        window_samples=base.window_samples,
        hop_samples=base.hop_samples,
        min_samples=min_samples,
        label_order=base.label_order,
        spoof_index=base.spoof_index,
        calibration=Calibration(scale=1.0, bias=0.0, calibrated=False),
        threshold=0.5,
        precision=precision,
        layers=max(m.layers for m in manifests),
        backbone="fusion(" + "+".join(m.backbone or "?" for m in manifests) + ")",
        source_sha256="",
        exporter="spoof_export",
        exporter_version=__version__,
        created_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    write_onnx_manifest(fused, manifest)
    fusion = {
        "members": [
            {k: v for k, v in m.items() if k != "file"} | {"file": Path(m["file"]).name} for m in members
        ]
    }
    fused.metadata_props.add(key=FUSION_KEY, value=json.dumps(fusion, sort_keys=True))
    trt = check_tensorrt_compatibility(fused, strict=False)

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    try:
        onnx.save(fused, str(partial))
        os.replace(partial, out)
    except OSError as exc:
        raise ModelFileError(f"fuse: cannot write {out}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    for stale in (".calibration.json", ".calibration.png", ".calibration.log"):
        Path(str(out) + stale).unlink(missing_ok=True)  # an earlier model's calibration at this path
    report = {
        "report_version": 1,
        "output": str(out),
        "sha256": sha256_file(out),
        "bytes": out.stat().st_size,
        "members": members,
        "precision": precision,
        "min_samples": min_samples,
        "calibrated": False,
        "validation": {"max_abs_diff": worst, "atol": atol, "seed": seed},
        "tensorrt_offline_check": {"ok": trt["ok"], "blockers": trt["blockers"], "warnings": trt["warnings"]},
        "seconds": round(time.perf_counter() - started, 3),
    }
    Path(str(out) + ".fusion.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    log.info(
        "fuse: %s (%d members, weights %s, %s, %.1f MB), max |diff| %.2g; UNCALIBRATED: run "
        "spoof-export calibrate %s --dev MANIFEST",
        out,
        len(paths),
        [round(x, 4) for x in w],
        precision,
        out.stat().st_size / 1e6,
        worst,
        out,
    )
    return report
