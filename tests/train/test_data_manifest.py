"""Manifest reader/writer and validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spoof_train.data import Utterance, check_splits, read_manifest, select_split, write_manifest
from spoof_train.errors import DataError

HEADER = "path\tlabel\tattack\tspeaker\tsplit\tseconds\n"


def _write(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    p = tmp_path / "m.tsv"
    p.write_text(header + body, encoding="utf-8")
    return p


def test_roundtrip_keeps_extra_columns(tmp_path: Path) -> None:
    rows = [
        Utterance(str(tmp_path / "a" / "x.wav"), "bonafide", "-", "spk1", "train", {"seconds": "1.5"}),
        Utterance(
            str(tmp_path / "b" / "y.flac"), "spoof", "A01", "spk2", "dev", {"seconds": "2.0", "codec": "gsm"}
        ),
        Utterance("/elsewhere/z.wav", "spoof", "A02", "spk3", "dev"),
    ]
    out = write_manifest(tmp_path / "m.tsv", rows)
    lines = out.read_text().splitlines()
    assert lines[0] == "path\tlabel\tattack\tspeaker\tsplit\tseconds\tcodec"
    assert lines[1] == "a/x.wav\tbonafide\t-\tspk1\ttrain\t1.5\t-"
    assert lines[3].startswith("/elsewhere/z.wav\t")
    back = read_manifest(out)
    assert [r.path for r in back] == [r.path for r in rows]
    assert back[1].extra == {"seconds": "2.0", "codec": "gsm"}
    assert back[0].label_id == 0
    assert back[1].label_id == 1
    assert back[1].id == "y"
    assert read_manifest(out, splits=["dev"]) == back[1:]


def test_root_overrides_manifest_dir(tmp_path: Path) -> None:
    p = _write(tmp_path, "audio/x.wav\tbonafide\t-\ts\ttrain\t1.0\n")
    assert read_manifest(p)[0].path == str(tmp_path.resolve() / "audio" / "x.wav")
    assert read_manifest(p, root="/data/corpus")[0].path == "/data/corpus/audio/x.wav"


@pytest.mark.parametrize(
    ("body", "header", "match"),
    [
        (
            "x.wav\tfake\t-\ts\ttrain\t1\n",
            HEADER,
            r"m.tsv:2: unknown label 'fake'; expected one of \['bonafide', 'spoof'\]",
        ),
        ("x.wav\tbonafide\t-\ts\ttrain\n", HEADER, r"m.tsv:2: expected 6 tab-separated fields .* got 5"),
        (
            "x.wav\tbonafide\t-\ttrain\n",
            "path\tlabel\tattack\tsplit\n",
            r"m.tsv:1: missing required columns \['speaker'\]",
        ),
        ("", HEADER, "manifest has a header but no rows"),
        ("", "", "empty manifest"),
        ("\tbonafide\t-\ts\ttrain\t1\n", HEADER, "m.tsv:2: empty path"),
        (
            "x.wav\tbonafide\t-\ts\ttrain\t1\n# comment\nx.wav\tspoof\tA1\ts\ttrain\t1\n",
            HEADER,
            r"m.tsv:4: duplicate path 'x.wav' \(first at line 2\)",
        ),
    ],
)
def test_validation_errors_name_the_line(tmp_path: Path, body: str, header: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        read_manifest(_write(tmp_path, body, header))


def test_missing_manifest_and_empty_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path / "nope.tsv")
    p = _write(
        tmp_path,
        "x.wav\tbonafide\t-\ts\ttrain\t1\ny.wav\tspoof\tA\ts\ttrain\t1\nz.wav\tspoof\tA\ts\tdev\t1\n",
    )
    with pytest.raises(DataError, match=r"split 'eval' is empty; splits present: \['dev', 'train'\]"):
        read_manifest(p, splits=["eval"])
    rows = read_manifest(p)
    assert len(select_split(rows, "train", both_labels=True)) == 2
    with pytest.raises(DataError, match="split 'dev' has no bonafide rows"):
        select_split(rows, "dev", both_labels=True)
    assert check_splits(rows, ["train"])["train"] == {"bonafide": 1, "spoof": 1}


def test_utterance_and_writer_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="label must be one of"):
        Utterance("x.wav", "genuine")
    with pytest.raises(DataError, match="may not contain tabs or newlines"):
        write_manifest(tmp_path / "m.tsv", [Utterance("x.wav", "spoof", "A\t1")])
    with pytest.raises(DataError, match="no rows to write"):
        write_manifest(tmp_path / "m.tsv", [])


def test_corpus_v1_manifest_reads(corpus_dir: Path) -> None:
    rows = read_manifest(corpus_dir / "MANIFEST.tsv")
    counts = check_splits(rows, ["train", "dev", "test"], both_labels=True)
    assert counts["train"] == {"bonafide": 868, "spoof": 1735}
    assert set(rows[0].extra) >= {"source", "sample_rate", "seconds", "channel"}
    assert Path(rows[0].path).is_file()


text_st = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\t\n\r\x85"),
    min_size=1,
    max_size=12,
).filter(lambda t: t.strip() == t and not t.startswith("#"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fields=st.lists(
        st.tuples(text_st, st.sampled_from(["bonafide", "spoof"]), text_st, text_st, text_st, text_st),
        min_size=1,
        max_size=8,
        unique_by=lambda f: f[0],
    )
)
def test_write_read_roundtrip_property(tmp_path: Path, fields: list[tuple[str, ...]]) -> None:
    rows = [
        Utterance(str(tmp_path / f"f{i}" / name), label, attack, speaker, split, {"note": note})
        for i, (name, label, attack, speaker, split, note) in enumerate(fields)
    ]
    back = read_manifest(write_manifest(tmp_path / "prop.tsv", rows))
    assert [(r.label, r.attack, r.speaker, r.split, dict(r.extra)) for r in back] == [
        (r.label, r.attack, r.speaker, r.split, dict(r.extra)) for r in rows
    ]
    assert [Path(r.path) for r in back] == [Path(r.path).resolve() for r in rows]


def test_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    p = tmp_path / "bom.tsv"
    p.write_bytes("\ufeffpath\tlabel\tattack\tspeaker\tsplit\nx.wav\tspoof\tA1\ts\ttrain\n".encode())
    assert read_manifest(p)[0].attack == "A1"
