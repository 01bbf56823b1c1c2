"""Speech-activity gating: how much speech each analysis window holds.

A spoofing detector has only learnt speech; on digital silence, line noise, DTMF or hold music its output
means nothing (the v1 detector called 2-4 s of zeros spoof with p 0.999). The runtime therefore measures each
window's speech before scoring it: windows whose speech share is under the detector's ``min_speech`` are
marked ``no_speech`` and not scored, the clip score aggregates the speech windows only, and a clip or call
without any speech window is ``undetermined``.

The measure is Silero VAD v6 (MIT, Silero Team; the ``silero_vad_16k_sequence.onnx`` graph of the
``silero-vad`` 6.2.3 wheel, shipped in ``spoofsdk/models/``): the window at the model rate (16 kHz) is cut
into 32 ms frames (512 samples, each with the 64 samples before it as context), preceded by
:data:`PRIME_FRAMES` frames of zeros that settle the LSTM from its zero state (without them Silero misses
isolated words at the very start: 2.5 % of corpus-v1's bona fide 2 s windows showed no speech, 0.7 % with
them);
the whole sequence runs in one ONNX Runtime call, and the speech share is the fraction of the window's own
frames whose speech probability is >= :data:`SPEECH_PROB` (0.7). That is the same as stepping Silero's
streaming graph frame by frame (tested: identical probabilities), computed from the window alone, so any
chunking of the same audio gives the same shares, offline and streaming.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from spoofsdk.errors import InvalidArgumentError, ModelLoadError

__all__ = [
    "DEFAULT_MIN_SPEECH",
    "FRAME",
    "GATE_MODEL",
    "GATE_MODEL_SHA256",
    "PRIME_FRAMES",
    "SPEECH_PROB",
    "SileroGate",
    "check_min_speech",
]

#: The Silero VAD graph inside the package, and its sha256 (checked when it is loaded).
GATE_MODEL = "models/silero_vad_16k_sequence.onnx"
GATE_MODEL_SHA256 = "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85"
#: Frame (samples at 16 kHz) and left context of the Silero graph.
FRAME = 512
_CONTEXT = 64
#: Frames of zeros run before each window (0.256 s), not counted.
PRIME_FRAMES = 8
#: A frame counts as speech when Silero's probability is at least this (Silero's default is 0.5; at 0.7 the
#: generated DTMF key presses reach a speech share of 0.032 instead of 0.081 in a 2 s window).
SPEECH_PROB = 0.7
#: Default floor on a window's speech share: windows under it are ``no_speech``. In the default detector's
#: 2 s windows, generated silence, noise, DTMF, hold music and comfort noise reach at most 0.032; 1.0 % of
#: corpus-v1's bona fide windows (isolated letters and digits of 0.15-0.5 s, mostly) fall under it
#: (docs/benchmarks.md, "Speech gating").
DEFAULT_MIN_SPEECH = 0.1


class SileroGate:
    """Speech share of model-rate windows (16 kHz only). Thread-safe: one ONNX Runtime session with one
    thread, shared by every session of a detector; ORT's ``run`` may be called from several threads."""

    sample_rate = 16000

    def __init__(self, path: str | Path | None = None) -> None:
        import hashlib

        import onnxruntime as ort

        model = Path(str(resources.files("spoofsdk").joinpath(GATE_MODEL))) if path is None else Path(path)
        try:
            blob = model.read_bytes()
        except OSError as exc:
            raise ModelLoadError(f"speech gate: cannot read {model}: {exc}") from exc
        digest = hashlib.sha256(blob).hexdigest()
        if path is None and digest != GATE_MODEL_SHA256:
            raise ModelLoadError(
                f"speech gate: {model} has sha256 {digest}, expected {GATE_MODEL_SHA256} (a damaged install)"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for a bad graph
            raise ModelLoadError(f"speech gate: ONNX Runtime cannot load {model}: {exc}") from exc
        self._zero = np.zeros((1, 1, 128), dtype=np.float32)

    def frame_probs(self, window: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Silero's speech probability of every whole 32 ms frame of ``window`` (16 kHz float32)."""
        n = window.shape[0] // FRAME
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        lead = np.zeros(_CONTEXT + PRIME_FRAMES * FRAME, dtype=np.float32)
        padded = np.concatenate([lead, window[: n * FRAME].astype(np.float32, copy=False)])
        rows = np.lib.stride_tricks.sliding_window_view(padded, FRAME + _CONTEXT)[::FRAME][: PRIME_FRAMES + n]
        feeds: dict[str, Any] = {"input": np.ascontiguousarray(rows), "h": self._zero, "c": self._zero}
        probs = self._session.run(["speech_probs"], feeds)[0]
        return np.asarray(probs, dtype=np.float32).reshape(-1)[PRIME_FRAMES:]

    def speech_share(self, windows: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float64]:
        """Fraction of each window's 32 ms frames that hold speech (0 for a window under one frame)."""
        out = np.zeros(len(windows), dtype=np.float64)
        for i, w in enumerate(windows):
            p = self.frame_probs(w)
            out[i] = float(np.mean(p >= SPEECH_PROB)) if p.size else 0.0
        return out


def check_min_speech(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise InvalidArgumentError(
            "min_speech: expected a share of speech frames in [0, 1] (0 scores every window), "
            f"given {value!r}"
        )
    return float(value)
