"""``spoof-train synth``: make spoof clips from bona fide clips (re-synthesis, codec round trips) or from
texts (TTS), conditioned like corpus-v1, with one manifest row per clip and its licence.

Inputs: a **clip manifest** (the project's manifest format; its bona fide rows are re-synthesised) or a
**text manifest** (TSV with columns ``id``, ``text``, ``language``, ``split`` and optionally ``licence``,
default :data:`DEFAULT_TEXT_LICENCE`). Outputs under ``OUT_DIR``:
``audio/<split>/<attack>/<attack>__<input>.flac``,
``MANIFEST.tsv`` (every clip this folder holds, from all runs into it), ``failures.tsv`` (this run's inputs
that a generator could not use, with the reason), ``synth.json`` (settings, package versions and the summary
of every run), and ``.journal.jsonl`` (one line per finished clip: what makes a rerun skip it).

Every output is reproducible from ``seed``, the generator, and the input's key (its path or text id),
whatever the worker count and order, except where a generator cannot be seeded (its
:class:`~spoof_train.synth.base.GeneratorInfo` says so).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from numpy.typing import NDArray

from spoof_train.errors import ConfigError, DataError
from spoof_train.synth.base import (
    ClipError,
    Generator,
    Resynthesizer,
    TextToSpeech,
    make_generator,
)
from spoof_train.synth.room import NoiseBed
from spoofsdk._logfile import log_to_file

__all__ = [
    "DEFAULT_TEXT_LICENCE",
    "INPUT_RATES",
    "SynthSummary",
    "TextRow",
    "check_speech",
    "read_texts",
    "synth",
]

log = logging.getLogger("spoof_train")

#: Input rates a re-synthesis accepts (the SDK resampler's rates).
INPUT_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
DEFAULT_TEXT_LICENCE = "CC0-1.0 (text)"
_SOURCE = {("resynth", "neural"): "neural_resynth", ("resynth", "classic"): "offline_resynth"}
_SOURCE.update({("tts", "neural"): "neural_tts", ("tts", "classic"): "offline_tts"})
_COLUMNS = ("source", "source_clip", "generator", "sample_rate", "seconds", "channel", "licence")


@dataclass(frozen=True)
class TextRow:
    """One row of a text manifest."""

    id: str
    text: str
    language: str
    split: str
    licence: str = DEFAULT_TEXT_LICENCE


@dataclass
class SynthSummary:
    """What a run did: clips written now, skipped (done before), failures by reason, and per generator
    the clips, seconds of audio written and CPU seconds spent (summed over workers)."""

    out_dir: str
    written: int = 0
    skipped: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    per_generator: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    manifest: str = ""

    def line(self) -> str:
        failed = sum(self.failed.values())
        why = ", ".join(f"{k} {v}" for k, v in sorted(self.failed.items()))
        return (
            f"synth: {self.written} written, {self.skipped} already done, {failed} failed"
            + (f" ({why})" if why else "")
            + f" in {self.wall_seconds:.1f} s -> {self.manifest}"
        )


# ----------------------------------------------------------------------------------------------- inputs


def read_texts(path: str | Path) -> list[TextRow]:
    """Read a text manifest (TSV: ``id text language split [licence]``); :class:`DataError` names the file
    and line of a missing column, an empty field or a duplicate id."""
    p = Path(path)
    try:
        handle = p.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise DataError(f"cannot read text manifest {p}: {exc}") from exc
    with handle:
        reader = csv.DictReader(
            (line for line in handle if line.strip() and not line.startswith("#")), delimiter="\t"
        )
        header = reader.fieldnames or []
        missing = [c for c in ("id", "text", "language", "split") if c not in header]
        if missing:
            raise DataError(f"{p}: text manifest without column(s) {missing}; header is {header}")
        rows: list[TextRow] = []
        seen: dict[str, int] = {}
        for k, raw in enumerate(reader, start=2):
            values = {key: (raw.get(key) or "").strip() for key in header}
            for key in ("id", "text", "language", "split"):
                if not values[key]:
                    raise DataError(f"{p}:{k}: empty {key!r}")
            if values["id"] in seen:
                raise DataError(f"{p}:{k}: id {values['id']!r} was already on line {seen[values['id']]}")
            seen[values["id"]] = k
            rows.append(
                TextRow(
                    values["id"],
                    values["text"],
                    values["language"],
                    values["split"],
                    values.get("licence") or DEFAULT_TEXT_LICENCE,
                )
            )
    if not rows:
        raise DataError(f"{p}: text manifest without rows")
    return rows


def _is_text_manifest(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip() and not line.startswith("#"):
                    return "text" in line.rstrip("\n").split("\t") and "path" not in line.rstrip("\n").split(
                        "\t"
                    )
    except OSError as exc:
        raise DataError(f"cannot read manifest {path}: {exc}") from exc
    raise DataError(f"{path}: empty manifest")


def check_speech(x: NDArray[np.floating], sample_rate: int) -> None:
    """Raise :class:`ClipError` ``non-speech`` for input that is plainly not speech: digital silence (every
    20 ms frame below -60 dBFS), steady noise (spectral flatness over 100 Hz-7 kHz above 0.5 with the 5-95 %
    spread of the frame levels under 12 dB: white and pink noise) or steady tones (99.5 % of the power
    within 5 FFT bins of the two strongest peaks, level spread under 3 dB: a tone, a DTMF digit).

    The thresholds leave every bona fide clip of corpus-v1 through (tested; its closest clips: flatness
    0.71 with a 30 dB spread, two-peak share 0.9985 with a 10 dB spread). Hum, music and babble are not
    caught by this check."""
    x = np.asarray(x, dtype=np.float64)
    n = int(0.02 * sample_rate)
    frames = x[: len(x) // n * n].reshape(-1, n) if len(x) >= n else x.reshape(1, -1)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    if db.max() < -60.0:
        raise ClipError("non-speech", f"digital silence or near it (loudest 20 ms frame {db.max():.1f} dBFS)")
    nfft = 512 if sample_rate <= 16000 else 1024
    if len(x) >= nfft:
        segs = x[: len(x) // nfft * nfft].reshape(-1, nfft)
    else:
        segs = np.pad(x, (0, nfft - len(x)))[None]
    power = np.mean(np.abs(np.fft.rfft(segs * np.hanning(nfft), axis=1)) ** 2, axis=0)
    lo, hi = max(1, int(100 * nfft / sample_rate)), int(min(sample_rate / 2, 7000) * nfft / sample_rate)
    band = power[lo:hi].copy()
    flatness = float(np.exp(np.mean(np.log(band + 1e-20))) / (np.mean(band) + 1e-20))
    spread = float(np.percentile(db, 95) - np.percentile(db, 5))
    if flatness > 0.5 and spread < 12.0:
        raise ClipError(
            "non-speech", f"steady noise (spectral flatness {flatness:.2f}, level spread {spread:.1f} dB)"
        )
    total, peaks = float(band.sum()), 0.0
    for _ in range(2):
        k = int(np.argmax(band))
        peaks += float(band[max(0, k - 2) : k + 3].sum())
        band[max(0, k - 2) : k + 3] = 0.0
    if peaks > 0.995 * total and spread < 3.0:
        raise ClipError(
            "non-speech", f"steady tone(s) ({100 * peaks / total:.2f} % of the power in two peaks)"
        )


# ------------------------------------------------------------------------------------------- one clip


@dataclass(frozen=True)
class _Job:
    spec: str
    key: str  # the input's identity: source path as the manifest names it, or the text id
    rel: str  # output path relative to the output folder
    split: str
    speaker: str
    path: str = ""  # resolved audio path (re-synthesis)
    text: str = ""
    language: str = ""
    licence: str = ""  # source or text licence
    noise: tuple[tuple[str, str], ...] = ()  # TTS: bona fide clips (path, licence) to take room noise from


_GENERATORS: dict[str, Generator] = {}


def _generator(spec: str) -> Generator:
    if spec not in _GENERATORS:
        _GENERATORS[spec] = make_generator(spec)
    return _GENERATORS[spec]


def _seed_rng(seed: int, spec_name: str, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(spec_name.encode()), zlib.crc32(key.encode())])


def _load_input(job: _Job) -> tuple[NDArray[np.float64], int]:
    import soundfile as sf

    try:
        data, sr = sf.read(job.path, dtype="float64", always_2d=True)
    except Exception as exc:  # libsndfile raises LibsndfileError / RuntimeError / OSError
        raise ClipError("corrupt", f"cannot decode {job.path}: {exc}") from exc
    if data.shape[0] == 0:
        raise ClipError("empty", f"{job.path}: empty file")
    x = data.mean(axis=1)
    if not np.all(np.isfinite(x)):
        raise ClipError("corrupt", f"{job.path}: non-finite samples")
    if int(sr) not in INPUT_RATES:
        raise ClipError("unsupported-rate", f"{job.path}: {sr} Hz; expected one of {INPUT_RATES}")
    return x, int(sr)


def _derivative(licence: str) -> str:
    src = licence or "no licence stated"
    return src if src.lower().startswith("derivative of") else f"derivative of {src}"


def _attack_licence(gen: Generator, job: _Job, noise_licence: str | None = None) -> str:
    """The clip's licence: the source's (as a derivative) or the text's, joined with the generator's
    weights licence (and the room noise's source, when laid) by
    :data:`spoof_train.licence.LICENCE_SEPARATOR`; an unknown source licence is written as "no licence
    stated", which no shipped model trains on."""
    from spoof_train.licence import LICENCE_SEPARATOR

    if isinstance(gen, Resynthesizer):
        parts = [_derivative(job.licence)] + ([gen.info.licence] if gen.info.licence else [])
    else:
        parts = [gen.info.licence or "generated", f"text: {job.licence}"]
    if noise_licence is not None:
        parts.append(f"room noise: {_derivative(noise_licence)}")
    return LICENCE_SEPARATOR.join(parts)


def _room_bed(job: _Job, sample_rate: int) -> tuple[NoiseBed, str]:
    """The first of the job's noise sources with a usable pause (:func:`spoof_train.synth.room.pause_noise`),
    preferring those stored at ``sample_rate``; returns ``(bed, licence)``."""
    from spoof_train.synth.room import pause_noise

    for want_rate in (True, False):
        for path, licence in job.noise:
            try:
                x, sr = _load_input(_Job(job.spec, path, "", job.split, "-", path=path))
            except ClipError:
                continue
            stored = 8000 if sr < 16000 else 16000
            if (stored == sample_rate) != want_rate:
                continue
            bed = pause_noise(x, sr)
            if bed is not None:
                return bed, licence
    raise ClipError(
        "no-room-noise", f"{job.key}: none of {len(job.noise)} noise sources has a pause of usable noise"
    )


def _make_clip(job: _Job, seed: int, out_dir: str, p_channel: float, p_8k: float) -> dict[str, Any]:
    """Generate, condition and write one clip; returns the manifest row (or raises ClipError)."""
    import soundfile as sf

    from spoof_train.data.audio import resample
    from spoof_train.synth.classic import condition

    gen = _generator(job.spec)
    rng = _seed_rng(seed, gen.info.name, job.key)
    noise_licence: str | None = None
    if isinstance(gen, Resynthesizer):
        x, sr = _load_input(job)
        stored = 8000 if sr < 16000 else 16000  # corpus-v1: 8 kHz stays, wide band goes to 16 kHz
        if sr != stored:
            x, sr = np.asarray(resample(x, sr, stored), dtype=np.float64), stored
        if len(x) < gen.info.min_seconds * sr:
            raise ClipError(
                "too-short", f"{job.path}: {len(x) / sr:.3f} s, {job.spec} needs >= {gen.info.min_seconds} s"
            )
        check_speech(x, sr)
        y = gen.resynthesize(x, sr, rng)
        speaker = job.speaker
    else:
        assert isinstance(gen, TextToSpeech)
        y, native, speaker = gen.speak(job.text, job.language, rng)
        sr = 8000 if rng.random() < p_8k else 16000
        y = np.asarray(resample(y, native, sr), dtype=np.float64)
        if job.noise and np.any(y):
            from spoof_train.synth.room import lay_noise

            bed, noise_licence = _room_bed(job, sr)
            y = lay_noise(y, sr, bed, rng)
    if not np.all(np.isfinite(y)) or not np.any(y):
        raise ClipError(
            "generator-failed",
            f"{job.spec} gave {'silence' if np.all(np.isfinite(y)) else 'NaN/inf'} for {job.key}",
        )
    done = condition(y, sr, rng, p_channel=p_channel)
    if done is None:
        raise ClipError(
            "too-short", f"{job.spec} output for {job.key} is under 0.15 s after the silence trim"
        )
    audio, channel = done
    target = Path(out_dir) / job.rel
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    sf.write(str(tmp), audio, sr, subtype="PCM_16", format="FLAC")
    os.replace(tmp, target)
    return {
        "path": job.rel,
        "label": "spoof",
        "attack": gen.info.name,
        "speaker": speaker,
        "split": job.split,
        "source": _SOURCE[(gen.info.kind, gen.info.family)],
        "source_clip": job.key,
        "generator": job.spec,
        "sample_rate": str(sr),
        "seconds": f"{len(audio) / sr:.3f}",
        "channel": channel,
        "licence": _attack_licence(gen, job, noise_licence),
    }


def _work(
    job: _Job, seed: int, out_dir: str, p_channel: float, p_8k: float
) -> tuple[_Job, dict[str, Any] | None, str, str, float]:
    """Worker entry: ``(job, row, failure reason, failure message, cpu seconds)``; never raises for a
    clip's own problem (a generator bug is recorded as ``generator-failed`` with the exception)."""
    t0 = time.process_time()
    try:
        row = _make_clip(job, seed, out_dir, p_channel, p_8k)
        return job, row, "", "", time.process_time() - t0
    except ClipError as exc:
        return job, None, exc.reason, str(exc), time.process_time() - t0
    except Exception as exc:
        return job, None, "generator-failed", f"{type(exc).__name__}: {exc}", time.process_time() - t0


def _init_worker(parent: int) -> None:
    """Workers ignore Ctrl-C (the parent handles it and cancels) and exit when the parent is gone: a killed
    ``synth`` must not leave orphans writing clips that a rerun is also writing."""
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="synth-parent-watch", daemon=True).start()


# ------------------------------------------------------------------------------------------------ plan


def _plan(manifest: Path, gens: Sequence[Generator], splits: Sequence[str] | None) -> list[_Job]:
    text_input = _is_text_manifest(manifest)
    jobs: list[_Job] = []
    for gen in gens:
        wants_text = isinstance(gen, TextToSpeech)
        if wants_text != text_input:
            raise ConfigError(
                f"generator {gen.info.name!r} reads {'texts' if wants_text else 'bona fide clips'}, "
                f"but {manifest} "
                f"is a {'text' if text_input else 'clip'} manifest"
            )
    if text_input:
        texts = [t for t in read_texts(manifest) if not splits or t.split in splits]
        for gen in gens:
            assert isinstance(gen, TextToSpeech)
            name = gen.info.name
            readable = [t for t in texts if t.language in gen.languages]
            if len(readable) < len(texts):
                log.info(
                    "%s reads %s: %d of %d texts are in other languages and left to other generators",
                    name,
                    gen.languages,
                    len(texts) - len(readable),
                    len(texts),
                )
            jobs += [
                _Job(
                    gen.spec,
                    t.id,
                    f"audio/{t.split}/{name}/{name}__{_safe(t.id)}.flac",
                    t.split,
                    "-",
                    text=t.text,
                    language=t.language,
                    licence=t.licence,
                )
                for t in readable
            ]
    else:
        from spoof_train.data.manifest import read_manifest

        rows = [
            r for r in read_manifest(manifest) if r.label == "bonafide" and (not splits or r.split in splits)
        ]
        base = manifest.parent.resolve()
        stems = Counter(_stem(r.path) for r in rows)
        for gen in gens:
            name = gen.info.name
            for r in rows:
                key = _relative(r.path, base)
                stem = (
                    _stem(r.path)
                    if stems[_stem(r.path)] == 1
                    else f"{_stem(r.path)}__{zlib.crc32(key.encode()):08x}"
                )
                rel = f"audio/{r.split}/{name}/{name}__{stem}.flac"
                jobs.append(
                    _Job(
                        gen.spec,
                        key,
                        rel,
                        r.split,
                        r.speaker,
                        path=r.path,
                        licence=str(r.extra.get("licence", "")),
                    )
                )
    if splits and not jobs:
        raise DataError(f"{manifest}: no input in the splits {list(splits)}")
    if not jobs:
        raise DataError(
            f"{manifest}: no input to synthesise from (a clip manifest needs bona fide rows; a text "
            f"manifest texts in a language the generators read)"
        )
    return jobs


#: How many bona fide clips each TTS job may try for a pause of room noise (in a seeded order).
NOISE_CANDIDATES = 8


def _with_room_noise(jobs: list[_Job], noise_from: Path, seed: int) -> list[_Job]:
    """Give every (TTS) job :data:`NOISE_CANDIDATES` bona fide clips of its split from ``noise_from``, in an
    order seeded by the job's key; clips under 1 s are left out (they rarely hold a pause)."""
    import dataclasses

    from spoof_train.data.manifest import read_manifest

    if not noise_from.is_file():
        raise DataError(f"synth: noise manifest not found: {noise_from}")
    if _is_text_manifest(noise_from):
        raise ConfigError(f"synth: the noise manifest {noise_from} is a text manifest; give bona fide clips")
    if any(not j.text for j in jobs):
        raise ConfigError(
            "synth: room noise (noise_from) is laid under TTS output only; give a text manifest"
        )
    by_split: dict[str, list[tuple[str, str]]] = {}
    for r in read_manifest(noise_from):
        seconds = r.extra.get("seconds")
        if r.label == "bonafide" and (seconds in (None, "") or float(seconds) >= 1.0):
            by_split.setdefault(r.split, []).append((r.path, str(r.extra.get("licence", ""))))
    missing = sorted({j.split for j in jobs} - set(by_split))
    if missing:
        raise DataError(f"synth: {noise_from} has no bona fide clip of 1 s or more in the splits {missing}")
    out = []
    for job in jobs:
        pool = by_split[job.split]
        order = _seed_rng(seed, "room-noise", job.key).permutation(len(pool))[:NOISE_CANDIDATES]
        out.append(dataclasses.replace(job, noise=tuple(pool[i] for i in order)))
    return out


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _stem(path: str) -> str:
    p = Path(path)
    return _safe(f"{p.parent.name}__{p.stem}")


def _relative(path: str, base: Path) -> str:
    try:
        return Path(path).resolve().relative_to(base).as_posix()
    except ValueError:
        return str(Path(path).resolve())


# ------------------------------------------------------------------------------------------ journal


def _read_journal(path: Path) -> dict[str, dict[str, Any]]:
    """The finished clips recorded in the journal. A line cut by a kill is dropped (that clip is made
    again) and the journal is rewritten without it, so the next appended line starts clean."""
    done: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return done
    torn = False
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                torn = True
                continue
            done[entry["path"]] = entry
    if torn:
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in done.values()), encoding="utf-8")
        os.replace(tmp, path)
    return done


def _write_manifest(out: Path, done: dict[str, dict[str, Any]]) -> Path:
    from spoof_train.data.manifest import Utterance, write_manifest

    base = out.resolve()  # absolute: a relative output folder must not be resolved twice
    rows = [
        Utterance(
            str(base / e["path"]),
            e["label"],
            e["attack"],
            e["speaker"],
            e["split"],
            {c: e[c] for c in _COLUMNS},
        )
        for e in sorted(done.values(), key=lambda e: e["path"])
    ]
    return write_manifest(out / "MANIFEST.tsv", rows)


# ----------------------------------------------------------------------------------------------- synth


def synth(
    manifest: str | Path,
    out_dir: str | Path,
    generators: Sequence[str],
    *,
    splits: Sequence[str] | None = None,
    seed: int = 20261207,
    workers: int = 1,
    p_channel: float = 0.3,
    p_8k: float = 0.65,
    limit: int | None = None,
    noise_from: str | Path | None = None,
    progress: bool = True,
) -> SynthSummary:
    """Make spoofs of ``manifest``'s bona fide clips or texts with each generator spec in ``generators``.

    ``splits`` keeps only those splits of the input; ``workers`` processes run clips in parallel (1 = in this
    process); ``p_channel`` is the share of clips given a G.711 / GSM round trip (corpus-v1: 0.3); ``p_8k``
    the share of TTS clips stored at 8 kHz (re-syntheses keep their source's rate); ``limit`` caps the inputs
    per generator (the first ones, for trials). ``noise_from`` (TTS only; a clip manifest) lays the recorded
    room noise of a bona fide clip of the same split under every TTS clip (:mod:`spoof_train.synth.room`),
    so the pauses of synthetic speech are not digital silence; its licence joins the clip's. Finished clips
    (in ``.journal.jsonl`` with their file) are skipped, so a killed run continues where it stopped.

    Raises :class:`ConfigError` for bad settings or an input the generators cannot read,
    :class:`~spoof_train.synth.base.GeneratorUnavailableError` when a generator's package is missing,
    :class:`DataError` for an unreadable manifest; a single clip's problem is recorded in ``failures.tsv``
    and the summary, and the run goes on.
    """
    _check_settings(generators, workers=workers, p_channel=p_channel, p_8k=p_8k, limit=limit)
    manifest = Path(manifest)
    if not manifest.is_file():
        raise DataError(f"synth: manifest not found: {manifest}")
    gens = _checked_generators(generators)
    jobs = _plan(manifest, gens, splits)
    settings: dict[str, Any] = {"seed": seed, "p_channel": p_channel, "p_8k": p_8k}
    if noise_from is not None:
        jobs = _with_room_noise(jobs, Path(noise_from), seed)
        settings["room_noise"] = Path(noise_from).name
    if limit is not None:
        jobs = _first_per_generator(jobs, limit)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with log_to_file(log, out / "synth.log", mode="a"):
        log.info(
            "synth %s -> %s: generators %s, %d inputs, workers %d, seed %d",
            manifest,
            out,
            ", ".join(g.spec for g in gens),
            len(jobs),
            workers,
            seed,
        )
        summary = _make(
            jobs,
            gens,
            out,
            settings,
            workers=workers,
            seed=seed,
            progress=progress,
            record=(manifest, splits),
        )
        log.info("%s", summary.line())
    return summary


def _make(
    jobs: list[Any],
    gens: list[Any],
    out: Path,
    settings: dict[str, Any],
    *,
    workers: int,
    seed: int,
    progress: bool,
    record: tuple[Path, Sequence[str] | None],
) -> SynthSummary:
    """Make the clips not made yet: journal, failures, manifest and per-generator figures as they go, and
    the run in ``synth.json`` (``record``: the input manifest and splits) however it ends."""
    p_channel, p_8k = float(settings["p_channel"]), float(settings["p_8k"])
    journal_path = out / ".journal.jsonl"
    done = _read_journal(journal_path)
    todo = _unfinished(jobs, done, out, settings)
    summary = SynthSummary(out_dir=str(out), skipped=len(jobs) - len(todo))
    t0 = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(
        total=len(todo), desc="synth", unit="clip", file=sys.stderr, disable=not progress, dynamic_ncols=True
    )
    with journal_path.open("a", encoding="utf-8") as journal:
        tally = _Tally(summary, gens, settings=settings, done=done, journal=journal, bar=bar)
        try:
            if workers == 1:
                for job in todo:
                    tally.record(_work(job, seed, str(out), p_channel, p_8k))
            else:
                _run_in_workers(todo, tally, workers, seed=seed, out=out, p_channel=p_channel, p_8k=p_8k)
        finally:
            bar.close()
            summary.wall_seconds = time.perf_counter() - t0
            summary.per_generator = tally.per_gen
            summary.manifest = str(_write_manifest(out, done)) if done else ""
            _write_failures(out / "failures.tsv", tally.failures)
            _record_run(
                out,
                record[0],
                gens=gens,
                settings=settings,
                workers=workers,
                splits=record[1],
                summary=summary,
            )
    return summary


def _check_settings(
    generators: Sequence[str], *, workers: int, p_channel: float, p_8k: float, limit: int | None
) -> None:
    """:class:`ConfigError` for a setting of :func:`synth` out of range."""
    if not generators:
        raise ConfigError("synth: give at least one generator")
    if workers < 1:
        raise ConfigError(f"synth: workers must be >= 1, got {workers}")
    for name, value in (("p_channel", p_channel), ("p_8k", p_8k)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"synth: {name} must be in [0, 1], got {value}")
    if limit is not None and limit < 1:
        raise ConfigError(f"synth: limit must be >= 1, got {limit}")


def _checked_generators(generators: Sequence[str]) -> list[Generator]:
    """One instance per canonical spec and process (shared with :func:`_generator`), each with a distinct
    name and checked (:meth:`Generator.check`) before any clip is made."""
    gens = []
    for spec in generators:
        gen = make_generator(spec)
        gens.append(_GENERATORS.setdefault(gen.spec, gen))
    specs = [g.spec for g in gens]
    if len(set(g.info.name for g in gens)) != len(gens):
        raise ConfigError(f"synth: a generator is named twice in {specs}")
    for gen in gens:
        gen.check()
    return gens


def _first_per_generator(jobs: list[_Job], limit: int) -> list[_Job]:
    """The first ``limit`` jobs of each generator spec, in order."""
    per: Counter[str] = Counter()
    kept = []
    for job in jobs:
        per[job.spec] += 1
        if per[job.spec] <= limit:
            kept.append(job)
    return kept


def _unfinished(
    jobs: list[_Job], done: dict[str, dict[str, Any]], out: Path, settings: dict[str, Any]
) -> list[_Job]:
    """The jobs whose clip is not finished (in the journal and on disk); :class:`ConfigError` when the
    journal says a clip at a job's path was made with another generator or other settings."""
    for job in jobs:
        prior = done.get(job.rel)
        if prior is not None and (prior.get("generator") != job.spec or prior.get("settings") != settings):
            raise ConfigError(
                f"synth: {out / job.rel} was made with {prior.get('generator')} and "
                f"{prior.get('settings')}, this run "
                f"asks for {job.spec} and {settings}; use another output folder"
            )
    return [j for j in jobs if not (j.rel in done and (out / j.rel).is_file())]


class _Tally:
    """What :func:`synth` has done so far: each finished clip goes to the journal (and ``done``), each failure
    to ``failures``, both to the summary, the per-generator statistics and the progress bar."""

    def __init__(
        self,
        summary: SynthSummary,
        gens: Sequence[Generator],
        *,
        settings: dict[str, Any],
        done: dict[str, dict[str, Any]],
        journal: TextIO,
        bar: Any,  # a tqdm bar (tqdm is untyped)
    ) -> None:
        self.summary, self.settings, self.done, self.journal, self.bar = summary, settings, done, journal, bar
        self.failures: list[tuple[str, str, str, str]] = []
        self.per_gen: dict[str, dict[str, float]] = {
            g.spec: {"clips": 0, "audio_seconds": 0.0, "cpu_seconds": 0.0, "failed": 0} for g in gens
        }

    def record(self, result: tuple[_Job, dict[str, Any] | None, str, str, float]) -> None:
        job, row, reason, message, cpu = result
        stats = self.per_gen[job.spec]
        stats["cpu_seconds"] += cpu
        if row is None:
            self.failures.append((job.key, job.spec, reason, message))
            self.summary.failed[reason] = self.summary.failed.get(reason, 0) + 1
            stats["failed"] += 1
        else:
            entry = dict(row, settings=self.settings)
            self.journal.write(json.dumps(entry, sort_keys=True) + "\n")
            self.journal.flush()
            self.done[job.rel] = entry
            self.summary.written += 1
            stats["clips"] += 1
            stats["audio_seconds"] += float(row["seconds"])
        self.bar.update(1)
        self.bar.set_postfix(failed=len(self.failures), refresh=False)


def _run_in_workers(
    todo: list[_Job], tally: _Tally, workers: int, *, seed: int, out: Path, p_channel: float, p_8k: float
) -> None:
    """Make the ``todo`` clips in ``workers`` spawned processes, at most 4 clips per worker in flight,
    recording each result as it comes."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(),))
    try:
        pending: set[Future[Any]] = set()
        for job in todo:
            pending.add(pool.submit(_work, job, seed, str(out), p_channel, p_8k))
            if len(pending) >= 4 * workers:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    tally.record(fut.result())
        for fut in pending:
            tally.record(fut.result())
    finally:  # on Ctrl-C or an error, queued clips are cancelled, not waited for
        pool.shutdown(wait=True, cancel_futures=True)


def _write_failures(path: Path, failures: list[tuple[str, str, str, str]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("input\tgenerator\treason\tmessage\n")
        for row in sorted(failures):
            f.write("\t".join(" ".join(v.split()) for v in row) + "\n")


def _record_run(
    out: Path,
    manifest: Path,
    *,
    gens: Sequence[Generator],
    settings: dict[str, Any],
    workers: int,
    splits: Sequence[str] | None,
    summary: SynthSummary,
) -> None:
    path = out / "synth.json"
    try:
        record = json.loads(path.read_text()) if path.exists() else {"runs": []}
    except json.JSONDecodeError:
        record = {"runs": []}
    record["runs"].append(
        {
            "manifest": str(manifest.resolve()),
            "splits": list(splits) if splits else None,
            "generators": {
                g.spec: {
                    "description": g.info.description,
                    "licence": g.info.licence,
                    "seeded": g.info.seeded,
                    "seed_note": g.info.seed_note,
                    "versions": g.versions(),
                }
                for g in gens
            },
            "settings": settings,
            "workers": workers,
            "summary": asdict(summary),
        }
    )
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
