"""Licence filter for training manifests: keep only rows whose ``licence`` column allows training a model
that is shipped.

The shipped default detector trains only on clips with a stated licence. corpus-v1 marks the research
demo-page audio without a licence as ``"no licence stated"`` and re-syntheses of it as ``"derivative of no
licence stated"``; :data:`EXCLUDED_LICENCES` names both. Evaluation may still use every clip.

Library use::

    rows = read_manifest("MANIFEST.tsv")
    kept, dropped = filter_by_licence(rows)

Command line (writes a filtered manifest with absolute audio paths, and a JSON report of what was kept)::

    python -m spoof_train.licence MANIFEST.tsv -o runs/x/licensed.tsv --splits train dev --report r.json
    python -m spoof_train.licence corpus/MANIFEST.tsv extra/MANIFEST.tsv -o merged.tsv   # several, merged
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from spoof_train.errors import DataError

__all__ = [
    "EXCLUDED_LICENCES",
    "LICENCE_SEPARATOR",
    "filter_by_licence",
    "is_licensed",
    "licence_report",
    "main",
    "write_licensed_manifest",
]

log = logging.getLogger("spoof_train")

#: Licence values (compared case-insensitively, surrounding spaces ignored) that exclude a row.
EXCLUDED_LICENCES: tuple[str, ...] = ("no licence stated", "derivative of no licence stated")


def _norm(value: str) -> str:
    return " ".join(str(value).split()).lower()


#: Separator of the parts of a composite licence value: the source audio's licence, then the generator's
#: weights (``derivative of CC BY-SA 3.0 + LPCNet lpcnet191005 weights: LGPL-2.1``), as
#: :mod:`spoof_train.synth` writes them.
LICENCE_SEPARATOR = " + "


def is_licensed(value: str, exclude: Sequence[str] = EXCLUDED_LICENCES) -> bool:
    """Whether a ``licence`` value lets a clip train a shipped model.

    A value may have several parts joined by :data:`LICENCE_SEPARATOR` (source audio, generator weights,
    text): every part must allow it. A part is refused when it is one of ``exclude`` (compared
    case-insensitively, runs of spaces as one, with or without a leading ``derivative of``) or says that a
    licence is not stated (``... licence not stated ...``), so an unknown link of a chain is not a permission.
    """
    excluded = {_norm(e) for e in exclude}
    excluded |= {e.removeprefix("derivative of ") for e in excluded}
    for part in str(value).split(LICENCE_SEPARATOR):
        norm = _norm(part)
        if norm in excluded or norm.removeprefix("derivative of ") in excluded or "not stated" in norm:
            return False
    return True


def filter_by_licence(
    rows: Iterable[Any], *, exclude: Sequence[str] = EXCLUDED_LICENCES, column: str = "licence"
) -> tuple[list[Any], list[Any]]:
    """Split manifest rows (:class:`spoof_train.data.Utterance`) into ``(kept, dropped)`` by licence.

    A row is dropped when its ``extra[column]`` is one of ``exclude``. A row without the column, or with an
    empty / ``-`` value, raises :class:`DataError`: an unknown licence is not a permission.
    """
    kept: list[Any] = []
    dropped: list[Any] = []
    for row in rows:
        extra = getattr(row, "extra", None)
        value = extra.get(column) if isinstance(extra, dict) else None
        if value is None or _norm(value) in ("", "-"):
            raise DataError(
                f"licence filter: row {getattr(row, 'path', row)!r} has no {column!r} value; expected a "
                f"manifest with a {column!r} column filled for every row, got {value!r}"
            )
        (kept if is_licensed(value, exclude) else dropped).append(row)
    return kept, dropped


def licence_report(kept: Sequence[Any], dropped: Sequence[Any], column: str = "licence") -> dict[str, Any]:
    """Counts per split x label x licence of the kept and dropped rows (for the model card)."""

    def table(rows: Sequence[Any]) -> dict[str, Any]:
        c = Counter((r.split, r.label, str(r.extra.get(column))) for r in rows)
        out: dict[str, Any] = {}
        for (split, label, lic), n in sorted(c.items()):
            out.setdefault(split, {}).setdefault(label, {})[lic] = n
        return out

    per_split = Counter((r.split, r.label) for r in kept)
    return {
        "column": column,
        "kept": len(kept),
        "dropped": len(dropped),
        "kept_per_split": {f"{s}/{lab}": n for (s, lab), n in sorted(per_split.items())},
        "kept_by_licence": table(kept),
        "dropped_by_licence": table(dropped),
        "dropped_sources": dict(Counter(str(r.extra.get("source", "?")) for r in dropped)),
    }


def write_licensed_manifest(
    manifest: str | Path | Sequence[str | Path],
    output: str | Path,
    *,
    splits: Sequence[str] | None = None,
    exclude: Sequence[str] = EXCLUDED_LICENCES,
    column: str = "licence",
) -> dict[str, Any]:
    """Write the rows of ``manifest`` (of ``splits``, default all) whose licence is allowed to ``output``.

    ``manifest`` may be a list: the rows of all of them are merged (e.g. corpus-v1 and the Debian speech
    supplement of recipes/default-detector/v1/debian_speech.py). Audio paths are written absolute, so the
    filtered manifest can live anywhere. Returns the report of :func:`licence_report`.
    """
    from spoof_train.data import read_manifest, write_manifest

    manifests = [manifest] if isinstance(manifest, (str, Path)) else list(manifest)
    if not manifests:
        raise DataError("licence filter: no manifest given")
    rows = [row for m in manifests for row in read_manifest(m)]
    seen: set[str] = set()
    for row in rows:
        if row.path in seen:
            raise DataError(f"licence filter: {row.path} is in more than one of the manifests {manifests}")
        seen.add(row.path)
    if splits:
        wanted = set(splits)
        known = {r.split for r in rows}
        missing = sorted(wanted - known)
        if missing:
            raise DataError(f"licence filter: splits {missing} are not in {manifest}; it has {sorted(known)}")
        rows = [r for r in rows if r.split in wanted]
    kept, dropped = filter_by_licence(rows, exclude=exclude, column=column)
    if not kept:
        raise DataError(f"licence filter: no row of {manifest} is left after excluding {list(exclude)}")
    write_manifest(output, kept, relative=False)
    report = licence_report(kept, dropped, column)
    resolved = [str(Path(m).resolve()) for m in manifests]
    report["manifest"] = resolved[0] if isinstance(manifest, (str, Path)) else resolved
    report["output"] = str(Path(output).resolve())
    report["excluded_licences"] = list(exclude)
    log.info("licence filter: kept %d rows, dropped %d (%s)", len(kept), len(dropped), list(exclude))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m spoof_train.licence",
        description="Write a manifest without the rows whose licence does not allow training a shipped "
        "model.",
    )
    p.add_argument("manifest", nargs="+", help="input TSV manifest(s) with a licence column (merged)")
    p.add_argument("-o", "--output", required=True, help="filtered manifest to write")
    p.add_argument("--splits", nargs="*", default=None, help="keep only these splits (default: all)")
    p.add_argument(
        "--exclude",
        nargs="*",
        default=list(EXCLUDED_LICENCES),
        help=f"licence values to drop (default: {list(EXCLUDED_LICENCES)})",
    )
    p.add_argument("--column", default="licence")
    p.add_argument("--report", default=None, help="also write the JSON report here")
    args = p.parse_args(argv)
    try:
        report = write_licensed_manifest(
            args.manifest if len(args.manifest) > 1 else args.manifest[0],
            args.output,
            splits=args.splits,
            exclude=args.exclude,
            column=args.column,
        )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(text + "\n")
    print(f"kept {report['kept']} rows, dropped {report['dropped']} -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
