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
the int8 files, that passes every check, or none (v1 stays). ``--json`` writes the same.

    python recipes/default-detector/package_rule.py --out runs/v2-r5 --variants fp32 int8cpu int8trt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

MAX_BYTES = 20_000_000
MAX_RTF = 0.02
MAX_LOAD_S = 0.5
INT8_EER_POINTS = 0.5
CLASSIC_MARGIN = 2.0


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


def decide(rows: dict[str, dict[str, Any]], variants: list[str]) -> tuple[str | None, dict[str, list[str]]]:
    """(the variant that ships or None, the failed checks of every variant)."""
    v1 = rows["v1"]
    fp32_eer = rows["fp32"]["licensed_dev_eer"] if "fp32" in rows else None
    failed: dict[str, list[str]] = {}
    for v in variants:
        r, bad = rows[v], []
        if r["bytes"] > MAX_BYTES:
            bad.append(f"size {r['bytes'] / 1e6:.1f} MB > 20")
        if r["rtf"] > MAX_RTF:
            bad.append(f"RTF {r['rtf']:.4f} > {MAX_RTF}")
        if r["load_s"] >= MAX_LOAD_S:
            bad.append(f"load {r['load_s']:.2f} s >= {MAX_LOAD_S}")
        if not r["tensorrt_ok"]:
            bad.append("fails the offline TensorRT check")
        if r["precision"] == "int8":
            if fp32_eer is None:
                bad.append("no FP32 fusion to compare the int8 accuracy with")
            elif r["licensed_dev_eer"] - fp32_eer > INT8_EER_POINTS:
                bad.append(
                    f"int8 loses {r['licensed_dev_eer'] - fp32_eer:.2f} EER points on licensed dev (> 0.5)"
                )
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
    args = p.parse_args()
    rows = _rows(args.out, args.variants)
    winner, failed = decide(rows, args.variants)
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
        args.json.write_text(json.dumps({"rows": rows, "failed": failed, "winner": winner}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
