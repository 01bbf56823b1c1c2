"""Parsers from the public anti-spoofing protocol formats to manifest rows.

Every parser returns ``list[Utterance]`` with absolute audio paths; :func:`make_manifest` runs one and writes
the manifest (the function behind ``spoof-train``'s data command). Formats (whitespace-separated unless
noted):


``asvspoof2019-la``  ``ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt``, 5 columns::

        SPEAKER  UTT_ID  -  ATTACK  KEY          e.g. LA_0079 LA_T_1138215 - - bonafide
                                                      LA_0098 LA_T_1731255 - A01 spoof
    split from the file name (train/dev/eval) or the id prefix (LA_T / LA_D / LA_E).

``asvspoof2021-la``  keys ``LA/CM/trial_metadata.txt`` (LA-keys-full), 8 columns (eval-package/config.py)::

        SPEAKER UTT_ID CODEC TRANSMISSION ATTACK KEY TRIM SUBSET
        e.g. LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval

``asvspoof2021-df``  keys ``DF/CM/trial_metadata.txt`` (DF-keys-full), 13 columns::

        SPEAKER UTT_ID COMPR SOURCE ATTACK KEY TRIM SUBSET VOCODER TASK TEAM GENDER_PAIR LANGUAGE
        e.g. LA_0043 DF_E_2000026 mp3m4a asvspoof A09 spoof notrim eval traditional_vocoder - - - -
    SUBSET is the phase: progress | eval | hidden (the stage-1 package wrote hidden_track); ``phases``
    filters on it and it becomes the manifest split.

``asvspoof5``  ``ASVspoof5.{train,dev.track_1,eval.track_1}.tsv`` (v1.0; space-separated despite the name)::

        SPEAKER FLAC_FILE GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP
        e.g. T_4850 T_0000000000 F - - - AC3 A05 spoof -
             T_3734 T_0000000011 F - - - - bonafide bonafide -
    The 6-column pre-release layout ``SPEAKER FILE GENDER CODEC ATTACK KEY`` is read too.

``in-the-wild``  ``release_in_the_wild/meta.csv`` (comma-separated, header ``file,speaker,label``, labels
    ``bona-fide`` / ``spoof``), audio next to meta.csv.

``folders``  ``ROOT/bonafide/**`` and ``ROOT/spoof/**`` (``spoof/<attack>/...`` names the attack), or
    ``ROOT/<split>/{bonafide,spoof}/**`` for several splits.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from spoof_train.data.manifest import Utterance, write_manifest
from spoof_train.errors import DataError

__all__ = [
    "FORMATS",
    "make_manifest",
    "parse_asvspoof5",
    "parse_asvspoof2019_la",
    "parse_asvspoof2021",
    "parse_folders",
    "parse_in_the_wild",
]

logger = logging.getLogger("spoof_train")

AUDIO_EXTENSIONS = (".flac", ".wav", ".mp3", ".ogg", ".opus", ".m4a", ".au", ".aiff")
_PHASE_ALIASES = {"hidden_track": "hidden"}


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise DataError(f"protocol file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read protocol file {path}: {exc}") from exc
    out = [(i + 1, ln.split()) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not out:
        raise DataError(f"{path}: protocol file has no rows")
    return out


def _audio_dir(audio_root: str | Path) -> Path:
    """``audio_root`` itself, or its ``flac/`` subfolder as the ASVspoof archives unpack."""
    root = Path(audio_root)
    if (root / "flac").is_dir() and not any(root.glob("*.flac")):
        return root / "flac"
    return root


def _key(value: str, path: Path, lineno: int, column: str) -> str:
    if value not in ("bonafide", "spoof"):
        raise DataError(
            f"{path}:{lineno}: unknown label {value!r} in column {column}; expected bonafide or spoof"
        )
    return value


def _split_from_name(path: Path, default: str | None) -> str | None:
    name = path.name.lower()
    for split in ("train", "dev", "eval", "test"):
        if re.search(rf"(^|[._-]){split}([._-]|$)", name):
            return split
    return default


def parse_asvspoof2019_la(
    protocol_path: str | Path, audio_root: str | Path, *, split: str | None = None, ext: str = ".flac"
) -> list[Utterance]:
    """ASVspoof 2019 LA CM protocol (5 columns) -> manifest rows; see the module docstring."""
    path = Path(protocol_path)
    adir = _audio_dir(audio_root)
    file_split = split or _split_from_name(path, None)
    rows = []
    for lineno, f in _lines(path):
        if len(f) != 5:
            raise DataError(
                f"{path}:{lineno}: expected 5 columns (SPEAKER UTT_ID - ATTACK KEY) of an ASVspoof 2019 LA "
                f"protocol, got {len(f)}: {' '.join(f)!r}"
            )
        speaker, utt, _, attack, key = f
        label = _key(key, path, lineno, "5 (KEY)")
        m = re.match(r"^[A-Za-z]+_([TDE])_", utt)
        row_split = file_split or ({"T": "train", "D": "dev", "E": "eval"}[m.group(1)] if m else "-")
        rows.append(
            Utterance(
                path=str(adir / f"{utt}{ext}"),
                label=label,
                attack="-" if label == "bonafide" else attack,
                speaker=speaker,
                split=row_split,
            )
        )
    return rows


def parse_asvspoof2021(
    protocol_path: str | Path,
    audio_root: str | Path,
    *,
    track: str | None = None,
    phases: Iterable[str] | None = ("eval",),
    ext: str = ".flac",
) -> list[Utterance]:
    """ASVspoof 2021 LA or DF keys (``trial_metadata.txt``) -> manifest rows of the chosen phases.

    ``track`` is "LA" or "DF" (default: from the column count, 8 = LA, 13 = DF). ``phases`` keeps rows whose
    SUBSET column is one of them (progress / eval / hidden; ``hidden_track`` counts as hidden; None = all);
    the phase becomes the row's split. A plain trial list without keys is rejected: it has no labels.
    """
    path = Path(protocol_path)
    adir = _audio_dir(audio_root)
    wanted = None if phases is None else {_PHASE_ALIASES.get(p, p) for p in phases}
    if wanted is not None and not wanted <= {"progress", "eval", "hidden"}:
        raise DataError(f"phases: expected a subset of progress, eval, hidden; got {sorted(wanted)}")
    lines = _lines(path)
    if track is None:
        n = len(lines[0][1])
        track = {8: "LA", 13: "DF"}.get(n)
        if track is None:
            hint = (
                " (a trial list without keys has no labels: use the keys' trial_metadata.txt)"
                if n == 1
                else ""
            )
            raise DataError(
                f"{path}:{lines[0][0]}: cannot tell the ASVspoof 2021 track from {n} columns; expected 8 (LA "
                f"trial_metadata.txt) or 13 (DF trial_metadata.txt){hint}"
            )
    track = track.upper()
    if track not in ("LA", "DF"):
        raise DataError(f"track: expected 'LA' or 'DF', got {track!r}")
    ncols = 8 if track == "LA" else 13
    rows = []
    phases_seen: set[str] = set()
    for lineno, f in lines:
        if len(f) != ncols:
            raise DataError(
                f"{path}:{lineno}: expected {ncols} columns of an ASVspoof 2021 {track} trial_metadata.txt, "
                f"got {len(f)}: {' '.join(f)!r}"
            )
        label = _key(f[5], path, lineno, "6 (KEY)")
        phase = _PHASE_ALIASES.get(f[7], f[7])
        phases_seen.add(phase)
        if wanted is not None and phase not in wanted:
            continue
        attack = (
            f[4]
            if label == "spoof" and f[4] not in ("-", "bonafide")
            else ("-" if label == "bonafide" else "unknown")
        )
        if track == "LA":
            extra = {"codec": f[2], "transmission": f[3], "trim": f[6], "phase": phase}
        else:
            extra = {"codec": f[2], "source": f[3], "trim": f[6], "phase": phase, "vocoder": f[8]}
        rows.append(
            Utterance(
                path=str(adir / f"{f[1]}{ext}"),
                label=label,
                attack=attack,
                speaker=f[0],
                split=phase,
                extra=extra,
            )
        )
    if not rows:
        raise DataError(
            f"{path}: no rows in phases {sorted(wanted or [])}; phases present: {sorted(phases_seen)}"
        )
    return rows


def parse_asvspoof5(
    protocol_path: str | Path, audio_root: str | Path, *, split: str | None = None, ext: str = ".flac"
) -> list[Utterance]:
    """ASVspoof 5 protocol (10-column v1.0 or 6-column pre-release) -> manifest rows.

    Split from ``split``, else the file name (train / dev / eval), else the id prefix (T_ / D_ / E_).
    Extra columns: gender, codec, codec_q, codec_seed, attack_tag (v1.0).
    """
    path = Path(protocol_path)
    adir = _audio_dir(audio_root)
    file_split = split or _split_from_name(path, None)
    rows = []
    for lineno, f in _lines(path):
        if len(f) == 10:
            speaker, utt, gender, codec, codec_q, codec_seed, attack_tag, attack_label, key, _ = f
            extra = {
                "gender": gender,
                "codec": codec,
                "codec_q": codec_q,
                "codec_seed": codec_seed,
                "attack_tag": attack_tag,
            }
            key_col = "9 (KEY)"
        elif len(f) == 6:
            speaker, utt, gender, codec, attack_label, key = f
            extra = {"gender": gender, "codec": codec}
            key_col = "6 (KEY)"
        else:
            raise DataError(
                f"{path}:{lineno}: expected 10 columns (SPEAKER FLAC_FILE GENDER CODEC CODEC_Q CODEC_SEED "
                f"ATTACK_TAG ATTACK_LABEL KEY TMP) of an ASVspoof 5 protocol, got {len(f)}: {' '.join(f)!r}"
            )
        label = _key(key, path, lineno, key_col)
        row_split = file_split or {"T": "train", "D": "dev", "E": "eval"}.get(utt[:1], "-")
        attack = (
            "-"
            if label == "bonafide"
            else (attack_label if attack_label not in ("-", "bonafide") else "unknown")
        )
        rows.append(
            Utterance(
                path=str(adir / f"{utt}{ext}"),
                label=label,
                attack=attack,
                speaker=speaker,
                split=row_split,
                extra=extra,
            )
        )
    return rows


def parse_in_the_wild(
    meta_csv: str | Path, audio_root: str | Path | None = None, *, split: str = "eval"
) -> list[Utterance]:
    """In-the-Wild ``meta.csv`` (``file,speaker,label``; ``bona-fide`` / ``spoof``) -> manifest rows.

    Audio is looked up in ``audio_root`` (default: meta.csv's folder). The data set names no attacks: spoofs
    get attack ``"unknown"``. All rows go to ``split`` (In-the-Wild is an evaluation set).
    """
    path = Path(meta_csv)
    root = Path(audio_root) if audio_root is not None else path.parent
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise DataError(f"meta.csv not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != ["file", "speaker", "label"]:
        raise DataError(
            f"{path}:1: expected the header 'file,speaker,label' of In-the-Wild meta.csv, got {header}"
        )
    labels = {"bona-fide": "bonafide", "bonafide": "bonafide", "spoof": "spoof"}
    rows = []
    for lineno, rec in enumerate(reader, start=2):
        if not rec or not "".join(rec).strip():
            continue
        if len(rec) != 3:
            raise DataError(f"{path}:{lineno}: expected 3 fields (file,speaker,label), got {len(rec)}: {rec}")
        fname, speaker, raw = (x.strip() for x in rec)
        label = labels.get(raw)
        if label is None:
            raise DataError(f"{path}:{lineno}: unknown label {raw!r}; expected 'bona-fide' or 'spoof'")
        rows.append(
            Utterance(
                path=str(root / fname),
                label=label,
                attack="-" if label == "bonafide" else "unknown",
                speaker=speaker.replace("\t", " ") or "-",
                split=split,
            )
        )
    if not rows:
        raise DataError(f"{path}: meta.csv has a header but no rows")
    return rows


def _scan(folder: Path, label: str, split: str, extensions: Sequence[str]) -> list[Utterance]:
    rows = []
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions):
        rel = f.relative_to(folder).parts
        attack = "-" if label == "bonafide" else (rel[0] if len(rel) > 1 else "unknown")
        rows.append(Utterance(path=str(f.resolve()), label=label, attack=attack, speaker="-", split=split))
    return rows


def parse_folders(
    root: str | Path, *, split: str = "train", extensions: Sequence[str] = AUDIO_EXTENSIONS
) -> list[Utterance]:
    """``ROOT/bonafide`` + ``ROOT/spoof`` (one split), or ``ROOT/<split>/{bonafide,spoof}`` -> manifest rows.

    Files are found recursively; under ``spoof/`` the first sub-folder names the attack
    (``spoof/tts_x/a.wav`` -> attack ``tts_x``; files directly in ``spoof/`` get ``unknown``).
    """
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"folders: {base} is not a directory")
    exts = tuple(e.lower() for e in extensions)
    if (base / "bonafide").is_dir() or (base / "spoof").is_dir():
        layout = [(split, base)]
    else:
        layout = [
            (d.name, d) for d in sorted(base.iterdir()) if (d / "bonafide").is_dir() or (d / "spoof").is_dir()
        ]
        if not layout:
            raise DataError(
                f"folders: expected {base}/bonafide and {base}/spoof, or {base}/<split>/bonafide|spoof; "
                f"found {sorted(p.name for p in base.iterdir())[:10]}"
            )
    rows: list[Utterance] = []
    for sp, d in layout:
        for label in ("bonafide", "spoof"):
            if (d / label).is_dir():
                rows.extend(_scan(d / label, label, sp, exts))
    if not rows:
        raise DataError(f"folders: no audio files with extensions {list(exts)} under {base}")
    return rows


FORMATS = ("asvspoof2019-la", "asvspoof2021-la", "asvspoof2021-df", "asvspoof5", "in-the-wild", "folders")


def make_manifest(
    format: str,
    protocol_path: str | Path | Sequence[str | Path] | None,
    audio_root: str | Path | Sequence[str | Path] | None,
    out_path: str | Path,
    *,
    split: str | None = None,
    phases: Iterable[str] | None = ("eval",),
    check_files: bool = True,
    on_missing: str = "raise",
) -> Path:
    """Parse protocol file(s) of ``format`` and write a manifest to ``out_path``; returns the path written.

    ``format`` is one of :data:`FORMATS`. ``protocol_path`` / ``audio_root`` may be lists of equal length to
    merge several protocol files (e.g. the 2019 train, dev and eval protocols with their audio folders); one
    ``audio_root`` serves all. For ``folders`` ``protocol_path`` is unused and ``audio_root`` is the root.
    With ``check_files`` each audio file must exist: ``on_missing="raise"`` fails listing the first missing
    files, ``"skip"`` drops them with a warning. Raises :class:`DataError` for anything unparsable.
    """
    if format not in FORMATS:
        raise DataError(f"format: expected one of {list(FORMATS)}, got {format!r}")
    if on_missing not in ("raise", "skip"):
        raise DataError(f"on_missing: expected 'raise' or 'skip', got {on_missing!r}")

    def as_list(v: str | Path | Sequence[str | Path] | None) -> list[str | Path | None]:
        if v is None or isinstance(v, (str, Path)):
            return [v]
        return list(v)

    protocols, roots = as_list(protocol_path), as_list(audio_root)
    if len(roots) == 1 and len(protocols) > 1:
        roots = roots * len(protocols)
    if len(roots) != len(protocols):
        raise DataError(f"got {len(protocols)} protocol files but {len(roots)} audio roots")
    rows: list[Utterance] = []
    for proto, root in zip(protocols, roots, strict=True):
        if format == "folders":
            if root is None:
                raise DataError("folders: audio_root (the folder holding bonafide/ and spoof/) is required")
            rows.extend(parse_folders(root, split=split or "train"))
            continue
        if proto is None:
            raise DataError(f"{format}: protocol_path is required")
        if format == "in-the-wild":
            rows.extend(parse_in_the_wild(proto, root, split=split or "eval"))
            continue
        if root is None:
            raise DataError(f"{format}: audio_root is required")
        if format == "asvspoof2019-la":
            rows.extend(parse_asvspoof2019_la(proto, root, split=split))
        elif format == "asvspoof5":
            rows.extend(parse_asvspoof5(proto, root, split=split))
        else:
            rows.extend(parse_asvspoof2021(proto, root, track=format[-2:].upper(), phases=phases))
    if check_files:
        missing = [r for r in rows if not Path(r.path).is_file()]
        if missing:
            listed = ", ".join(r.path for r in missing[:5])
            if on_missing == "raise":
                raise DataError(
                    f"{len(missing)} of {len(rows)} audio files are missing (first: {listed}); "
                    "check audio_root or pass on_missing='skip'"
                )
            logger.warning(
                "make_manifest: skipping %d of %d missing audio files (first: %s)",
                len(missing),
                len(rows),
                listed,
            )
            gone = {r.path for r in missing}
            rows = [r for r in rows if r.path not in gone]
            if not rows:
                raise DataError("make_manifest: every audio file is missing")
    out = write_manifest(out_path, rows)
    logger.info("make_manifest: wrote %d rows (%s) to %s", len(rows), format, out)
    return out
