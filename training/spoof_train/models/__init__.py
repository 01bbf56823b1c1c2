"""spoof_train.models: SSL and Whisper-encoder backbones with real layer pruning, back-ends, raw-waveform
detectors.

Public API: :class:`DetectorConfig`, :func:`build_detector`, the detector classes and back-ends. Importing
this package imports torch (transformers is imported when an SSL model is built).
"""

from __future__ import annotations

from spoof_train.models.backends import (
    AASISTBackend,
    FFNBackend,
    LayerWeightedBackend,
    MHFABackend,
    SLSBackend,
    backend_options,
    build_backend,
)
from spoof_train.models.config import BACKEND_NAMES, KINDS, LABEL_ORDER, SSL_FAMILIES, DetectorConfig
from spoof_train.models.detector import (
    EnsembleDetector,
    RawDetector,
    SSLDetector,
    build_detector,
    detector_config_from_pretrained,
    read_pretrained_backbone,
)
from spoof_train.models.raw import AASIST, RawNet2
from spoof_train.models.ssl import SSLBackbone
from spoof_train.models.whisper import WhisperBackbone

__all__ = [
    "AASIST",
    "BACKEND_NAMES",
    "KINDS",
    "LABEL_ORDER",
    "SSL_FAMILIES",
    "AASISTBackend",
    "DetectorConfig",
    "EnsembleDetector",
    "FFNBackend",
    "LayerWeightedBackend",
    "MHFABackend",
    "RawDetector",
    "RawNet2",
    "SLSBackend",
    "SSLBackbone",
    "SSLDetector",
    "WhisperBackbone",
    "backend_options",
    "build_backend",
    "build_detector",
    "detector_config_from_pretrained",
    "read_pretrained_backbone",
]
