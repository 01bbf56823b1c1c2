"""Data of spoof_train: the manifest format, protocol parsers, audio loading, datasets and loaders.

The torch-based datasets and loaders (``spoof_train.data.dataset``) are imported on first use, so reading
manifests or converting protocols (``spoof-train make-manifest``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from spoof_train.data.audio import load_audio, resample, resampler_backend
from spoof_train.data.cache import AudioCache
from spoof_train.data.manifest import (
    LABELS,
    REQUIRED_COLUMNS,
    Utterance,
    check_splits,
    read_manifest,
    select_split,
    write_manifest,
)
from spoof_train.data.protocols import (
    FORMATS,
    make_manifest,
    parse_asvspoof5,
    parse_asvspoof2019_la,
    parse_asvspoof2021,
    parse_folders,
    parse_in_the_wild,
)

__all__ = [
    "FORMATS",
    "LABELS",
    "REQUIRED_COLUMNS",
    "AudioCache",
    "AudioDataset",
    "BucketBatchSampler",
    "ChunkedEvalDataset",
    "Utterance",
    "aggregate_windows",
    "check_splits",
    "collate_pad",
    "collate_windows",
    "crop_or_pad",
    "load_audio",
    "make_loader",
    "make_manifest",
    "parse_asvspoof5",
    "parse_asvspoof2019_la",
    "parse_asvspoof2021",
    "parse_folders",
    "parse_in_the_wild",
    "read_manifest",
    "resample",
    "resampler_backend",
    "select_split",
    "utterance_lengths",
    "window_starts",
    "write_manifest",
]

_LAZY = {
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
}

if TYPE_CHECKING:
    from spoof_train.data.dataset import (
        AudioDataset,
        BucketBatchSampler,
        ChunkedEvalDataset,
        aggregate_windows,
        collate_pad,
        collate_windows,
        crop_or_pad,
        make_loader,
        utterance_lengths,
        window_starts,
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module("spoof_train.data.dataset"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spoof_train.data' has no attribute {name!r}")
