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
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from spoofsdk.backends.base import BACKENDS
from spoofsdk.errors import BackendUnavailableError, InvalidArgumentError, ModelLoadError, SpoofError
from spoofsdk.gating import DEFAULT_MIN_SPEECH
from spoofsdk.results import AGGREGATES, Score
from spoofsdk.session import BYTES_PER_SAMPLE, ENCODINGS

__all__ = ["EXIT_FAILED", "EXIT_MODEL", "EXIT_OK", "EXIT_USAGE", "FileResult", "main", "score_files"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MODEL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: Extensions of headerless files and their encoding (``--encoding`` overrides).
RAW_EXTENSIONS = {".raw": "pcm16", ".pcm": "pcm16", ".s16": "pcm16", ".ul": "mulaw", ".ulaw": "mulaw",
                  ".mulaw": "mulaw", ".al": "alaw", ".alaw": "alaw", ".f32": "float32"}  # fmt: skip
#: Largest input file read (a bigger one is reported as an error, not read into memory).
MAX_FILE_BYTES = 2 << 30

logger = logging.getLogger("spoofsdk")


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
    """(pcm array or raw bytes, sample rate, raw encoding or None)."""
    raw_enc = encoding or RAW_EXTENSIONS.get(path.suffix.lower())
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise SpoofError(f"{path}: expected a file under {MAX_FILE_BYTES >> 20} MiB, given {size >> 20} MiB")
    if raw_enc is not None:
        if sample_rate is None:
            raise InvalidArgumentError(
                f"{path}: headerless {raw_enc} audio needs --sample-rate (expected Hz, given none)"
            )
        data = path.read_bytes()
        usable = len(data) - len(data) % BYTES_PER_SAMPLE[raw_enc]
        return data[:usable], sample_rate, raw_enc
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    if sample_rate is not None and sample_rate != sr:
        raise SpoofError(f"{path}: --sample-rate {sample_rate} given but the file header says {sr} Hz")
    return x, int(sr), None


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
                raise InvalidAudioError(f"{path}: expected audio, given an empty file")
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
    from spoofsdk.detector import Detector

    files = expand_inputs([str(p) for p in paths], recursive=recursive)
    if not files:
        raise UsageError(f"no input audio file found in {[str(p) for p in paths]}")
    det = Detector(
        model, backend=backend, device_id=device_id, num_threads=num_threads, window_s=window_s, hop_s=hop_s,
        aggregate=aggregate, threshold=threshold, speech_gate=speech_gate, min_speech=min_speech,
    )  # fmt: skip
    logger.info("spoof-score: %r (%s)", det, det.backend_detail)
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
            # soundfile raises LibsndfileError (RuntimeError), TypeError and ValueError on bad files.
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


def _format(results: list[FileResult], fmt: str, *, windows: bool, meta: dict[str, Any]) -> str:
    if fmt == "json":
        doc = {
            **meta,
            "results": [
                {"path": r.path, "ok": r.ok, "seconds": round(r.seconds, 4)}
                | (
                    r.score.to_dict(windows=windows)
                    if r.score
                    else {"error": r.error, "error_type": r.error_type}
                )
                for r in results
            ],
        }
        return json.dumps(doc, indent=2) + "\n"
    # "flagged" = windows whose own spoof probability reaches the decision threshold, out of all windows.
    cols = ["path", "duration_s", "spoof_prob", "label", "flagged", "logit", "error"]
    rows = []
    for r in results:
        if r.score is not None:
            s = r.score
            flagged = sum(w.spoof_prob >= s.threshold for w in s.windows)  # False for no_speech (NaN)
            none = s.verdict == "undetermined"  # no score to print: "" in CSV and the table
            prob, logit = ("", "") if none else (f"{s.spoof_prob:.4f}", f"{s.logit:.4f}")
            rows.append(
                [r.path, f"{s.duration_s:.2f}", prob, s.label, f"{flagged}/{len(s.windows)}", logit, ""]
            )
        else:
            rows.append([r.path, "", "", "ERROR", "", "", f"{r.error_type}: {r.error}"])
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        w.writerows(rows)
        return buf.getvalue()
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(cols)]
    widths[0] = min(widths[0], 60)
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    for row in rows:
        path = row[0] if len(row[0]) <= 60 else "..." + row[0][-57:]
        lines.append("  ".join(v.ljust(w) for v, w in zip([path, *row[1:]], widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spoof-score",
        description="Score audio files for voice spoofing (deepfakes) with a spoofsdk detector.",
        epilog="Exit codes: 0 all files scored; 1 some files failed; 2 usage error; 3 model/backend error.",
    )
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
    o.add_argument("--windows", action="store_true", help="include per-window scores (json)")
    o.add_argument("-o", "--output", default=None, help="write the results to this file instead of stdout")
    o.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="force the progress bar"
    )
    o.add_argument("--no-progress", dest="progress", action="store_false")
    o.add_argument("-v", "--verbose", action="count", default=0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
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
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2), format="%(levelname)s %(message)s")
    results: list[FileResult] = []
    try:
        for r in score_files(
            args.paths, model=args.model, backend=args.backend, device_id=args.device_id,
            num_threads=args.threads,
            window_s=args.window_s, hop_s=args.hop_s, aggregate=args.aggregate, threshold=args.threshold,
            encoding=args.encoding, sample_rate=args.sample_rate, stream=args.stream, chunk_ms=args.chunk_ms,
            recursive=not args.no_recursive, progress=args.progress, speech_gate=args.speech_gate,
            min_speech=args.min_speech,
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
        print("spoof-score: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    backend = results[0].backend if results else args.backend
    meta = {"model": args.model or "(bundled)", "backend": backend, "stream": args.stream}
    text = _format(results, args.format, windows=args.windows, meta=meta)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
