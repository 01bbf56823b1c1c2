"""Calibration and dev audio for export: resolve ``--calib`` / ``--dev`` into fixed-length windows.

``--calib PATH`` is a manifest file (TSV with a ``path`` column, paths relative to the manifest), or a
directory: its ``MANIFEST.tsv`` when it has one, otherwise every audio file under it. Each clip gives
one window of ``window_samples`` at the model rate: the centre of a longer clip, a shorter clip tiled
(repeated) to length, so calibration sees speech statistics rather than padding. Rows are picked
deterministically (seeded) and balanced across labels when labels are known. The dev set of the report's
EER also keeps every window of each clip, cut as the SDK scores it (``hop_samples``: :class:`ClipWindows`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spoof_export.errors import CalibrationError
from spoof_export.progress import progress

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "AUDIO_SUFFIXES",
    "AudioSet",
    "Clip",
    "ClipWindows",
    "load_audio_set",
    "resolve_clips",
    "sdk_window_starts",
    "window_of",
]

log = logging.getLogger("spoof_export")

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".opus")


@dataclass(frozen=True)
class Clip:
    """One audio file to read: its path and, when a manifest says so, its label and split."""

    path: Path
    label: str | None = None
    split: str | None = None


@dataclass(frozen=True)
class ClipWindows:
    """Every window of each clip, cut as the SDK scores a clip (:func:`sdk_window_starts`), in batches of
    equal-length windows; ``owner[i]`` is the clip (index into the set's paths) of the i-th window in
    batch order. :meth:`clip_means` turns per-window scores into the clip scores (mean aggregation)."""

    batches: list[NDArray[np.float32]]
    owner: NDArray[np.int64]
    n_clips: int
    window_samples: int
    hop_samples: int

    @property
    def n_windows(self) -> int:
        return int(self.owner.size)

    def clip_means(self, window_scores: NDArray[np.float64]) -> NDArray[np.float64]:
        scores = np.asarray(window_scores, dtype=np.float64)
        if scores.shape != self.owner.shape:
            raise ValueError(f"expected {self.owner.size} window scores, given {scores.shape}")
        sums = np.bincount(self.owner, weights=scores, minlength=self.n_clips)
        counts = np.bincount(self.owner, minlength=self.n_clips)
        return np.asarray(sums / counts, dtype=np.float64)


@dataclass(frozen=True)
class AudioSet:
    """Windows ``[N, window_samples]`` float32 with their labels (``None`` when unknown) and sources;
    with ``hop_samples`` given to :func:`load_audio_set`, also every window of each clip (``clips``)."""

    windows: NDArray[np.float32]
    labels: tuple[str | None, ...]
    paths: tuple[str, ...]
    source: str
    clips: ClipWindows | None = None
    too_short: tuple[str, ...] = ()


def sdk_window_starts(n_samples: int, window_samples: int, hop_samples: int) -> list[int]:
    """Window starts of a clip as ``spoofsdk.Detector.score`` cuts it: ``0, hop, 2 hop, ...`` while a
    window fits, then one window ending at the last sample when the grid leaves a tail; a clip no longer
    than a window is one window of its own length (start 0)."""
    from spoof_train.data import window_starts

    return list(window_starts(n_samples, window_samples, hop_samples))


def _clip_windows(
    waves: list[NDArray[np.float32]], window_samples: int, hop_samples: int, batch: int = 8
) -> ClipWindows:
    cut: list[tuple[int, NDArray[np.float32]]] = []
    for i, wave in enumerate(waves):
        for s in sdk_window_starts(wave.shape[0], window_samples, hop_samples):
            cut.append((i, np.ascontiguousarray(wave[s : s + window_samples], dtype=np.float32)))
    by_length: dict[int, list[tuple[int, NDArray[np.float32]]]] = {}
    for owner, w in cut:
        by_length.setdefault(int(w.shape[0]), []).append((owner, w))
    batches: list[NDArray[np.float32]] = []
    owners: list[int] = []
    for length in sorted(by_length, reverse=True):
        group = by_length[length]
        for k in range(0, len(group), batch):
            part = group[k : k + batch]
            batches.append(np.stack([w for _, w in part]))
            owners.extend(o for o, _ in part)
    return ClipWindows(
        batches=batches,
        owner=np.asarray(owners, dtype=np.int64),
        n_clips=len(waves),
        window_samples=window_samples,
        hop_samples=hop_samples,
    )


def _manifest_clips(manifest: Path) -> list[Clip]:
    try:
        from spoof_train.data import read_manifest
    except ImportError as exc:  # pragma: no cover - spoof_train ships in the same wheel
        raise CalibrationError(f"reading the manifest {manifest} needs spoof_train.data ({exc})") from exc
    try:
        rows = read_manifest(manifest)
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"{manifest}: not a readable manifest ({exc})") from exc
    clips = []
    for row in rows:
        p = Path(row.path)
        if not p.is_absolute():
            p = manifest.parent / p
        split = row.split if row.split not in ("", "-") else None
        clips.append(Clip(path=p, label=row.label, split=split))
    return clips


def resolve_clips(path: str | Path, *, split: str | None, what: str = "calibration") -> list[Clip]:
    """The clips named by a manifest file or a directory (see the module docstring).

    ``split`` keeps only rows of that split when the manifest has splits (``None`` keeps all).
    Raises :class:`CalibrationError` when the path does not exist or names no audio.
    """
    p = Path(path)
    if not p.exists():
        raise CalibrationError(
            f"{what} set {p}: expected a manifest file or a directory, given a missing path"
        )
    if p.is_dir():
        manifest = p / "MANIFEST.tsv"
        if manifest.is_file():
            clips = _manifest_clips(manifest)
            source = str(manifest)
        else:
            files = sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file())
            clips = [Clip(path=f) for f in files]
            source = f"{p} (audio files)"
    else:
        clips = _manifest_clips(p)
        source = str(p)
    if split is not None and any(c.split is not None for c in clips):
        kept = [c for c in clips if c.split == split]
        if not kept:
            splits = sorted({c.split for c in clips if c.split})
            raise CalibrationError(
                f"{what} set {source}: no rows in split '{split}' (splits present: {splits})"
            )
        clips = kept
    if not clips:
        raise CalibrationError(
            f"{what} set {source}: expected audio files ({', '.join(AUDIO_SUFFIXES)}) "
            "or manifest rows, found none"
        )
    return clips


def _pick(clips: list[Clip], max_files: int | None, seed: int) -> list[Clip]:
    if max_files is None or len(clips) <= max_files:
        return clips
    rng = np.random.default_rng(seed)
    by_label: dict[str | None, list[Clip]] = {}
    for c in clips:
        by_label.setdefault(c.label, []).append(c)
    groups = [[g[i] for i in rng.permutation(len(g))] for _, g in sorted(by_label.items(), key=str)]
    picked: list[Clip] = []
    while len(picked) < max_files:  # round robin over labels: balanced when labels are known
        for g in groups:
            if g and len(picked) < max_files:
                picked.append(g.pop())
    return picked


def window_of(wave: NDArray[np.float32], window_samples: int) -> NDArray[np.float32]:
    """The centre ``window_samples`` of a clip; a shorter clip is tiled to length."""
    n = wave.shape[0]
    if n == 0:
        raise ValueError("empty clip")
    if n >= window_samples:
        start = (n - window_samples) // 2
        return np.ascontiguousarray(wave[start : start + window_samples], dtype=np.float32)
    reps = -(-window_samples // n)
    return np.tile(wave, reps)[:window_samples].astype(np.float32)


def read_clip(path: Path, sample_rate: int) -> NDArray[np.float32]:
    """Read a file as mono float32 at ``sample_rate`` (resampled with soxr when needed)."""
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    wave: NDArray[np.float32] = np.asarray(data.mean(axis=1), dtype=np.float32)  # soundfile is untyped
    if sr != sample_rate:
        import soxr

        wave = np.asarray(soxr.resample(wave, sr, sample_rate), dtype=np.float32)
    return wave


def load_audio_set(
    path: str | Path,
    *,
    sample_rate: int,
    window_samples: int,
    max_files: int | None,
    min_files: int,
    split: str | None,
    seed: int = 0,
    what: str = "calibration",
    hop_samples: int | None = None,
    min_samples: int = 1,
) -> AudioSet:
    """Read up to ``max_files`` clips of a calibration / dev set into one window each.

    Unreadable, empty or non-finite files are skipped with a warning; fewer than ``min_files``
    usable clips is a :class:`CalibrationError` (a tiny set calibrates ranges badly and silently).
    With ``hop_samples`` every window of each clip is kept too (``AudioSet.clips``, cut as the SDK
    scores), and clips shorter than ``min_samples`` are left out as the SDK refuses them
    (``AudioSet.too_short``).
    """
    clips = resolve_clips(path, split=split, what=what)
    picked = _pick(clips, max_files, seed)
    windows: list[NDArray[np.float32]] = []
    labels: list[str | None] = []
    paths: list[str] = []
    skipped: list[str] = []
    waves: list[NDArray[np.float32]] = []
    too_short: list[str] = []
    tick = progress(f"{what} set: reading", len(picked))
    for n, clip in enumerate(picked):
        tick(n)  # clips read so far
        try:
            wave = read_clip(clip.path, sample_rate)
            if wave.size == 0 or not np.isfinite(wave).all():
                raise ValueError("empty or non-finite samples")
            if hop_samples is not None and wave.shape[0] < min_samples:
                too_short.append(str(clip.path))
                continue
            windows.append(window_of(wave, window_samples))
        except (OSError, RuntimeError, ValueError) as exc:  # soundfile raises RuntimeError subclasses
            skipped.append(f"{clip.path}: {exc}")
            continue
        if hop_samples is not None:
            waves.append(wave)
        labels.append(clip.label)
        paths.append(str(clip.path))
    tick(len(picked))
    if skipped:
        log.warning("%s set: skipped %d unreadable clip(s), first: %s", what, len(skipped), skipped[0])
    if too_short:
        log.warning(
            "%s set: left out %d clip(s) shorter than the model's %d samples (the SDK refuses them)",
            what,
            len(too_short),
            min_samples,
        )
    if len(windows) < min_files:
        detail = f"; skipped {len(skipped)} unreadable (first: {skipped[0]})" if skipped else ""
        raise CalibrationError(
            f"{what} set {path}: expected at least {min_files} usable audio clips, given {len(windows)}"
            f" of {len(picked)} picked{detail}"
        )
    return AudioSet(
        windows=np.stack(windows).astype(np.float32),
        labels=tuple(labels),
        paths=tuple(paths),
        source=str(path),
        clips=None if hop_samples is None else _clip_windows(waves, window_samples, hop_samples),
        too_short=tuple(too_short),
    )
