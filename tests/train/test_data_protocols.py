"""Protocol parsers on small synthetic files in each real format (tests/train/data/)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spoof_train.data import (
    make_manifest,
    parse_asvspoof5,
    parse_asvspoof2019_la,
    parse_asvspoof2021,
    parse_folders,
    parse_in_the_wild,
    read_manifest,
)
from spoof_train.errors import DataError

DATA = Path(__file__).parent / "data"


def _wav(path: Path, n: int = 800, sr: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * np.sin(np.arange(n) / 7.0)).astype(np.float32), sr)


def test_asvspoof2019_la(tmp_path: Path) -> None:
    rows = parse_asvspoof2019_la(DATA / "ASVspoof2019.LA.cm.train.trn.txt", tmp_path)
    assert [(r.id, r.label, r.attack, r.speaker, r.split) for r in rows] == [
        ("LA_T_1138215", "bonafide", "-", "LA_0079", "train"),
        ("LA_T_1271820", "bonafide", "-", "LA_0079", "train"),
        ("LA_T_1731255", "spoof", "A01", "LA_0098", "train"),
        ("LA_T_1000137", "spoof", "A04", "LA_0098", "train"),
        ("LA_T_1022412", "spoof", "A06", "LA_0081", "train"),
    ]
    assert rows[0].path == str(tmp_path / "LA_T_1138215.flac")
    odd = tmp_path / "protocol.txt"  # no split in the file name, odd ids: split from the prefix or "-"
    odd.write_text("LA_0079 LA_E_1 - - bonafide\nLA_0079 weird-id - A01 spoof\n")
    assert [r.split for r in parse_asvspoof2019_la(odd, tmp_path)] == ["eval", "-"]
    odd.write_text("LA_0079 LA_E_1 - bonafide\n")
    with pytest.raises(DataError, match=r"protocol.txt:1: expected 5 columns .* got 4"):
        parse_asvspoof2019_la(odd, tmp_path)
    dev = parse_asvspoof2019_la(DATA / "ASVspoof2019.LA.cm.dev.trl.txt", tmp_path)
    assert {r.split for r in dev} == {"dev"}
    # the archive layout ASVspoof2019_LA_train/flac/ is found from its parent
    (tmp_path / "flac").mkdir()
    rows = parse_asvspoof2019_la(DATA / "ASVspoof2019.LA.cm.train.trn.txt", tmp_path)
    assert rows[0].path == str(tmp_path / "flac" / "LA_T_1138215.flac")


def test_asvspoof2021_la_phases(tmp_path: Path) -> None:
    proto = DATA / "asvspoof2021_LA" / "CM" / "trial_metadata.txt"
    rows = parse_asvspoof2021(proto, tmp_path)  # default: eval phase only
    assert [(r.id, r.label, r.attack, r.split) for r in rows] == [
        ("LA_E_9332881", "spoof", "A07", "eval"),
        ("LA_E_5013670", "bonafide", "-", "eval"),
        ("LA_E_8850023", "bonafide", "-", "eval"),
    ]
    assert rows[0].extra == {"codec": "alaw", "transmission": "ita_tx", "trim": "notrim", "phase": "eval"}
    prog = parse_asvspoof2021(proto, tmp_path, phases=["progress"])
    assert [r.id for r in prog] == ["LA_E_7465241", "LA_E_1000147"]
    hidden = parse_asvspoof2021(proto, tmp_path, phases=["hidden"])
    assert [(r.id, r.split, r.extra["trim"]) for r in hidden] == [("LA_E_3300219", "hidden", "trim")]
    assert len(parse_asvspoof2021(proto, tmp_path, phases=None)) == 6


def test_asvspoof2021_df(tmp_path: Path) -> None:
    proto = DATA / "asvspoof2021_DF" / "CM" / "trial_metadata.txt"
    rows = parse_asvspoof2021(proto, tmp_path, phases=["eval"])
    assert [(r.id, r.label, r.attack, r.speaker) for r in rows] == [
        ("DF_E_2000026", "spoof", "A09", "LA_0043"),
        ("DF_E_2000051", "spoof", "Task1-team20", "VCC2018_SF1"),
        ("DF_E_2000058", "bonafide", "-", "VCC2020_TEF1"),
    ]
    assert rows[0].extra == {
        "codec": "mp3m4a",
        "source": "asvspoof",
        "trim": "notrim",
        "phase": "eval",
        "vocoder": "traditional_vocoder",
    }
    assert [r.id for r in parse_asvspoof2021(proto, tmp_path, phases=["hidden"])] == ["DF_E_2000092"]


def test_asvspoof2021_errors(tmp_path: Path) -> None:
    proto = DATA / "asvspoof2021_LA" / "CM" / "trial_metadata.txt"
    with pytest.raises(DataError, match="expected 13 columns of an ASVspoof 2021 DF"):
        parse_asvspoof2021(proto, tmp_path, track="DF")
    with pytest.raises(
        DataError, match=r"phases: expected a subset of progress, eval, hidden; got \['final'\]"
    ):
        parse_asvspoof2021(proto, tmp_path, phases=["final"])
    trials = tmp_path / "ASVspoof2021.LA.cm.eval.trl.txt"
    trials.write_text("LA_E_9332881\nLA_E_5013670\n")
    with pytest.raises(DataError, match="a trial list without keys has no labels"):
        parse_asvspoof2021(trials, tmp_path)
    only_eval = tmp_path / "eval_only.txt"
    only_eval.write_text("LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n")
    with pytest.raises(DataError, match=r"no rows in phases \['progress'\]; phases present: \['eval'\]"):
        parse_asvspoof2021(only_eval, tmp_path, phases=["progress"])
    bad = tmp_path / "bad.txt"
    bad.write_text("LA_0009 LA_E_9332881 alaw ita_tx A07 fake notrim eval\n")
    with pytest.raises(DataError, match=r"bad.txt:1: unknown label 'fake' in column 6"):
        parse_asvspoof2021(bad, tmp_path)


def test_asvspoof5(tmp_path: Path) -> None:
    rows = parse_asvspoof5(DATA / "asvspoof5" / "ASVspoof5.train.tsv", tmp_path)
    assert [(r.id, r.label, r.attack, r.speaker, r.split) for r in rows] == [
        ("T_0000000000", "spoof", "A05", "T_4850", "train"),
        ("T_0000000011", "bonafide", "-", "T_3734", "train"),
        ("T_0000000024", "spoof", "A02", "T_1263", "train"),
    ]
    assert rows[0].extra == {
        "gender": "F",
        "codec": "-",
        "codec_q": "-",
        "codec_seed": "-",
        "attack_tag": "AC3",
    }
    dev = parse_asvspoof5(DATA / "asvspoof5" / "ASVspoof5.dev.track_1.tsv", tmp_path)
    assert [(r.split, r.label) for r in dev] == [("dev", "spoof"), ("dev", "bonafide")]
    ev = parse_asvspoof5(DATA / "asvspoof5" / "ASVspoof5.eval.track_1.tsv", tmp_path)
    assert [(r.split, r.attack, r.extra["codec"]) for r in ev] == [
        ("eval", "A23", "C05"),
        ("eval", "-", "C11"),
    ]
    pre = parse_asvspoof5(DATA / "asvspoof5" / "prerelease.train.txt", tmp_path)
    assert [(r.label, r.attack, r.split) for r in pre] == [
        ("spoof", "A05", "train"),
        ("bonafide", "-", "train"),
    ]
    bad = tmp_path / "ASVspoof5.train.tsv"
    bad.write_text("T_4850 T_0000000000 F - - - AC3 A05 spoof\n")
    with pytest.raises(DataError, match=r"ASVspoof5.train.tsv:1: expected 10 columns .* got 9"):
        parse_asvspoof5(bad, tmp_path)


def test_in_the_wild(tmp_path: Path) -> None:
    rows = parse_in_the_wild(DATA / "in_the_wild" / "meta.csv", tmp_path)
    assert [(r.id, r.label, r.attack, r.speaker, r.split) for r in rows] == [
        ("0", "spoof", "unknown", "Alec Guinness", "eval"),
        ("1", "bonafide", "-", "Alec Guinness", "eval"),
        ("2", "bonafide", "-", "Barack Obama", "eval"),
        ("3", "spoof", "unknown", "Donald Trump", "eval"),
    ]
    assert rows[0].path == str(tmp_path / "0.wav")
    default_root = parse_in_the_wild(DATA / "in_the_wild" / "meta.csv")
    assert default_root[0].path == str(DATA / "in_the_wild" / "0.wav")
    bad = tmp_path / "meta.csv"
    bad.write_text("file,speaker,label\n0.wav,X,fake\n")
    with pytest.raises(DataError, match=r"meta.csv:2: unknown label 'fake'; expected 'bona-fide' or 'spoof'"):
        parse_in_the_wild(bad)
    bad.write_text("name,label\n0.wav,spoof\n")
    with pytest.raises(DataError, match="expected the header 'file,speaker,label'"):
        parse_in_the_wild(bad)


def test_folders_single_and_split_layouts(tmp_path: Path) -> None:
    one = tmp_path / "one"
    _wav(one / "bonafide" / "a.wav")
    _wav(one / "bonafide" / "sub" / "b.flac")
    _wav(one / "spoof" / "tts_x" / "c.wav")
    _wav(one / "spoof" / "d.wav")
    (one / "spoof" / "notes.txt").write_text("not audio")
    rows = parse_folders(one, split="dev")
    assert sorted((r.id, r.label, r.attack, r.split) for r in rows) == [
        ("a", "bonafide", "-", "dev"),
        ("b", "bonafide", "-", "dev"),
        ("c", "spoof", "tts_x", "dev"),
        ("d", "spoof", "unknown", "dev"),
    ]
    many = tmp_path / "many"
    _wav(many / "train" / "bonafide" / "a.wav")
    _wav(many / "train" / "spoof" / "b.wav")
    _wav(many / "test" / "spoof" / "c.wav")
    assert sorted((r.id, r.split) for r in parse_folders(many)) == [
        ("a", "train"),
        ("b", "train"),
        ("c", "test"),
    ]
    with pytest.raises(DataError, match=r"expected .*bonafide and .*spoof"):
        parse_folders(tmp_path / "one" / "bonafide" / "sub")


def test_make_manifest_roundtrip_and_missing_files(tmp_path: Path) -> None:
    audio = tmp_path / "LA" / "flac"
    for utt in (
        "LA_T_1138215",
        "LA_T_1271820",
        "LA_T_1731255",
        "LA_T_1000137",
        "LA_D_1047731",
        "LA_D_1105538",
    ):
        _wav(audio / f"{utt}.flac")
    out = tmp_path / "manifests" / "la2019.tsv"
    with pytest.raises(DataError, match=r"1 of 7 audio files are missing \(first: .*LA_T_1022412.flac\)"):
        make_manifest(
            "asvspoof2019-la",
            [DATA / "ASVspoof2019.LA.cm.train.trn.txt", DATA / "ASVspoof2019.LA.cm.dev.trl.txt"],
            tmp_path / "LA",
            out,
        )
    assert not out.exists()
    make_manifest(
        "asvspoof2019-la",
        [DATA / "ASVspoof2019.LA.cm.train.trn.txt", DATA / "ASVspoof2019.LA.cm.dev.trl.txt"],
        tmp_path / "LA",
        out,
        on_missing="skip",
    )
    rows = read_manifest(out)
    assert len(rows) == 6
    assert {r.split for r in rows} == {"train", "dev"}
    assert all(Path(r.path).is_file() for r in rows)
    assert out.read_text().splitlines()[0] == "path\tlabel\tattack\tspeaker\tsplit"


def test_make_manifest_every_format(tmp_path: Path) -> None:
    cases = {
        "asvspoof2021-la": DATA / "asvspoof2021_LA" / "CM" / "trial_metadata.txt",
        "asvspoof2021-df": DATA / "asvspoof2021_DF" / "CM" / "trial_metadata.txt",
        "asvspoof5": DATA / "asvspoof5" / "ASVspoof5.train.tsv",
        "in-the-wild": tmp_path / "itw" / "meta.csv",
    }
    (tmp_path / "itw").mkdir()
    shutil.copy(DATA / "in_the_wild" / "meta.csv", cases["in-the-wild"])
    for fmt, proto in cases.items():
        out = make_manifest(fmt, proto, tmp_path / "audio", tmp_path / f"{fmt}.tsv", check_files=False)
        rows = read_manifest(out)
        assert rows
        assert {r.label for r in rows} <= {"bonafide", "spoof"}
    _wav(tmp_path / "f" / "bonafide" / "x.wav")
    _wav(tmp_path / "f" / "spoof" / "y.wav")
    out = make_manifest("folders", None, tmp_path / "f", tmp_path / "f" / "m.tsv")
    assert out.read_text().splitlines()[1:] == [
        "bonafide/x.wav\tbonafide\t-\t-\ttrain",
        "spoof/y.wav\tspoof\tunknown\t-\ttrain",
    ]
    with pytest.raises(DataError, match="format: expected one of"):
        make_manifest("asvspoof2015", None, tmp_path, tmp_path / "x.tsv")
