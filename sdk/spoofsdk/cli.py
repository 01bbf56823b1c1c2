"""``spoof-score``: score audio files, folders and globs with a spoofsdk detector.

argparse over one typed function, :func:`score_files`. Exit codes:

* 0 - every file was scored
* 1 - at least one file failed (each failure is reported in the output; the batch goes on)
* 2 - usage error (bad flags, no input file found)
* 3 - the model or backend could not be loaded
* 130 - interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from spoofsdk._hashing import sha256_file
from spoofsdk.audio import check_file, read_file
from spoofsdk.backends.base import BACKENDS
from spoofsdk.errors import (
    AudioFileError,
    BackendUnavailableError,
    InvalidArgumentError,
    ModelLoadError,
    SpoofError,
)
from spoofsdk.gating import DEFAULT_MIN_SPEECH
from spoofsdk.results import AGGREGATES, Score
from spoofsdk.session import BYTES_PER_SAMPLE, ENCODINGS

__all__ = [
    "CSV_COLUMNS",
    "EXIT_FAILED",
    "EXIT_MODEL",
    "EXIT_OK",
    "EXIT_USAGE",
    "FILE_FIELDS",
    "MODEL_FIELDS",
    "SCHEMA_VERSION",
    "WINDOW_FIELDS",
    "FileResult",
    "file_record",
    "main",
    "model_identity",
    "score_files",
    "summarize",
    "window_records",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MODEL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: Extensions of headerless files and their encoding (``--encoding`` overrides).
RAW_EXTENSIONS = {".raw": "pcm16", ".pcm": "pcm16", ".s16": "pcm16", ".ul": "mulaw", ".ulaw": "mulaw",
                  ".mulaw": "mulaw", ".al": "alaw", ".alaw": "alaw", ".f32": "float32"}  # fmt: skip
#: Largest input file read (a bigger one is reported as an error, not read into memory).
MAX_FILE_BYTES = 2 << 30

logger = logging.getLogger("spoofsdk")

# The output schema of --format json / csv (docs/sdk.md, "Output schema"). SCHEMA_VERSION changes when a
# field is renamed or removed or its meaning or unit changes; a new field may be added within a version.
SCHEMA_VERSION = 1
#: The model's identity: top-level keys of the JSON document, repeated on every CSV row.
MODEL_FIELDS = ("schema_version", "model_path", "model_sha256", "model_source_sha256", "model_precision")
#: One file: a JSON ``results[]`` object (plus ``windows`` with --windows), a CSV row of kind "file".
FILE_FIELDS = (
    "path", "ok", "verdict", "label", "is_spoof", "spoof_prob", "logit", "threshold", "aggregate",
    "duration_s", "n_windows", "n_speech_windows", "n_flagged_windows", "elapsed_s", "error_type", "error",
)  # fmt: skip
#: One window: a JSON ``results[].windows[]`` object (without ``path``), a CSV row of kind "window".
WINDOW_FIELDS = (
    "path", "window", "start_s", "end_s", "state", "speech", "spoof_prob", "logit", "flagged", "is_final",
)  # fmt: skip
#: CSV header: ``kind`` ("file" or "window") and every field above once (a cell a row's kind lacks is empty).
CSV_COLUMNS = (
    "kind", "path", "window", "start_s", "end_s", "ok", "verdict", "label", "is_spoof", "flagged",
    "spoof_prob", "logit", "threshold", "state", "speech", "is_final", "aggregate", "duration_s", "n_windows",
    "n_speech_windows", "n_flagged_windows", "elapsed_s", "error_type", "error", *MODEL_FIELDS,
)  # fmt: skip


@dataclass(frozen=True)
class FileResult:
    path: str
    score: Score | None = None
    error: str | None = None
    error_type: str | None = None
    seconds: float = 0.0
    backend: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


class UsageError(Exception):
    pass


def _audio_extensions() -> set[str]:
    import soundfile as sf

    exts = {"." + e.lower() for e in sf.available_formats()}
    exts |= {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".snd", ".caf", ".w64"}
    return exts | set(RAW_EXTENSIONS)


def expand_inputs(paths: Sequence[str], *, recursive: bool = True) -> list[Path]:
    """Files, folders (audio files inside, recursively) and globs -> a sorted, de-duplicated file list.

    Explicit file paths are kept whatever their extension (a missing one is reported later as a
    per-file error); folders and globs keep only known audio extensions.
    """
    exts = _audio_extensions()
    out: list[Path] = []
    for raw in paths:
        if any(ch in raw for ch in "*?["):
            matches = sorted(glob.glob(raw, recursive=True))
            out.extend(Path(m) for m in matches if Path(m).is_file() and Path(m).suffix.lower() in exts)
        elif Path(raw).is_dir():
            walker = Path(raw).rglob("*") if recursive else Path(raw).glob("*")
            out.extend(sorted(p for p in walker if p.is_file() and p.suffix.lower() in exts))
        else:
            out.append(Path(raw))
    seen: set[Path] = set()
    unique = []
    for p in out:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def _read(path: Path, encoding: str | None, sample_rate: int | None) -> tuple[Any, int, str | None]:
    """(pcm array or raw bytes, sample rate, raw encoding or None).

    A file that cannot be read raises :class:`AudioFileError` naming it (missing, a directory, empty,
    corrupt, too big), never the reader's own error.
    """
    raw_enc = encoding or RAW_EXTENSIONS.get(path.suffix.lower())
    size = check_file(path)
    if size > MAX_FILE_BYTES:
        raise AudioFileError(
            f"{path}: expected a file under {MAX_FILE_BYTES >> 20} MiB, given {size >> 20} MiB"
        )
    if raw_enc is not None:
        if sample_rate is None:
            raise InvalidArgumentError(
                f"{path}: headerless {raw_enc} audio needs --sample-rate (expected Hz, given none)"
            )
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise AudioFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        usable = len(data) - len(data) % BYTES_PER_SAMPLE[raw_enc]
        return data[:usable], sample_rate, raw_enc
    x, sr = read_file(path)
    if sample_rate is not None and sample_rate != sr:
        raise SpoofError(f"{path}: --sample-rate {sample_rate} given but the file header says {sr} Hz")
    return x, sr, None


def _score_one(
    det: Any, path: Path, *, encoding: str | None, sample_rate: int | None, stream: bool, chunk_ms: float,
    aggregate: str | None,
) -> Score:  # fmt: skip
    from spoofsdk import _native

    data, sr, raw_enc = _read(path, encoding, sample_rate)
    if not stream:
        if raw_enc is not None:
            from spoofsdk.errors import InvalidAudioError

            if len(data) == 0:
                raise InvalidAudioError(f"{path}: expected at least one whole {raw_enc} sample, given none")
            data = _native.decode(data, raw_enc)
        return det.score(data, sr, aggregate=aggregate)  # type: ignore[no-any-return]
    step = max(1, round(sr * chunk_ms / 1000.0))
    with det.stream(sr, encoding=raw_enc or "float32", aggregate=aggregate) as sess:
        if raw_enc is not None:
            nbytes = step * BYTES_PER_SAMPLE[raw_enc]
            for k in range(0, len(data), nbytes):
                sess.push(data[k : k + nbytes])
        else:
            for k in range(0, data.shape[0], step):
                sess.push(data[k : k + step])
        return sess.flush()  # type: ignore[no-any-return]


def score_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    model: str | None = None,
    backend: str = "auto",
    device_id: int = 0,
    num_threads: int = 0,
    window_s: float | None = None,
    hop_s: float | None = None,
    aggregate: str = "mean",
    threshold: float | None = None,
    encoding: str | None = None,
    sample_rate: int | None = None,
    stream: bool = False,
    chunk_ms: float = 20.0,
    recursive: bool = True,
    progress: bool | None = None,
    speech_gate: bool = True,
    min_speech: float = DEFAULT_MIN_SPEECH,
) -> Iterator[FileResult]:
    """Score every file; yields one :class:`FileResult` per file (errors are results, not exceptions).

    The detector is loaded first: a :class:`ModelLoadError` / :class:`BackendUnavailableError` is
    raised before any file is read. ``progress`` (default: when stderr is a terminal and there is more
    than one file) draws a bar on stderr.
    """
    files = _expand_or_fail(paths, recursive=recursive)
    det = _load_detector(
        model, backend=backend, device_id=device_id, num_threads=num_threads, window_s=window_s, hop_s=hop_s,
        aggregate=aggregate, threshold=threshold, speech_gate=speech_gate, min_speech=min_speech,
    )  # fmt: skip
    yield from _score_all(
        det, files, encoding=encoding, sample_rate=sample_rate, stream=stream, chunk_ms=chunk_ms,
        aggregate=aggregate, progress=progress,
    )  # fmt: skip


def _expand_or_fail(paths: Sequence[str | os.PathLike[str]], *, recursive: bool) -> list[Path]:
    files = expand_inputs([str(p) for p in paths], recursive=recursive)
    if not files:
        raise UsageError(f"no input audio file found in {[str(p) for p in paths]}")
    return files


def _load_detector(model: str | None, **options: Any) -> Any:
    from spoofsdk.detector import Detector

    det = Detector(model, **options)
    logger.info("spoof-score: %r (%s)", det, det.backend_detail)
    return det


def _score_all(
    det: Any, files: Sequence[Path], *, encoding: str | None, sample_rate: int | None, stream: bool,
    chunk_ms: float, aggregate: str, progress: bool | None,
) -> Iterator[FileResult]:  # fmt: skip
    show = progress if progress is not None else (len(files) > 1 and sys.stderr.isatty())
    bar = _Progress(len(files), sys.stderr) if show else None
    for i, path in enumerate(files):
        t0 = time.perf_counter()
        try:
            score = _score_one(
                det, path, encoding=encoding, sample_rate=sample_rate, stream=stream, chunk_ms=chunk_ms,
                aggregate=aggregate,
            )  # fmt: skip
            result = FileResult(str(path), score=score, seconds=time.perf_counter() - t0, backend=det.backend)
        except UsageError:
            raise
        except (SpoofError, OSError, RuntimeError, ValueError, TypeError, EOFError, MemoryError) as exc:
            # An unreadable file is an AudioFileError; the rest guards the batch against the unexpected.
            msg = str(exc) or type(exc).__name__
            result = FileResult(
                str(path), error=msg, error_type=type(exc).__name__, seconds=time.perf_counter() - t0,
                backend=det.backend,
            )  # fmt: skip
        if bar is not None:
            bar.update(i + 1, path.name)
        yield result
    if bar is not None:
        bar.close()


class _Progress:
    """A one-line progress bar on stderr (no tqdm dependency in the SDK)."""

    def __init__(self, total: int, out: TextIO, width: int = 30) -> None:
        self.total, self.out, self.width = total, out, width
        self.t0 = time.perf_counter()

    def update(self, done: int, name: str) -> None:
        frac = done / self.total
        filled = int(self.width * frac)
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / done * (self.total - done) if done else 0.0
        bar = "#" * filled + "." * (self.width - filled)
        line = f"\r[{bar}] {done}/{self.total} {elapsed:.0f}s eta {eta:.0f}s "
        self.out.write(line + name[:40].ljust(40))
        self.out.flush()

    def close(self) -> None:
        self.out.write("\n")
        self.out.flush()


def model_identity(det: Any) -> dict[str, Any]:
    """The :data:`MODEL_FIELDS` of a loaded detector (docs/sdk.md, "Output schema").

    ``model_path`` is the absolute model file (the remote URL for a Triton model), ``model_sha256`` the
    sha256 of that file (``None`` for a remote model), ``model_source_sha256`` the manifest's hash of the
    checkpoint it was exported from (``None`` when the manifest does not know it) and ``model_precision``
    the manifest's precision.
    """
    path = det.path
    return {
        "schema_version": SCHEMA_VERSION,
        "model_path": str(Path(path).resolve()) if path is not None else det.url,
        "model_sha256": sha256_file(path) if path is not None else None,
        "model_source_sha256": det.manifest.source_sha256 or None,
        "model_precision": det.manifest.precision,
    }


def _number(x: float | None) -> float | None:
    """NaN (an undetermined score) -> None, which JSON writes as null and CSV as an empty cell."""
    return None if x is None or math.isnan(x) else float(x)


def file_record(r: FileResult) -> dict[str, Any]:
    """One file's :data:`FILE_FIELDS` (JSON ``results[]``, a CSV row of kind ``file``)."""
    rec: dict[str, Any] = dict.fromkeys(FILE_FIELDS)
    rec.update(path=r.path, ok=r.ok, elapsed_s=round(r.seconds, 4), error_type=r.error_type, error=r.error)
    s = r.score
    if s is not None:
        rec.update(
            verdict=s.verdict,
            label=s.verdict,
            is_spoof=s.is_spoof,
            spoof_prob=_number(s.spoof_prob),
            logit=_number(s.logit),
            threshold=s.threshold,
            aggregate=s.aggregate,
            duration_s=s.duration_s,
            n_windows=len(s.windows),
            n_speech_windows=s.speech_windows,
            n_flagged_windows=sum(w.scored and w.spoof_prob >= s.threshold for w in s.windows),
        )
    return rec


def window_records(r: FileResult) -> list[dict[str, Any]]:
    """One file's windows as :data:`WINDOW_FIELDS` dicts (a CSV row of kind ``window`` each); [] on error."""
    if r.score is None:
        return []
    thr = r.score.threshold
    return [
        {
            "path": r.path,
            "window": i,
            "start_s": w.start_s,
            "end_s": w.end_s,
            "state": w.state,
            "speech": w.speech,
            "spoof_prob": _number(w.spoof_prob) if w.scored else None,
            "logit": _number(w.logit) if w.scored else None,
            "flagged": bool(w.scored and w.spoof_prob >= thr),
            "is_final": w.is_final,
        }
        for i, w in enumerate(r.score.windows)
    ]


def summarize(results: Sequence[FileResult], elapsed_s: float) -> dict[str, Any]:
    """Counts of a run: files, flagged (verdict spoof), bonafide, undetermined, errors, and the wall time."""
    verdicts = [r.score.verdict for r in results if r.score is not None]
    return {
        "files": len(results),
        "flagged": verdicts.count("spoof"),
        "bonafide": verdicts.count("bonafide"),
        "undetermined": verdicts.count("undetermined"),
        "errors": sum(not r.ok for r in results),
        "elapsed_s": round(elapsed_s, 3),
    }


def summary_line(summary: dict[str, Any], output: str | None = None) -> str:
    n_err = summary["errors"]
    line = (
        f"spoof-score: {summary['files']} files: {summary['flagged']} flagged spoof, {summary['bonafide']} "
        f"bonafide, {summary['undetermined']} undetermined, {n_err} {'error' if n_err == 1 else 'errors'} "
        f"in {summary['elapsed_s']:.1f} s"
    )
    return line + (f"; results in {output}" if output else "")


def _csv_cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)  # shortest round-trip text: the same number as the JSON
    return str(v)


def format_json(results: Sequence[FileResult], *, windows: bool, meta: dict[str, Any]) -> str:
    """The JSON document: ``meta`` (schema version, model identity, run settings, summary), then results."""
    rows = []
    for r in results:
        rec = file_record(r)
        if windows:  # [] for a file that failed: every record has the same keys (pandas.json_normalize)
            rec["windows"] = [{k: v for k, v in w.items() if k != "path"} for w in window_records(r)]
        rows.append(rec)
    return json.dumps({**meta, "results": rows}, indent=2, allow_nan=False) + "\n"


def format_csv(results: Sequence[FileResult], *, windows: bool, identity: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in results:
        recs = [{"kind": "file", **file_record(r)}]
        if windows:
            recs += [{"kind": "window", **x} for x in window_records(r)]
        for rec in recs:
            rec.update(identity)
            w.writerow([_csv_cell(rec.get(c)) for c in CSV_COLUMNS])
    return buf.getvalue()


def format_table(results: Sequence[FileResult], *, windows: bool) -> str:
    # "flagged" = windows whose own spoof probability reaches the decision threshold, out of all windows.
    cols = ["path", "duration_s", "spoof_prob", "label", "flagged", "logit", "error"]
    rows = []
    for r in results:
        if r.score is not None:
            s = r.score
            rec = file_record(r)
            none = s.verdict == "undetermined"  # no score to print: "" in the table
            prob, logit = ("", "") if none else (f"{s.spoof_prob:.4f}", f"{s.logit:.4f}")
            rows.append(
                [r.path, f"{s.duration_s:.2f}", prob, s.label, f"{rec['n_flagged_windows']}/{len(s.windows)}",
                 logit, ""]
            )  # fmt: skip
            if windows:
                for x in window_records(r):
                    wp, wz = x["spoof_prob"], x["logit"]
                    rows.append([
                        f"  [{x['window']}] {x['start_s']:.2f}-{x['end_s']:.2f} s",
                        f"{x['end_s'] - x['start_s']:.2f}", "" if wp is None else f"{wp:.4f}",
                        x["state"], "yes" if x["flagged"] else "", "" if wz is None else f"{wz:.4f}", "",
                    ])  # fmt: skip
        else:
            rows.append([r.path, "", "", "ERROR", "", "", f"{r.error_type}: {r.error}"])
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(cols)]
    widths[0] = min(widths[0], 60)
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    for row in rows:
        path = row[0] if len(row[0]) <= 60 else "..." + row[0][-57:]
        lines.append("  ".join(v.ljust(w) for v, w in zip([path, *row[1:]], widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


def _spoofsdk_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spoofsdk")
    except PackageNotFoundError:  # pragma: no cover - a source tree without install
        return "0+unknown"


def _version() -> str:
    return f"spoof-score {_spoofsdk_version()} (output schema_version {SCHEMA_VERSION})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spoof-score",
        description="Score audio files for voice spoofing (deepfakes) with a spoofsdk detector.",
        epilog="Exit codes: 0 all files scored; 1 some files failed; 2 usage error; 3 model/backend error. "
        "Output fields, units and signs: docs/sdk.md, 'Output schema'.",
    )
    p.add_argument("--version", action="version", version=_version())
    p.add_argument("paths", nargs="+", help="audio files, folders (searched recursively) or quoted globs")
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help="detector .onnx or .trt, or grpc://host:port/MODEL on a Triton server "
                        "(default: the bundled detector)")  # fmt: skip
    g.add_argument("--backend", default="auto", choices=BACKENDS)
    g.add_argument("--device-id", type=int, default=0)
    g.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = default)")
    g.add_argument("--window-s", type=float, default=None, help="override the manifest window (seconds)")
    g.add_argument("--hop-s", type=float, default=None, help="override the manifest hop (seconds)")
    g.add_argument("--aggregate", default="mean", choices=AGGREGATES)
    g.add_argument("--threshold", type=float, default=None, help="override the manifest threshold")
    g.add_argument(
        "--no-speech-gate", dest="speech_gate", action="store_false",
        help="score every window, also those without speech (default: gated, see docs/sdk.md)",
    )  # fmt: skip
    g.add_argument(
        "--min-speech", type=float, default=DEFAULT_MIN_SPEECH,
        help=f"share of speech frames a window needs to be scored (default {DEFAULT_MIN_SPEECH})",
    )  # fmt: skip
    a = p.add_argument_group("input")
    a.add_argument("--encoding", default=None, choices=ENCODINGS,
                   help="treat every input as headerless audio of this encoding")  # fmt: skip
    a.add_argument("--sample-rate", type=int, default=None, help="sample rate of headerless input (Hz)")
    a.add_argument("--stream", action="store_true", help="push each file through a StreamingSession")
    a.add_argument("--chunk-ms", type=float, default=20.0, help="chunk size with --stream (default 20 ms)")
    a.add_argument("--no-recursive", action="store_true", help="do not descend into sub-folders")
    o = p.add_argument_group("output")
    o.add_argument("--format", default="table", choices=("table", "json", "csv"))
    o.add_argument(
        "--windows", action="store_true",
        help="also give every window: nested in json, rows of kind 'window' in csv, indented in the table",
    )  # fmt: skip
    o.add_argument(
        "-o", "--output", default=None,
        help="write the results to this file instead of stdout (the summary line still goes to stderr)",
    )  # fmt: skip
    o.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="force the progress bar"
    )
    o.add_argument("--no-progress", dest="progress", action="store_false")
    o.add_argument("-v", "--verbose", action="count", default=0)
    return p


def _check_output(output: str) -> str | None:
    """Why ``-o OUTPUT`` cannot be written (checked before any file is scored), or None."""
    target = Path(output)
    if target.is_dir():
        return f"-o: expected a file path, given the folder {output}"
    parent = target.parent
    if not parent.is_dir():
        return f"-o: expected a file in an existing folder, given {output} ({parent} does not exist)"
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        return f"-o: expected a writable file, given {output} (permission denied)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    t_start = time.perf_counter()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help / --version
        return int(exc.code or 0)
    if args.chunk_ms <= 0 or not np.isfinite(args.chunk_ms):
        print(
            f"spoof-score: error: --chunk-ms: expected a positive number, given {args.chunk_ms}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.encoding is not None and args.sample_rate is None:
        print("spoof-score: error: --encoding needs --sample-rate", file=sys.stderr)
        return EXIT_USAGE
    if args.output is not None and (problem := _check_output(args.output)) is not None:
        print(f"spoof-score: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2), format="%(levelname)s %(message)s")
    results: list[FileResult] = []
    try:
        files = _expand_or_fail(args.paths, recursive=not args.no_recursive)
        det = _load_detector(
            args.model, backend=args.backend, device_id=args.device_id, num_threads=args.threads,
            window_s=args.window_s, hop_s=args.hop_s, aggregate=args.aggregate, threshold=args.threshold,
            speech_gate=args.speech_gate, min_speech=args.min_speech,
        )  # fmt: skip
        identity = model_identity(det) if args.format != "table" else {}
        for r in _score_all(
            det, files, encoding=args.encoding, sample_rate=args.sample_rate, stream=args.stream,
            chunk_ms=args.chunk_ms, aggregate=args.aggregate, progress=args.progress,
        ):  # fmt: skip
            results.append(r)
            if not r.ok:
                print(f"spoof-score: {r.path}: {r.error_type}: {r.error}", file=sys.stderr)
    except UsageError as exc:
        print(f"spoof-score: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ModelLoadError, BackendUnavailableError) as exc:
        print(f"spoof-score: model error: {exc}", file=sys.stderr)
        return EXIT_MODEL
    except SpoofError as exc:  # invalid --window-s / --threshold etc. detected by Detector
        print(f"spoof-score: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"spoof-score: interrupted after {len(results)} files; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    summary = summarize(results, time.perf_counter() - t_start)
    if args.format == "json":
        run = {
            "schema_version": SCHEMA_VERSION,
            "spoofsdk_version": _spoofsdk_version(),
            "model": args.model or "(bundled)",
            **identity,
            "backend": det.backend,
            "stream": args.stream,
            "settings": {
                "window_s": det.window_samples / det.sample_rate,
                "hop_s": det.hop_samples / det.sample_rate,
                "aggregate": det.aggregate,
                "threshold": det.threshold,
                "speech_gate": det.speech_gate,
                "min_speech": det.min_speech,
                "sample_rate": det.sample_rate,
            },
            "summary": summary,
        }
        text = format_json(results, windows=args.windows, meta=run)
    elif args.format == "csv":
        text = format_csv(results, windows=args.windows, identity=identity)
    else:
        text = format_table(results, windows=args.windows)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"spoof-score: error: -o: cannot write {args.output}: {exc}", file=sys.stderr)
            print(summary_line(summary), file=sys.stderr)
            return EXIT_FAILED
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    print(summary_line(summary, args.output), file=sys.stderr)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
