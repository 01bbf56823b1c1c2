"""``spoof-export``: argparse over :func:`spoof_export.export` (each flag is one keyword argument), and
``spoof-export calibrate MODEL --dev MANIFEST`` over :func:`spoof_export.calibrate.calibrate`, and
``spoof-export fuse A.onnx B.onnx ... -o OUT.onnx`` over :func:`spoof_export.fuse.fuse_models`.

Exit codes: 0 ok, 1 unexpected export failure, 2 bad arguments (incl. ``--layers`` out of range),
3 validation failed, 4 TensorRT / CUDA / GPU missing for ``--engine``, 5 checkpoint (or, for
``calibrate``, model file) unreadable or corrupt, 6 calibration / dev set empty, tiny or unreadable, or no
score calibration can be fitted on it, 7 TensorRT cannot build the graph.
Only ``-v`` / ``-q`` (log verbosity) are not ``export()`` keywords. The ``spoof_export`` logger's INFO lines
(each stage's start and end with its seconds, clip progress) go to stderr (``-q``: errors only); the export
also writes them to ``PREFIX.export.log``, ``calibrate`` appends them to ``MODEL.calibration.log``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from spoofsdk._cli_version import PrintVersion

__all__ = ["build_calibrate_parser", "build_fuse_parser", "build_parser", "main"]

EPILOG = (
    "exit codes: 0 ok, 1 internal error, 2 bad arguments, 3 validation failed, 4 TensorRT/GPU missing, "
    "5 bad checkpoint / model file, 6 bad calibration/dev set, 7 TensorRT cannot build the graph"
)


def _version(prog: str) -> str:
    """``PROG VERSION (onnx X, onnxruntime Y, tensorrt Z)``: the package and the libraries of an export."""
    from importlib.metadata import PackageNotFoundError, version

    def v(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"

    libs = ", ".join(f"{d} {v(d)}" for d in ("onnx", "onnxruntime", "tensorrt"))
    return f"{prog} {v('spoofsdk')} ({libs})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spoof-export",
        description="Export a spoof_train checkpoint to ONNX (FP32, int8 Q/DQ, FP16), a TensorRT engine and "
        "a "
        "Triton model repository; every stage is validated against the one before it.",
        epilog=EPILOG + "; 'spoof-export calibrate MODEL --dev MANIFEST' (re)calibrates an exported model "
        "file (see spoof-export calibrate --help); 'spoof-export fuse A.onnx B.onnx -o OUT.onnx' fuses "
        "exported detector files into one graph (see spoof-export fuse --help)",
        # no prefix matching: '--version' was once taken as '--version-compatible', and an abbreviation
        # that is unique today becomes ambiguous (or changes meaning) when a flag is added
        allow_abbrev=False,
    )
    p.add_argument(
        "--version", action=PrintVersion, help="print the version and exit", version=_version("spoof-export")
    )
    req = p.add_argument_group("required")
    req.add_argument(
        "checkpoint", help="checkpoint directory (config.json, model.safetensors, training.json)"
    )
    req.add_argument(
        "-o", "--output", required=True, help="output prefix: PREFIX.onnx, PREFIX.int8.onnx, ..."
    )

    g = p.add_argument_group("model")
    g.add_argument("--layers", type=int, default=None, help="keep the first N transformer layers")
    g.add_argument("--opset", type=int, default=17, help="ONNX opset (17..20; default 17)")
    _add_int8_flags(p)
    _add_engine_flags(p)
    _add_validation_flags(p)
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="errors only")
    return p


def _add_int8_flags(p: argparse.ArgumentParser) -> None:
    q = p.add_argument_group("int8 (static post-training quantisation, explicit Q/DQ)")
    q.add_argument("--int8", action="store_true", help="write PREFIX.int8.onnx (needs --calib)")
    q.add_argument(
        "--int8-target",
        choices=("cpu", "tensorrt", "both"),
        default="cpu",
        help="cpu: u8 activations + reduce-range s8 weights (fast on AVX2/VNNI CPUs); "
        "tensorrt: symmetric s8 (PREFIX.int8-tensorrt.onnx); both",
    )
    q.add_argument(
        "--calib",
        default=None,
        help="calibration audio: a manifest file, or a directory (its MANIFEST.tsv, else audio files)",
    )
    q.add_argument(
        "--calib-split", default="train", help="manifest split to calibrate on (default train; '' = all rows)"
    )
    q.add_argument("--calib-max-files", type=int, default=64)
    q.add_argument("--calib-min-files", type=int, default=16, help="fewer usable clips is an error (exit 6)")
    q.add_argument(
        "--calib-method",
        choices=("minmax", "percentile", "entropy"),
        default="percentile",
        help="activation ranges: percentile-clipped (default), full min/max, or entropy",
    )
    q.add_argument(
        "--calib-percentile",
        type=float,
        default=99.9,
        help="with --calib-method percentile: percentile each activation range is clipped to (99.9)",
    )
    q.add_argument(
        "--int8-ops",
        choices=("matmul-conv", "matmul", "conv"),
        default="matmul-conv",
        help="quantise MatMul/Gemm and the convolutions (fastest), MatMul/Gemm only (conv encoder FP32), "
        "or the convolutions only (spectral models: their front-end MatMuls stay FP32)",
    )
    q.add_argument(
        "--quantize-first-conv",
        dest="keep_first_conv_fp32",
        action="store_false",
        help="also quantise the first feature-encoder convolution (kept FP32 by default)",
    )


def _add_engine_flags(p: argparse.ArgumentParser) -> None:
    f = p.add_argument_group("fp16 / TensorRT")
    f.add_argument("--fp16", action="store_true", help="write PREFIX.fp16.onnx (FP16 inside, FP32 I/O)")
    f.add_argument(
        "--engine", action="store_true", help="build PREFIX.trt + PREFIX.trt.json (needs TensorRT + GPU)"
    )
    f.add_argument("--min-seconds", type=float, default=1.0, help="engine profile: shortest input")
    f.add_argument(
        "--opt-seconds", type=float, default=None, help="engine profile: tuned length (default: window)"
    )
    f.add_argument("--max-seconds", type=float, default=10.0, help="engine profile: longest input")
    f.add_argument("--opt-batch", type=int, default=1)
    f.add_argument("--max-batch", type=int, default=16)
    f.add_argument("--workspace-mb", type=int, default=2048)
    f.add_argument("--timing-cache", default=None, help="TensorRT timing cache file (read and updated)")
    f.add_argument("--hardware-compatible", action="store_true", help="engine runs on any Ampere+ GPU")
    f.add_argument(
        "--version-compatible", action="store_true", help="engine runs on later TensorRT of same major"
    )
    f.add_argument("--device-id", type=int, default=0)

    t = p.add_argument_group("Triton Inference Server")
    t.add_argument("--triton", default=None, help="write a Triton model repository into this directory")
    t.add_argument(
        "--triton-name", default=None, help="model name prefix (default: the output prefix's name)"
    )
    t.add_argument("--triton-max-batch", type=int, default=32)
    t.add_argument("--triton-instances", type=int, default=1)
    t.add_argument("--triton-max-queue-delay-us", type=int, default=2000)
    t.add_argument(
        "--triton-backend",
        choices=("onnxruntime", "python"),
        default="onnxruntime",
        help="onnxruntime: NAME_onnx (+ NAME_trt) for a full Triton install; python: NAME_python, ONNX "
        "Runtime in Triton's Python backend (the server of the nvidia-pytriton wheel: examples/triton_tier)",
    )


def _add_validation_flags(p: argparse.ArgumentParser) -> None:
    v = p.add_argument_group("validation and report")
    v.add_argument("--atol", type=float, default=1e-3, help="torch -> ONNX FP32 max |logit diff|")
    from spoof_export.stages import FP16_ATOL, INT8_ATOL

    v.add_argument(
        "--fp16-atol", type=float, default=FP16_ATOL, help=f"ONNX FP32 -> FP16 max |logit diff| ({FP16_ATOL})"
    )
    v.add_argument(
        "--int8-atol",
        type=float,
        default=INT8_ATOL,
        help=f"ONNX FP32 -> int8 max |logit diff| ({INT8_ATOL}: 3.5x the largest measured on SSL models; "
        "spectral models quantised with --int8-ops conv may need more)",
    )
    v.add_argument(
        "--dev",
        default=None,
        help="labelled manifest/directory: fits the score calibration and threshold (unless the checkpoint "
        "carries one) and gives the EER of every artifact in the report; without it the model is "
        "exported UNCALIBRATED (threshold 0.5, with a warning)",
    )
    v.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--calibrate: fit the calibration on --dev even when the checkpoint carries one; "
        "--no-calibrate: never fit (default: fit on --dev unless the checkpoint carries a calibration)",
    )
    v.add_argument(
        "--no-speech-gate",
        dest="speech_gate",
        action="store_false",
        help="calibration scores every window of the dev clips, speech or not (default: speech windows "
        "only, as the SDK scores)",
    )
    v.add_argument("--dev-split", default="dev", help="manifest split for --dev ('' = all rows)")
    v.add_argument("--dev-max-files", type=int, default=200)
    v.add_argument("--latency-repeats", type=int, default=5)
    v.add_argument("--num-threads", type=int, default=2)
    v.add_argument("--profile", action="store_true", help="ONNX Runtime per-operator profile in the report")
    v.add_argument("--seed", type=int, default=0)


def _summary(result: Any) -> str:
    rep = result.report
    lines = []
    for key, path in result.paths.items():
        art = rep.get("artifacts", {}).get(key, {})
        extra = ""
        if art.get("latency_ms_per_window") is not None:
            extra = (
                f"  {art['bytes'] / 1e6:.1f} MB  {art['latency_ms_per_window']:.1f} ms/window"
                f"  RTF {art['rtf']:.3f}"
            )
        lines.append(f"{key:>15}: {path}{extra}")
    for name, stage in rep.get("stages", {}).items():
        if isinstance(stage, dict) and "max_abs_diff" in stage:
            diffs = ", ".join(f"{k} {v:.3g}" for k, v in stage["max_abs_diff"].items())
            lines.append(f"{name:>15}: max |diff| {diffs} (atol {stage['atol']:g})")
    if "dev_eer" in rep:
        lines.extend(_dev_eer_table(rep["dev_eer"]))
    cal = rep.get("score_calibration")
    if cal is not None:
        lines.append(f"{'calibration':>15}: {_calibration_line(cal)}")
    return "\n".join(lines)


_ARTIFACT_NAMES = {
    "torch": "torch (checkpoint)",
    "onnx": "onnx (fp32)",
    "int8": "int8 (cpu)",
    "int8_tensorrt": "int8 (tensorrt)",
    "fp16": "fp16",
}


def _dev_eer_table(dev: dict[str, Any]) -> list[str]:
    """The report's dev EER block as a table in percent, with the number of clips and how they were
    scored; deltas against FP32 only when the report has them (enough clips of each class)."""
    sc = dev.get("scoring") or {}
    head = f"{dev.get('clips', '?')} clips ({dev.get('n_bonafide', '?')} bona fide, "
    head += f"{dev.get('n_spoof', '?')} spoof)"
    if sc.get("window_s") is not None:
        head += (
            f", {sc['window_s']:g} s windows every {sc['hop_s']:g} s, {sc.get('aggregate', 'mean')} per clip"
        )
    lines = [f"{'dev EER':>15}: {head}"]
    deltas = dev.get("delta_points_vs_fp32")
    pad = " " * 17
    lines.append(f"{pad}{'artifact':<20}{'EER %':>8}" + (f"{'vs fp32 (points)':>18}" if deltas else ""))
    for key in ("torch", "onnx", "int8", "int8_tensorrt", "fp16"):
        if key not in dev:
            continue
        value = dev[key]
        cell = "n/a" if value is None else f"{100 * value:.2f}"
        row = f"{pad}{_ARTIFACT_NAMES[key]:<20}{cell:>8}"
        if deltas and deltas.get(key) is not None:
            row += f"{deltas[key]:>+18.2f}"
        lines.append(row)
    if not deltas and dev.get("delta_note"):
        lines.append(f"{pad}({dev['delta_note']})")
    return lines


def _calibration_line(cal: dict[str, Any]) -> str:
    if not cal.get("calibrated"):
        return (
            "UNCALIBRATED: threshold 0.5 is not meaningful; run spoof-export calibrate MODEL --dev MANIFEST"
        )
    line = (
        f"{cal['source']}: scale {cal['scale']:.4g}, bias {cal['bias']:.4g}, threshold {cal['threshold']:.4f}"
    )
    if cal["source"] == "dev":
        line += (
            f" (dev EER {100 * cal['eer']:.2f} % on {cal['n_bonafide']} bona fide + {cal['n_spoof']} spoof "
            f"clips; at the threshold: {100 * cal['frr']:.2f} % bona fide flagged, "
            f"{100 * cal['far']:.2f} % spoof missed)"
        )
    return line


def _subcommand_parser(name: str, description: str) -> argparse.ArgumentParser:
    """The parser of ``spoof-export NAME`` with its ``--version``."""
    p = argparse.ArgumentParser(
        prog=f"spoof-export {name}", description=description, epilog=EPILOG, allow_abbrev=False
    )
    p.add_argument(
        "--version",
        action=PrintVersion,
        help="print the version and exit",
        version=_version(f"spoof-export {name}"),
    )
    return p


def build_calibrate_parser() -> argparse.ArgumentParser:
    p = _subcommand_parser(
        "calibrate",
        "Fit the score calibration (spoof log-odds = scale * logit difference + bias) and the "
        "decision threshold of an exported model on labelled dev clips scored through the SDK (full "
        "clips, the model's window and hop), and write them into the model file's manifest. The "
        "checkpoint is never touched; the rest of the manifest is kept.",
    )
    p.add_argument("model", help="exported model file: PREFIX.onnx (also .int8.onnx, .fp16.onnx, .trt)")
    p.add_argument("--dev", required=True, help="labelled manifest file, or a directory with MANIFEST.tsv")
    p.add_argument("--split", default="dev", help="manifest split to fit on (default dev; '' = all rows)")
    p.add_argument("--max-files", type=int, default=None, help="score at most N rows (default: all)")
    p.add_argument(
        "--threshold",
        choices=("eer", "far"),
        default="eer",
        help="decision threshold at the dev EER point (default) or at --target-far",
    )
    p.add_argument("--target-far", type=float, default=0.01, help="with --threshold far: spoofs let through")
    p.add_argument("--prior-spoof", type=float, default=0.5, help="class prior of the logistic fit (0.5)")
    p.add_argument(
        "--no-speech-gate",
        dest="speech_gate",
        action="store_false",
        help="score every window, speech or not (the SDK gates by default; the v1 default-detector "
        "figures were made without the gate)",
    )
    p.add_argument(
        "--also",
        nargs="+",
        default=[],
        metavar="FILE",
        help="write the same calibration into these files too (other precisions of the same model)",
    )
    p.add_argument(
        "--report",
        default=None,
        help="JSON report of the fit and the rows used (default MODEL.calibration.json)",
    )
    p.add_argument("--num-threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="row picking with --max-files")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="errors only")
    return p


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.ERROR if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def calibrate_main(argv: Sequence[str]) -> int:
    """``spoof-export calibrate``: see :func:`build_calibrate_parser`. The run is appended to
    ``MODEL.calibration.log`` (timestamps, the stage's start and end, scoring progress, warnings, the fit
    or the error) when ``MODEL`` is a file: calibrating rewrites the model file in place, so the log keeps
    every calibration it was given, while ``MODEL.calibration.json`` / ``.png`` describe the last."""
    args = build_calibrate_parser().parse_args(argv)
    _setup_logging(args)
    from pathlib import Path

    from spoof_export.progress import log_to_file

    log_path = Path(args.model + ".calibration.log")
    if not Path(args.model).is_file():  # no log beside a model that is not there (the error says so)
        return _calibrate(args, argv, None)
    with log_to_file(log_path, mode="a") as handler:
        return _calibrate(args, argv, handler)


def _calibrate(args: argparse.Namespace, argv: Sequence[str], handler: logging.Handler | None) -> int:
    from pathlib import Path

    from spoof_export.calibrate import CalibrateOptions, calibrate
    from spoof_export.errors import ExportError
    from spoof_export.progress import file_only

    def failed(message: str) -> None:
        if handler is not None:
            file_only(handler, logging.ERROR, "%s", message)

    if handler is not None:
        file_only(handler, logging.INFO, "spoof-export calibrate %s", shlex.join(argv))
    try:
        options = CalibrateOptions(
            dev=Path(args.dev),
            split=args.split or None,
            max_files=args.max_files,
            threshold=args.threshold,
            target_far=args.target_far,
            prior_spoof=args.prior_spoof,
            speech_gate=args.speech_gate,
            num_threads=args.num_threads,
            seed=args.seed,
        )
        _, stage = calibrate(args.model, options, also=args.also)
    except ExportError as exc:
        failed(f"calibrate failed: {type(exc).__name__}: {exc}")
        print(f"spoof-export calibrate: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        failed("calibrate interrupted; the model file was not changed")
        print("spoof-export calibrate: interrupted; the model file was not changed", file=sys.stderr)
        return 130
    report_path = Path(args.report) if args.report else Path(args.model + ".calibration.json")
    report = {"report_version": 1, "model": args.model, **stage.summary(), "calibration": stage.details}
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{'calibration':>15}: {_calibration_line(stage.details)}")
    for path in stage.details["written_to"]:
        print(f"{'written to':>15}: {path}")
    print(f"{'report':>15}: {report_path}")
    if handler is not None:
        print(f"{'log':>15}: {args.model}.calibration.log")
    for w in stage.warnings:
        print(f"{'warning':>15}: {w}")
    return 0


def build_fuse_parser() -> argparse.ArgumentParser:
    p = _subcommand_parser(
        "fuse",
        "Fuse exported detector files (.onnx, any precision) into one ONNX graph whose logits "
        "are the weighted mean of the members' logits (score-level fusion, as spoof-train ensemble does for "
        "checkpoints). Members must share sample rate, window, hop, labels and opset. The fused file is "
        "validated against the members run alone and written UNCALIBRATED: calibrate it next with "
        "'spoof-export calibrate OUT.onnx --dev MANIFEST'. Report: OUT.onnx.fusion.json.",
    )
    p.add_argument("models", nargs="+", help="two or more exported detector files (.onnx)")
    p.add_argument("-o", "--output", required=True, help="the fused model file (.onnx)")
    p.add_argument(
        "--weights",
        nargs="+",
        type=float,
        default=None,
        help="one positive weight per model, normalised to sum 1 (default: equal)",
    )
    p.add_argument(
        "--atol", type=float, default=1e-4, help="fused vs weighted sum of members, max |logit diff|"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the validation inputs")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="errors only")
    return p


def fuse_main(argv: Sequence[str]) -> int:
    """``spoof-export fuse``: see :func:`build_fuse_parser`."""
    args = build_fuse_parser().parse_args(argv)
    _setup_logging(args)
    from spoof_export.errors import ExportError
    from spoof_export.fuse import fuse_models

    try:
        report = fuse_models(args.models, args.output, weights=args.weights, atol=args.atol, seed=args.seed)
    except ExportError as exc:
        print(f"spoof-export fuse: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    for m in report["members"]:
        print(f"{'member':>15}: {m['file']} ({m['precision']}, {m['backbone']}, weight {m['weight']:.4f})")
    print(f"{'fused':>15}: {report['output']} ({report['precision']}, {report['bytes'] / 1e6:.1f} MB)")
    print(
        f"{'validation':>15}: max |logit diff| {report['validation']['max_abs_diff']:.2g} vs the members "
        f"(atol {report['validation']['atol']})"
    )
    trt = report["tensorrt_offline_check"]
    print(f"{'tensorrt check':>15}: " + ("ok" if trt["ok"] else "; ".join(trt["blockers"][:3])))
    print(f"{'calibration':>15}: UNCALIBRATED: spoof-export calibrate {report['output']} --dev MANIFEST")
    print(f"{'report':>15}: {report['output']}.fusion.json")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["calibrate"]:  # a checkpoint directory named "calibrate" is ./calibrate
        return calibrate_main(argv[1:])
    if argv[:1] == ["fuse"]:
        return fuse_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args)
    kwargs = vars(args)
    kwargs.pop("verbose")
    kwargs.pop("quiet")
    for key in ("calib_split", "dev_split"):
        if kwargs[key] == "":
            kwargs[key] = None
    checkpoint = kwargs.pop("checkpoint")

    from spoof_export import export
    from spoof_export.errors import ExportError

    try:
        result = export(checkpoint, **kwargs)
    except ExportError as exc:
        print(f"spoof-export: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("spoof-export: interrupted; no partial artifact was kept", file=sys.stderr)
        return 130
    print(_summary(result))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
