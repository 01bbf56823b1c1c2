"""Run configs: YAML + dotted overrides validated into dataclasses, errors naming the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from spoof_train.config import (
    RunConfig,
    apply_overrides,
    load_run_config,
    parse_override,
    run_config_from_dict,
    run_config_to_dict,
)
from spoof_train.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


def test_yaml_and_overrides_resolve_into_dataclasses(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "model: {preset: wavlm-tiny}\ndata: {manifest: m.tsv, batch_size: 4}\n"
        "train: {lr: 0.001, epochs: 3}\n",
    )
    cfg = load_run_config(
        p,
        [
            "train.lr=1e-4",
            "data.batch_size=8",
            "train.scheduler.name=step",
            "train.class_weights=[1.0,9.0]",
            "train.max_steps=null",
            "model.detector.layers=2",
        ],
    )
    assert isinstance(cfg, RunConfig)
    assert cfg.train.lr == pytest.approx(1e-4)  # "1e-4" is a string to YAML 1.1; we read it as a float
    assert cfg.data.batch_size == 8
    assert cfg.train.scheduler.name == "step"
    assert cfg.train.class_weights == [1.0, 9.0]
    assert cfg.train.max_steps is None
    assert cfg.model.detector == {"layers": 2}
    assert cfg.train.epochs == 3
    assert run_config_from_dict(run_config_to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("train.lrr=1", r"unknown key 'train\.lrr'"),
        ("train.scheduler.nme=cosine", r"unknown key 'train\.scheduler\.nme'"),
        ("data.batch_size=abc", r"data\.batch_size: expected an integer, got str 'abc'"),
        ("data.batch_size=0", r"data\.batch_size: expected an integer >= 1, got 0"),
        ("train.loss=focal", r"train\.loss: expected one of ce, ocsoftmax, got 'focal'"),
        ("train.lr=-1", r"train\.lr"),
        ("train.amp=half", r"train\.amp: expected one of auto, off, bf16, fp16, got .half."),
        ("train.amp=yes", r"train\.amp: expected a string, got bool True"),
        ("train.class_weights=[1, -2]", r"train\.class_weights: expected 'balanced', null or \[w_bonafide"),
        ("train.progress=maybe", r"train\.progress: expected true or false"),
        ("train.scheduler=3", r"train\.scheduler: expected a mapping"),
        ("device=tpu", r"device: expected 'auto', 'cpu' or 'cuda"),
        ("data.dev_split=null", r"'dev_eer' needs data\.dev_split"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, override: str, match: str) -> None:
    p = _write(tmp_path, "model: {preset: wavlm-tiny}\n")
    with pytest.raises(ConfigError, match=match):
        load_run_config(p, [override])


def test_override_syntax_errors() -> None:
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("train.lr")
    with pytest.raises(ConfigError, match="dotted names"):
        parse_override("train..lr=1")
    with pytest.raises(ConfigError, match=r"train\.lr is a float, not a section"):
        apply_overrides({"train": {"lr": 0.1}}, ["train.lr.x=1"])
    assert parse_override("model.preset=wavlm-base") == (["model", "preset"], "wavlm-base")


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_run_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run_config(_write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match="expected a mapping at the top level, got list"):
        load_run_config(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(
        ConfigError, match=r"expected model\.preset, model\.detector or model\.init_checkpoint"
    ):
        load_run_config(_write(tmp_path, "seed: 1\n"))


def test_plateau_with_warmup_rejected(tmp_path: Path) -> None:
    p = _write(tmp_path, "model: {preset: x}\ntrain: {scheduler: {name: plateau, warmup_steps: 10}}\n")
    with pytest.raises(ConfigError, match="warm-up is supported with cosine/step/constant, not with plateau"):
        load_run_config(p)


RECIPES = sorted((REPO / "configs").glob("*.yaml")) + sorted((REPO / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_recipes_validate(recipe: Path) -> None:
    from spoof_train.augment import build_augmentation
    from spoof_train.train import detector_config_from_run

    cfg = load_run_config(recipe)
    det = detector_config_from_run(cfg)  # preset + overrides form a valid DetectorConfig (nothing is built)
    assert det.label_order == ["bonafide", "spoof"]
    if cfg.data.augment:
        build_augmentation(cfg.data.augment)
    if "layer-analysis" in recipe.name:
        assert det.backend_name == "layer-weighted"
        assert det.layers is None
