"""The manifest format: one TSV row per utterance.

A manifest is a UTF-8 tab-separated file with a header line. Required columns (any order)::

    path     audio file, relative to the manifest's directory (or to ``root``), or absolute
    label    bonafide | spoof
    attack   attack / generator id; "-" for bona fide
    speaker  talker id ("-" when unknown)
    split    train | dev | eval | test | ... (free text; rows are selected by it)

Any further columns (``source``, ``sample_rate``, ``seconds``, ``codec``, ...) are kept verbatim in
``Utterance.extra`` and written back. The corpus-v1 ``MANIFEST.tsv`` is a manifest in this format. Values may
not contain tabs or newlines. Blank lines and lines starting with ``#`` are ignored.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from spoof_train.errors import DataError

__all__ = [
    "LABELS",
    "REQUIRED_COLUMNS",
    "Utterance",
    "check_splits",
    "read_manifest",
    "select_split",
    "write_manifest",
]

logger = logging.getLogger("spoof_train")

#: Label order of the whole package: index 0 = bona fide, 1 = spoof.
LABELS: tuple[str, str] = ("bonafide", "spoof")
REQUIRED_COLUMNS: tuple[str, ...] = ("path", "label", "attack", "speaker", "split")


@dataclass(frozen=True)
class Utterance:
    """One manifest row. ``path`` is the audio path as resolved by :func:`read_manifest` (absolute when read
    from a file) or as given by a parser; ``extra`` holds the additional columns as strings."""

    path: str
    label: str
    attack: str = "-"
    speaker: str = "-"
    split: str = "-"
    extra: Mapping[str, str] = field(default_factory=dict, compare=True, hash=False)

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise DataError(f"Utterance {self.path!r}: label must be one of {LABELS}, got {self.label!r}")
        if not self.path:
            raise DataError("Utterance: path must not be empty")

    @property
    def label_id(self) -> int:
        """0 for bona fide, 1 for spoof (the package-wide label order)."""
        return LABELS.index(self.label)

    @property
    def id(self) -> str:
        """Utterance id: the file name without its extension."""
        return Path(self.path).stem


def _clean(value: str, column: str, where: str) -> str:
    if "\t" in value or "\n" in value or "\r" in value:
        raise DataError(f"{where}: column {column!r} may not contain tabs or newlines, got {value!r}")
    return value


def read_manifest(
    path: str | Path,
    *,
    root: str | Path | None = None,
    splits: Iterable[str] | None = None,
) -> list[Utterance]:
    """Read a TSV manifest into :class:`Utterance` rows.

    Relative audio paths are resolved against ``root`` (default: the manifest's directory), so the returned
    ``Utterance.path`` is absolute. ``splits`` keeps only rows of those splits (each must be non-empty).
    Raises :class:`DataError` naming the file and line for a missing column, a row with the wrong number of
    fields, an unknown label, an empty path or a duplicate path, and for a manifest without rows.
    """
    mpath = Path(path)
    try:
        text = mpath.read_text(encoding="utf-8-sig")  # tolerate a byte-order mark from spreadsheet exports
    except FileNotFoundError as exc:
        raise DataError(f"manifest not found: {mpath}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read manifest {mpath}: {exc}") from exc
    base = Path(root) if root is not None else mpath.parent
    base = base.resolve()
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise DataError(f"{mpath}: empty manifest, expected a header with columns {list(REQUIRED_COLUMNS)}")
    header_no, header_line = lines[0]
    header = header_line.split("\t")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(
            f"{mpath}:{header_no}: missing required columns {missing}; expected {list(REQUIRED_COLUMNS)} "
            f"(tab-separated), got header {header}"
        )
    dup_cols = [c for c, n in Counter(header).items() if n > 1]
    if dup_cols:
        raise DataError(f"{mpath}:{header_no}: duplicate columns {dup_cols} in header")
    idx = {c: header.index(c) for c in header}
    extra_cols = [c for c in header if c not in REQUIRED_COLUMNS]
    rows: list[Utterance] = []
    seen: dict[str, int] = {}
    for lineno, line in lines[1:]:
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataError(
                f"{mpath}:{lineno}: expected {len(header)} tab-separated fields ({header}), "
                f"got {len(fields)}: "
                f"{line[:200]!r}"
            )
        label = fields[idx["label"]]
        if label not in LABELS:
            raise DataError(f"{mpath}:{lineno}: unknown label {label!r}; expected one of {list(LABELS)}")
        rel = fields[idx["path"]]
        if not rel:
            raise DataError(f"{mpath}:{lineno}: empty path")
        full = str(base / rel) if not os.path.isabs(rel) else rel
        if full in seen:
            raise DataError(f"{mpath}:{lineno}: duplicate path {rel!r} (first at line {seen[full]})")
        seen[full] = lineno
        rows.append(
            Utterance(
                path=full,
                label=label,
                attack=fields[idx["attack"]] or "-",
                speaker=fields[idx["speaker"]] or "-",
                split=fields[idx["split"]],
                extra={c: fields[idx[c]] for c in extra_cols},
            )
        )
    if not rows:
        raise DataError(f"{mpath}: manifest has a header but no rows")
    if splits is not None:
        wanted = list(splits)
        check_splits(rows, wanted, source=str(mpath))
        rows = [r for r in rows if r.split in wanted]
    return rows


def write_manifest(path: str | Path, rows: Iterable[Utterance], *, relative: bool = True) -> Path:
    """Write rows as a TSV manifest (atomically: a temporary file, then rename).

    With ``relative`` (default) paths inside the manifest's directory tree are written relative to it, others
    stay absolute. Extra columns are the union of all rows' ``extra`` keys in first-seen order ("-" when a row
    lacks one). Raises :class:`DataError` for no rows or values containing tabs/newlines.
    """
    out = Path(path)
    rows = list(rows)
    if not rows:
        raise DataError(f"write_manifest {out}: no rows to write")
    extra_cols: list[str] = []
    for r in rows:
        for k in r.extra:
            if k not in extra_cols and k not in REQUIRED_COLUMNS:
                extra_cols.append(k)
    out.parent.mkdir(parents=True, exist_ok=True)
    base = out.parent.resolve()
    # plain tab-joined lines, no quoting: values are checked for tabs/newlines and read back with split("\t"),
    # so quotes and other characters round-trip unchanged
    buf = io.StringIO()
    buf.write("\t".join([*REQUIRED_COLUMNS, *extra_cols]) + "\n")
    for n, r in enumerate(rows):
        where = f"write_manifest row {n} ({r.path})"
        p = r.path
        if relative and os.path.isabs(p):
            with contextlib.suppress(ValueError):  # outside the manifest's tree: keep it absolute
                p = Path(p).resolve().relative_to(base).as_posix()
        values = [p, r.label, r.attack, r.speaker, r.split] + [str(r.extra.get(c, "-")) for c in extra_cols]
        cols = [*REQUIRED_COLUMNS, *extra_cols]
        buf.write("\t".join(_clean(v, c, where) for v, c in zip(values, cols, strict=True)) + "\n")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, out)
    return out


def check_splits(
    rows: Sequence[Utterance], splits: Iterable[str], *, both_labels: bool = False, source: str = "manifest"
) -> dict[str, Counter[str]]:
    """Check that each named split has rows (and, with ``both_labels``, both classes); return label counts.

    Raises :class:`DataError` naming the empty split and the splits that do exist.
    """
    counts: dict[str, Counter[str]] = {}
    for r in rows:
        counts.setdefault(r.split, Counter())[r.label] += 1
    for s in splits:
        if s not in counts:
            raise DataError(f"{source}: split {s!r} is empty; splits present: {sorted(counts)}")
        if both_labels:
            lacking = [lab for lab in LABELS if counts[s][lab] == 0]
            if lacking:
                raise DataError(
                    f"{source}: split {s!r} has no {lacking[0]} rows ({dict(counts[s])}); "
                    "an EER needs both bona fide and spoof trials"
                )
    return counts


def select_split(rows: Sequence[Utterance], split: str, *, both_labels: bool = False) -> list[Utterance]:
    """Rows of one split; :class:`DataError` when it is empty (or lacks a class with ``both_labels``)."""
    check_splits(rows, [split], both_labels=both_labels)
    return [r for r in rows if r.split == split]
