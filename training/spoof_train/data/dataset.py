"""Datasets, batching and loaders for training and chunked full-length evaluation.

Training items (``train=True``) follow the research recipes (AASIST / SSL_Anti-spoofing ``pad_random``): a
clip longer than ``crop_samples`` is cut at a uniformly random start; a shorter clip is **repeat-padded**
(tiled from its start) to ``crop_samples``. Evaluation items with ``crop_samples`` take the first
``crop_samples`` (repeat-padded when short); with ``crop_samples=None`` items keep their full length and
:func:`collate_pad` zero-pads the batch and reports ``lengths`` for the model's padding mask.

Randomness is reproducible and independent of the number of workers: item ``i`` in epoch ``e`` draws from
``numpy.random.default_rng([seed, e, i])`` (the whole-clip chain ``clip_augment`` when there is one, then the
crop position, then the crop's augmentation chain); call
:meth:`AudioDataset.set_epoch` at the start of each epoch.

Chunked evaluation (:class:`ChunkedEvalDataset`) scores full-length audio as the SDK does: windows of
``window_samples`` every ``hop_samples``, the last window aligned to the end of the clip so no audio is left
out; a clip shorter than one window gives one window, repeat-padded (``short="repeat"``, default, as in
training), zero-padded with its true length (``short="zero"``), or of its own length (``short="none"``, what
``spoofsdk.Detector.score`` does; :func:`collate_windows` then zero-pads the batch and reports lengths).
:func:`aggregate_windows` averages (or takes the min / max of) the window scores per utterance.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader, Dataset, Sampler

from spoof_train.data.audio import load_audio
from spoof_train.data.manifest import Utterance
from spoof_train.errors import DataError

__all__ = [
    "AudioDataset",
    "BucketBatchSampler",
    "ChunkedEvalDataset",
    "aggregate_windows",
    "collate_pad",
    "collate_windows",
    "crop_or_pad",
    "make_loader",
    "utterance_lengths",
    "window_starts",
]

logger = logging.getLogger("spoof_train")

Augment = Callable[[NDArray[np.float32], int, np.random.Generator], NDArray[np.float32]]


def crop_or_pad(
    wave: NDArray[np.float32], length: int, *, rng: np.random.Generator | None = None
) -> NDArray[np.float32]:
    """Cut ``wave`` to ``length`` samples (random start with ``rng``, else from 0) or repeat-pad it."""
    n = wave.shape[0]
    if n == 0:
        raise DataError("crop_or_pad: empty waveform")
    if n >= length:
        start = int(rng.integers(0, n - length + 1)) if rng is not None else 0
        return wave[start : start + length]
    reps = math.ceil(length / n)
    return np.tile(wave, reps)[:length]


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise DataError(f"on_error: expected 'raise' or 'skip', got {on_error!r}")


def _existing_rows(rows: Sequence[Utterance], on_error: str, what: str) -> list[Utterance]:
    rows = list(rows)
    if not rows:
        raise DataError(f"{what}: no rows (an empty split?)")
    missing = [r for r in rows if not Path(r.path).is_file()]
    if missing:
        listed = ", ".join(r.path for r in missing[:5])
        if on_error == "raise":
            raise DataError(
                f"{what}: {len(missing)} of {len(rows)} audio files are missing (first: {listed}); "
                "pass on_error='skip' to leave them out"
            )
        logger.warning(
            "%s: skipping %d of %d missing audio files (first: %s)", what, len(missing), len(rows), listed
        )
        gone = {r.path for r in missing}
        rows = [r for r in rows if r.path not in gone]
        if not rows:
            raise DataError(f"{what}: every audio file is missing")
    return rows


class AudioDataset(Dataset[dict[str, Any] | None]):
    """Manifest rows -> ``{"wave": FloatTensor[T], "label": int, "id": str, "attack": str}``.

    ``crop_samples`` fixes the length (random crop when ``train``, see the module docstring); ``augment`` is a
    callable ``aug(wave, sample_rate, rng) -> wave`` applied after cropping, to training items only;
    ``clip_augment`` one applied to the whole decoded clip before cropping (training items only; it may change
    the length, e.g. speed perturbation).
    ``cache``: an :class:`~spoof_train.data.cache.AudioCache` (decoded audio in a float16 memmap file, shared
    by all workers through the page cache), or ``True`` for an in-process cache that keeps each decoded clip
    as float16 after its first load (one copy per DataLoader worker), or None (decode every time).
    ``on_error``: ``"raise"`` fails on a missing or undecodable file with a :class:`DataError` naming it;
    ``"skip"`` leaves missing files out at construction and, for a file that fails to decode, logs it, records
    it in :attr:`errors` and then returns the next decodable item (training) or ``None`` (evaluation), which
    :func:`collate_pad` drops, so a score is never counted twice.
    """

    def __init__(
        self,
        rows: Sequence[Utterance],
        *,
        sample_rate: int = 16000,
        crop_samples: int | None = None,
        train: bool = False,
        augment: Augment | None = None,
        clip_augment: Augment | None = None,
        seed: int = 0,
        on_error: str = "raise",
        cache: Any | None = None,
    ) -> None:
        _check_on_error(on_error)
        if crop_samples is not None and crop_samples <= 0:
            raise DataError(
                f"crop_samples: expected a positive number of samples or None, got {crop_samples}"
            )
        use_file_cache = cache is not None and cache is not True and cache is not False
        self.rows = list(rows) if use_file_cache else _existing_rows(rows, on_error, "AudioDataset")
        self.sample_rate = sample_rate
        self.crop_samples = crop_samples
        self.train = train
        self.augment = augment
        self.clip_augment = clip_augment
        self.seed = seed
        self.on_error = on_error
        self.cache = cache if use_file_cache else None
        self._mem: dict[int, NDArray[np.float16]] | None = {} if cache is True else None
        self.epoch = 0
        self.errors: list[str] = []

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops / augmentations items draw (reproducible per epoch)."""
        self.epoch = int(epoch)

    def load(self, index: int) -> NDArray[np.float32]:
        """Decoded mono float32 audio of row ``index`` at ``sample_rate`` (from the cache when it has it)."""
        row = self.rows[index]
        if self.cache is not None:
            wave = self.cache.get(row.path)
            if wave is not None:
                return np.asarray(wave, dtype=np.float32)
        if self._mem is not None:
            hit = self._mem.get(index)
            if hit is not None:
                return hit.astype(np.float32)
            # the first load returns the float16-rounded clip too, so results never depend on cache state
            self._mem[index] = load_audio(row.path, sample_rate=self.sample_rate).astype(np.float16)
            return self._mem[index].astype(np.float32)
        return load_audio(row.path, sample_rate=self.sample_rate)

    def _item(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        wave = self.load(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.train and self.clip_augment is not None:
            wave = np.asarray(self.clip_augment(wave, self.sample_rate, rng), dtype=np.float32)
        if self.crop_samples is not None:
            wave = crop_or_pad(wave, self.crop_samples, rng=rng if self.train else None)
        if self.train and self.augment is not None:
            wave = np.asarray(self.augment(wave, self.sample_rate, rng), dtype=np.float32)
        return {
            "wave": torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)),
            "label": row.label_id,
            "id": row.id,
            "attack": row.attack,
        }

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        if self.on_error == "raise":
            return self._item(index)
        tries = len(self.rows) if self.train else 1
        for k in range(tries):
            j = (index + k) % len(self.rows)
            try:
                return self._item(j)
            except DataError as exc:
                logger.warning("skipping %s: %s", self.rows[j].path, exc)
                self.errors.append(f"{self.rows[j].path}: {exc}")
        if self.train:
            raise DataError("AudioDataset: no decodable audio file in the data set")
        return None


def collate_pad(batch: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack items, zero-padding waves to the longest: ``{"wave": [B, Tmax], "lengths": [B], "label": [B],
    "id": list, "attack": list}``. ``None`` items (skipped files) are dropped; B may then be 0."""
    items = [b for b in batch if b is not None]
    if not items:
        return {
            "wave": torch.zeros(0, 0),
            "lengths": torch.zeros(0, dtype=torch.long),
            "label": torch.zeros(0, dtype=torch.long),
            "id": [],
            "attack": [],
        }
    lengths = [int(b["wave"].shape[0]) for b in items]
    # padded in numpy, then wrapped: torch's intra-op threads are not woken for a copy (that matters in the
    # main process, num_workers=0, on a busy machine)
    wave = np.zeros((len(items), max(lengths)), dtype=np.float32)
    for i, b in enumerate(items):
        wave[i, : lengths[i]] = b["wave"].numpy()
    return {
        "wave": torch.from_numpy(wave),
        "lengths": torch.tensor(lengths, dtype=torch.long),
        "label": torch.tensor([int(b["label"]) for b in items], dtype=torch.long),
        "id": [b["id"] for b in items],
        "attack": [b["attack"] for b in items],
    }


# ---------------------------------------------------------------------------------------------------------
# chunked full-length evaluation


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start indices of the evaluation windows of a clip of ``n_samples``: ``0, hop, 2 hop, ...`` while a
    window fits, plus one window aligned to the end when the hop grid leaves a tail; ``[0]`` when the clip is
    no longer than one window."""
    if window <= 0 or hop <= 0:
        raise DataError(f"window and hop must be positive, got window={window}, hop={hop}")
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return starts


class ChunkedEvalDataset(Dataset[dict[str, Any] | None]):
    """Full-length evaluation: each item is one utterance cut into windows (see the module docstring).

    Items: ``{"windows": FloatTensor[N, window], "lengths": LongTensor[N], "label", "id", "attack"}``.
    """

    def __init__(
        self,
        rows: Sequence[Utterance],
        *,
        window_samples: int,
        hop_samples: int,
        sample_rate: int = 16000,
        short: str = "repeat",
        on_error: str = "raise",
        cache: Any | None = None,
    ) -> None:
        _check_on_error(on_error)
        if short not in ("repeat", "zero", "none"):
            raise DataError(f"short: expected 'repeat', 'zero' or 'none', got {short!r}")
        if window_samples <= 0 or hop_samples <= 0:
            raise DataError(f"window and hop must be positive, got {window_samples}, {hop_samples}")
        self.inner = AudioDataset(rows, sample_rate=sample_rate, on_error=on_error, cache=cache)
        self.window = window_samples
        self.hop = hop_samples
        self.short = short

    @property
    def rows(self) -> list[Utterance]:
        return self.inner.rows

    @property
    def errors(self) -> list[str]:
        return self.inner.errors

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        item = self.inner[index]
        if item is None:
            return None
        wave: torch.Tensor = item["wave"]
        n = int(wave.shape[0])
        if n < self.window:
            if self.short == "repeat":
                windows = torch.from_numpy(crop_or_pad(wave.numpy(), self.window)).unsqueeze(0)
                lengths = torch.tensor([self.window])
            elif self.short == "none":  # one window of the clip's own length, as spoofsdk's Detector.score
                windows = wave.unsqueeze(0)
                lengths = torch.tensor([n])
            else:
                windows = torch.zeros(1, self.window)
                windows[0, :n] = wave
                lengths = torch.tensor([n])
        else:
            starts = window_starts(n, self.window, self.hop)
            windows = torch.stack([wave[s : s + self.window] for s in starts])
            lengths = torch.full((len(starts),), self.window, dtype=torch.long)
        return {
            "windows": windows,
            "lengths": lengths.long(),
            "label": item["label"],
            "id": item["id"],
            "attack": item["attack"],
        }


def collate_windows(batch: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Concatenate the windows of several utterances: ``{"wave": [sum N, window], "lengths", "owner":
    LongTensor[sum N] (utterance index within the batch), "label": [B], "id", "attack"}``."""
    items = [b for b in batch if b is not None]
    if not items:
        return {
            "wave": torch.zeros(0, 0),
            "lengths": torch.zeros(0, dtype=torch.long),
            "owner": torch.zeros(0, dtype=torch.long),
            "label": torch.zeros(0, dtype=torch.long),
            "id": [],
            "attack": [],
        }
    width = max(int(b["windows"].shape[1]) for b in items)  # < window only with short="none"
    return {
        "wave": torch.cat(
            [torch.nn.functional.pad(b["windows"], (0, width - b["windows"].shape[1])) for b in items]
        ),
        "lengths": torch.cat([b["lengths"] for b in items]),
        "owner": torch.cat(
            [torch.full((b["windows"].shape[0],), i, dtype=torch.long) for i, b in enumerate(items)]
        ),
        "label": torch.tensor([int(b["label"]) for b in items], dtype=torch.long),
        "id": [b["id"] for b in items],
        "attack": [b["attack"] for b in items],
    }


def aggregate_windows(
    window_scores: torch.Tensor, owner: torch.Tensor, n_utterances: int, *, method: str = "mean"
) -> torch.Tensor:
    """Per-utterance score from window scores (``[sum N]`` or ``[sum N, C]``): mean, min or max."""
    if method not in ("mean", "min", "max"):
        raise DataError(f"aggregate method: expected 'mean', 'min' or 'max', got {method!r}")
    if window_scores.shape[0] != owner.shape[0]:
        raise DataError(f"window_scores has {window_scores.shape[0]} rows but owner has {owner.shape[0]}")
    shape = (n_utterances, *window_scores.shape[1:])
    idx = owner.view(-1, *([1] * (window_scores.dim() - 1))).expand_as(window_scores)
    if method == "mean":
        total = torch.zeros(shape, dtype=window_scores.dtype).scatter_add_(0, idx, window_scores)
        count = torch.bincount(owner, minlength=n_utterances).to(window_scores.dtype)
        if (count == 0).any():
            raise DataError("aggregate_windows: an utterance has no windows")
        return total / count.view(-1, *([1] * (window_scores.dim() - 1)))
    fill = math.inf if method == "min" else -math.inf
    out = torch.full(shape, fill, dtype=window_scores.dtype)
    return out.scatter_reduce_(0, idx, window_scores, reduce="amin" if method == "min" else "amax")


# ---------------------------------------------------------------------------------------------------------
# loaders


def utterance_lengths(rows: Sequence[Utterance], sample_rate: int = 16000) -> list[int]:
    """Length in samples at ``sample_rate`` of each row: from a ``seconds`` column when the manifest has one
    (corpus-v1 does), else from the file header (``soundfile.info``)."""
    import soundfile as sf

    out = []
    for r in rows:
        sec = r.extra.get("seconds")
        if sec not in (None, "", "-"):
            out.append(round(float(sec) * sample_rate))
            continue
        try:
            info = sf.info(r.path)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise DataError(f"cannot read the header of {r.path}: {exc}") from exc
        out.append(round(info.frames * sample_rate / info.samplerate))
    return out


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length utterances for full-length (uncropped) training: less padding per batch.

    Each epoch the indices are shuffled (seeded by ``seed`` and the epoch), cut into pools of
    ``batch_size * pool_batches``, each pool sorted by length and cut into batches; the batches are shuffled.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        pool_batches: int = 50,
    ) -> None:
        if batch_size <= 0:
            raise DataError(f"batch_size: expected > 0, got {batch_size}")
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.pool = batch_size * max(1, pool_batches)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        idx = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        batches: list[list[int]] = []
        for p in range(0, len(idx), self.pool):
            pool = idx[p : p + self.pool]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            for b in range(0, len(pool), self.batch_size):
                batch = pool[b : b + self.batch_size].tolist()
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch)
        if self.shuffle:
            order = rng.permutation(len(batches))
            batches = [batches[i] for i in order]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


def _worker_init(worker_id: int) -> None:
    # items draw from their own seeded Generators; this only keeps third-party code that uses the legacy
    # global numpy state from repeating the same stream in every worker
    info = torch.utils.data.get_worker_info()
    if info is not None:
        np.random.seed((info.seed + worker_id) % 2**32)  # noqa: NPY002
    torch.set_num_threads(1)


def make_loader(
    dataset: Dataset[Any],
    *,
    batch_size: int,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    collate_fn: Callable[[Sequence[Any]], dict[str, Any]] | None = None,
    batch_sampler: Sampler[list[int]] | None = None,
    prefetch_factor: int = 4,
) -> DataLoader[Any]:
    """A DataLoader set up to keep the model busy: seeded shuffling, ``num_workers`` decoding processes that
    stay alive across epochs (one torch thread each, so they do not fight the model for cores), a prefetch
    queue of ``prefetch_factor`` batches per worker, and :func:`collate_pad` (or :func:`collate_windows` for a
    :class:`ChunkedEvalDataset`) by default."""
    if collate_fn is None:
        collate_fn = collate_windows if isinstance(dataset, ChunkedEvalDataset) else collate_pad
    gen = torch.Generator()
    gen.manual_seed(seed)
    kwargs: dict[str, Any] = {
        "num_workers": num_workers,
        "collate_fn": collate_fn,
        "worker_init_fn": _worker_init if num_workers > 0 else None,
        "generator": gen,
    }
    if num_workers > 0:
        kwargs["persistent_workers"] = True
        kwargs["prefetch_factor"] = prefetch_factor
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **kwargs)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, **kwargs)
