"""recipes/default-detector/package_rule.py: the packaging rule of default detector v2 (round4.md, step 3)."""

from __future__ import annotations

from typing import Any

import pytest

from .recipe_modules import load_recipe

rule = load_recipe("default-detector/package_rule.py")

V1 = {"tel_classic": 4.83, "tel_selection": 45.66}


def _variant(**changes: Any) -> dict[str, Any]:
    row = {
        "bytes": 11_300_000,
        "precision": "int8",
        "tensorrt_ok": True,
        "licensed_dev_eer": 19.9,
        "tel_classic": 6.2,
        "tel_selection": 38.0,
        "rtf": 0.015,
        "load_s": 0.2,
    }
    return row | changes


def test_the_first_variant_that_passes_every_check_ships() -> None:
    rows = {"v1": V1, "fp32": _variant(bytes=23_800_000, precision="fp32", licensed_dev_eer=19.73),
            "int8trt": _variant()}  # fmt: skip
    winner, failed = rule.decide(rows, ["fp32", "int8trt"])
    assert winner == "int8trt"
    assert failed["fp32"] == ["size 23.8 MB > 20"]
    assert failed["int8trt"] == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"licensed_dev_eer": 20.74}, "int8 loses 1.01 EER points on licensed dev"),
        ({"tensorrt_ok": False}, "fails the offline TensorRT check"),
        ({"rtf": 0.0214}, "RTF 0.0214 > 0.02"),
        ({"load_s": 0.5}, "load 0.50 s >= 0.5"),
        ({"tel_classic": 6.9}, "telephone classic 6.90 > v1 + 2 = 6.83"),
        ({"tel_selection": 45.66}, "does not beat v1's 45.66"),
    ],
)
def test_each_check_alone_stops_a_variant(change: dict[str, Any], reason: str) -> None:
    rows = {"v1": V1, "fp32": _variant(bytes=23_800_000, precision="fp32", licensed_dev_eer=19.73),
            "int8trt": _variant(**change)}  # fmt: skip
    winner, failed = rule.decide(rows, ["fp32", "int8trt"])
    assert winner is None
    assert len(failed["int8trt"]) == 1
    assert reason in failed["int8trt"][0]


def test_an_int8_variant_without_an_fp32_reference_cannot_show_it_keeps_the_accuracy() -> None:
    winner, failed = rule.decide({"v1": V1, "int8trt": _variant()}, ["int8trt"])
    assert winner is None
    assert failed["int8trt"] == ["no FP32 fusion to compare the int8 accuracy with"]


def test_relaxed_limits_are_a_recorded_choice_that_changes_the_winner() -> None:
    rows = {
        "v1": V1,
        "fp32": _variant(bytes=23_800_000, precision="fp32", licensed_dev_eer=19.73, rtf=0.0214),
        "int8cpu": _variant(licensed_dev_eer=19.73, tensorrt_ok=False),
        "int8trt": _variant(licensed_dev_eer=20.74),
    }
    variants = ["fp32", "int8cpu", "int8trt"]
    assert rule.decide(rows, variants)[0] is None  # the rule: each fails one check
    assert rule.decide(rows, variants, rule.Limits(max_mb=24, max_rtf=0.022))[0] == "fp32"
    assert rule.decide(rows, variants, rule.Limits(tensorrt_check=False))[0] == "int8cpu"
    assert rule.decide(rows, variants, rule.Limits(int8_points=1.1))[0] == "int8trt"
    assert rule.Limits(20.0, 0.02, 0.5, 0.5, tensorrt_check=True) == rule.RULE  # round4.md
