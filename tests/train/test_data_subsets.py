"""recipes/default-detector/v1/subsets.py: nested, stratified, paired fractions of the training split."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from recipe_modules import load_recipe

from spoof_train.data import Utterance, read_manifest, write_manifest
from spoof_train.errors import DataError

_subsets = load_recipe("default-detector/v1/subsets.py")
main, paired_bonafide, train_fraction = _subsets.main, _subsets.paired_bonafide, _subsets.train_fraction


def _corpus() -> list[Utterance]:
    """A corpus-v1-shaped manifest: bona fide talkers with 1-40 clips, a re-synthesis of most bona fide clips
    (and one whose bona fide clip is absent), TTS voices, and dev rows."""
    rows = []
    for spk, n in (("allison", 40), ("jackson", 20), *((f"libri{i}", 1) for i in range(30))):
        for i in range(n):
            name = f"{spk}_{i}.flac"
            rows.append(Utterance(f"/c/train/real/{name}", "bonafide", "-", spk, "train", {"source": "real"}))
            if i % 4 != 3:
                rows.append(
                    Utterance(
                        f"/c/train/resynth/griffinlim__real__{name}", "spoof", "griffinlim", spk, "train"
                    )
                )
    rows.append(Utterance("/c/train/resynth/world__real__gone.flac", "spoof", "world", "gone", "train"))
    for voice in ("espeak-en", "flite-kal"):
        rows += [
            Utterance(f"/c/train/tts/{voice}_{i}.flac", "spoof", voice.split("-")[0], voice, "train")
            for i in range(24)
        ]
    rows += [
        Utterance(f"/c/dev/x{i}.flac", "bonafide" if i % 2 else "spoof", "-", "d", "dev") for i in range(10)
    ]
    return rows


def test_fractions_nest_and_keep_their_share() -> None:
    rows = _corpus()
    train = [r for r in rows if r.split == "train"]
    kept = {f: train_fraction(rows, f, seed=3) for f in (0.1, 0.25, 0.5, 0.75, 1.0)}
    paths = {f: {r.path for r in k} for f, k in kept.items()}
    assert paths[0.1] <= paths[0.25] <= paths[0.5] <= paths[0.75] <= paths[1.0]
    assert kept[1.0] == rows
    for f in (0.25, 0.5, 0.75):
        part = [r for r in kept[f] if r.split == "train"]
        assert abs(len(part) / len(train) - f) < 0.12
        # talkers with many clips keep their share exactly (floor or one more), every TTS voice stays
        counts = Counter(r.speaker for r in part if r.label == "bonafide")
        assert counts["allison"] in (int(40 * f), int(40 * f) + 1)
        assert counts["jackson"] in (int(20 * f), int(20 * f) + 1)
        tts = Counter(r.speaker for r in part if r.attack in ("espeak", "flite"))
        assert set(tts) == {"espeak-en", "flite-kal"}
        # other splits untouched, input order kept
        assert [r for r in kept[f] if r.split == "dev"] == [r for r in rows if r.split == "dev"]
        order = [rows.index(r) for r in kept[f]]
        assert order == sorted(order)


def test_resyntheses_follow_their_bonafide_clip() -> None:
    rows = _corpus()
    for f in (0.2, 0.5):
        kept = {r.path for r in train_fraction(rows, f, seed=1)}
        for r in rows:
            if r.attack == "griffinlim":
                bona = r.path.replace("/resynth/griffinlim__real__", "/real/")
                assert (r.path in kept) == (bona in kept), r.path


def test_single_clip_talkers_stay_with_probability_fraction() -> None:
    rows = _corpus()
    kept = [
        r
        for r in train_fraction(rows, 0.5, seed=0)
        if r.speaker.startswith("libri") and r.label == "bonafide"
    ]
    assert 5 <= len(kept) <= 25  # 30 talkers of one clip, each kept with probability 0.5
    other_seed = [r for r in train_fraction(rows, 0.5, seed=7) if r.speaker.startswith("libri")]
    assert {r.path for r in kept} != {r.path for r in other_seed if r.label == "bonafide"}


def test_paired_bonafide_parses_the_corpus_name() -> None:
    bona = {("real", "a.flac"): "/c/real/a.flac"}
    spoof = Utterance("/c/resynth/world__real__a.flac", "spoof", "world", "s", "train")
    assert paired_bonafide(spoof, bona) == "/c/real/a.flac"
    assert paired_bonafide(Utterance("/c/resynth/lpc__real__a.flac", "spoof", "world", "s"), bona) is None
    assert paired_bonafide(Utterance("/c/tts/espeak_1.flac", "spoof", "espeak", "s"), bona) is None


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5, float("nan")])
def test_bad_fraction_is_a_data_error(fraction: float) -> None:
    with pytest.raises(DataError, match="fraction"):
        train_fraction(_corpus(), fraction)


def test_missing_split_and_empty_result_are_data_errors() -> None:
    with pytest.raises(DataError, match="no row of split 'train'"):
        train_fraction([r for r in _corpus() if r.split == "dev"], 0.5)
    one = [Utterance("/c/a.flac", "bonafide", "-", "s", "train")]
    with pytest.raises(DataError, match="keeps none"):
        train_fraction(one, 1e-9)  # one stratum of one row, kept with probability 1e-9


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_manifest(tmp_path / "in.tsv", _corpus(), relative=False)
    out = tmp_path / "half.tsv"
    assert main([str(src), "-o", str(out), "--fraction", "0.5", "--seed", "3"]) == 0
    assert [r.path for r in read_manifest(out)] == [r.path for r in train_fraction(_corpus(), 0.5, seed=3)]
    assert '"fraction": 0.5' in capsys.readouterr().out
    assert main([str(src), "-o", str(out), "--fraction", "2"]) == 2
    assert "0 < fraction <= 1" in capsys.readouterr().err
