"""Default detector v2, round 4 step 3: does the packaged fusion ship? (round4.md, "Step 3, packaging")

Reads what ``package.sh`` measured for each packaged variant of the winner (``fp32``, ``int8cpu``,
``int8trt``, ``int8trt-tel``: the fused file with the member in that form) and for v1, and applies the rule
fixed before the measurements:

1. size <= 20 MB (10^6 bytes), RTF <= 0.02 and load < 0.5 s on one core (``benchmarks/default_detector.py``);
2. the file passes the offline TensorRT check (``spoof-export fuse``'s report);
3. an int8 file keeps the accuracy: licensed dev EER through the SDK (``spoof-export calibrate``'s fit)
   within 0.5 points of the fused FP32 file;
4. on the telephone-channel dev set (``selection.py --json``): classic seen <= v1 + 2 points and the
   selection mean below v1's.

Prints one table (every variant, every check) and the decision: the first variant in the order FP32, then
the int8 files, that passes every check, or none (v1 stays). ``--json`` writes the same, with the limits used.

The limits are the rule's by default. Relaxing one is a person's decision, not the search's: ``--max-mb``,
``--max-rtf``, ``--int8-points`` and ``--no-tensorrt-check`` change them, and the table and the JSON then
say which limits differ from the rule.

    python recipes/default-detector/package_rule.py --out runs/v2-r5 --variants fp32 int8cpu int8trt
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CLASSIC_MARGIN = 2.0


@dataclass(frozen=True)
class Limits:
    """The packaging limits; the defaults are round4.md's rule."""

    max_mb: float = 20.0  # 10^6 bytes
    max_rtf: float = 0.02
    max_load_s: float = 0.5
    int8_points: float = 0.5
    tensorrt_check: bool = True


RULE = Limits()


def _rows(out: Path, variants: list[str]) -> dict[str, dict[str, Any]]:
    sel = json.loads((out / "selection-tel-dev.json").read_text())
    bench = {r["model"]: r for r in json.loads((out / "bench.json").read_text())["rows"] if r["threads"] == 1}
    rows: dict[str, dict[str, Any]] = {}
    for v in variants:
        fusion = json.loads((out / f"fused-{v}.onnx.fusion.json").read_text())
        cal = json.loads((out / f"fused-{v}.onnx.calibration.json").read_text())["calibration"]
        rows[v] = {
            "bytes": (out / f"fused-{v}.onnx").stat().st_size,
            "precision": fusion["precision"],
            "tensorrt_ok": fusion["tensorrt_offline_check"]["ok"],
            "licensed_dev_eer": 100 * cal["eer"],
            "tel_classic": sel[v]["classic_seen"],
            "tel_selection": sel[v]["selection"],
            "rtf": bench[v]["rtf"],
            "load_s": bench[v]["load_s"],
        }
    rows["v1"] = {"tel_classic": sel["v1"]["classic_seen"], "tel_selection": sel["v1"]["selection"]}
    return rows


def decide(
    rows: dict[str, dict[str, Any]], variants: list[str], limits: Limits = RULE
) -> tuple[str | None, dict[str, list[str]]]:
    """(the variant that ships or None, the failed checks of every variant) under ``limits``."""
    v1 = rows["v1"]
    fp32_eer = rows["fp32"]["licensed_dev_eer"] if "fp32" in rows else None
    failed: dict[str, list[str]] = {}
    for v in variants:
        r, bad = rows[v], []
        if r["bytes"] > limits.max_mb * 1e6:
            bad.append(f"size {r['bytes'] / 1e6:.1f} MB > {limits.max_mb:g}")
        if r["rtf"] > limits.max_rtf:
            bad.append(f"RTF {r['rtf']:.4f} > {limits.max_rtf:g}")
        if r["load_s"] >= limits.max_load_s:
            bad.append(f"load {r['load_s']:.2f} s >= {limits.max_load_s:g}")
        if limits.tensorrt_check and not r["tensorrt_ok"]:
            bad.append("fails the offline TensorRT check")
        if r["precision"] == "int8":
            loss = None if fp32_eer is None else r["licensed_dev_eer"] - fp32_eer
            if loss is None:
                bad.append("no FP32 fusion to compare the int8 accuracy with")
            elif loss > limits.int8_points:
                bad.append(f"int8 loses {loss:.2f} EER points on licensed dev (> {limits.int8_points:g})")
        if r["tel_classic"] > v1["tel_classic"] + CLASSIC_MARGIN:
            bad.append(f"telephone classic {r['tel_classic']:.2f} > v1 + 2 = {v1['tel_classic'] + 2:.2f}")
        if r["tel_selection"] >= v1["tel_selection"]:
            bad.append(
                f"telephone selection {r['tel_selection']:.2f} does not beat v1's {v1['tel_selection']:.2f}"
            )
        failed[v] = bad
    winner = next((v for v in variants if not failed[v]), None)
    return winner, failed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="package.sh's output folder")
    p.add_argument("--variants", nargs="+", required=True, help="fp32 first, then the int8 variants")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--max-mb", type=float, default=RULE.max_mb, help="file size limit, MB (rule: 20)")
    p.add_argument("--max-rtf", type=float, default=RULE.max_rtf, help="RTF limit on one core (rule: 0.02)")
    p.add_argument(
        "--int8-points",
        type=float,
        default=RULE.int8_points,
        help="int8 licensed-dev EER loss allowed (rule: 0.5)",
    )
    p.add_argument(
        "--no-tensorrt-check", dest="tensorrt_check", action="store_false", help="rule: the file must pass it"
    )
    args = p.parse_args()
    limits = Limits(
        max_mb=args.max_mb,
        max_rtf=args.max_rtf,
        int8_points=args.int8_points,
        tensorrt_check=args.tensorrt_check,
    )
    changed = {k: v for k, v in asdict(limits).items() if v != asdict(RULE)[k]}
    try:
        rows = _rows(args.out, args.variants)
    except (FileNotFoundError, KeyError) as exc:
        sys.exit(f"package_rule: {args.out} lacks a figure of package.sh's steps 1-5 ({exc}); run them first")
    winner, failed = decide(rows, args.variants, limits)
    if changed:
        print(f"limits changed from the rule (a person's decision, recorded): {changed}\n")
    print("| variant | MB | precision | TensorRT check | licensed dev EER | tel. classic | tel. selection "
          "| RTF (1 core) | load s | failed checks |")  # fmt: skip
    print("|---" * 10 + "|")
    v1 = rows["v1"]
    print(f"| v1 (shipped) | | | | | {v1['tel_classic']:.2f} | {v1['tel_selection']:.2f} | | | |")
    for v in args.variants:
        r = rows[v]
        print(
            f"| {v} | {r['bytes'] / 1e6:.1f} | {r['precision']} | {'ok' if r['tensorrt_ok'] else 'fails'} "
            f"| {r['licensed_dev_eer']:.2f} | {r['tel_classic']:.2f} | {r['tel_selection']:.2f} "
            f"| {r['rtf']:.4f} | {r['load_s']:.3f} | {'; '.join(failed[v]) or 'none'} |"
        )
    print(f"\ndecision: {'ship ' + winner if winner else 'nothing ships; v1 stays'}")
    if args.json:
        record = {
            "rows": rows,
            "failed": failed,
            "winner": winner,
            "limits": asdict(limits),
            "changed": changed,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
