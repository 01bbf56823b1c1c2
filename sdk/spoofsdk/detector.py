"""`Detector`: load a contract-B detector once, score clips and live streams from any thread."""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from spoofsdk.audio import as_mono_float, check_sample_rate
from spoofsdk.backends import Backend, create_backend
from spoofsdk.backends.ort import OrtOptions, TensorRTOptions, coerce_options
from spoofsdk.backends.triton import RemoteOptions, coerce_remote_options, is_remote_url
from spoofsdk.errors import BackendUnavailableError, InvalidArgumentError, InvalidAudioError, ModelLoadError
from spoofsdk.gating import DEFAULT_MIN_SPEECH, SileroGate, check_min_speech
from spoofsdk.manifest import Manifest, read_manifest
from spoofsdk.results import Score, WindowScore, check_aggregate, sigmoid
from spoofsdk.session import StreamingSession

if TYPE_CHECKING:
    from spoofsdk import _native
    from spoofsdk.scheduler import BatchScheduler

__all__ = ["DEFAULT_MODEL", "Detector"]

logger = logging.getLogger("spoofsdk")

#: Where the bundled default detector lives inside the package (shipped by a later release).
DEFAULT_MODEL = "models/default.onnx"


def _default_model_path() -> Path:
    ref = resources.files("spoofsdk").joinpath(DEFAULT_MODEL)
    path = Path(str(ref))
    if not path.is_file():
        raise ModelLoadError(
            f"no default detector is bundled with this spoofsdk ({path} does not exist); pass the path of an "
            "exported detector: Detector('model.onnx') or Detector('model.trt') "
            "(spoof-score --model PATH on the command line)"
        )
    return path


#: Models already warned about as uncalibrated in this process (so the warning is logged once per model).
_UNCALIBRATED_WARNED: set[str] = set()
_UNCALIBRATED_LOCK = threading.Lock()


def _warn_if_uncalibrated(manifest: Manifest, source: str) -> None:
    """Log, once per process and model, that ``source`` carries no fitted score calibration."""
    if manifest.is_calibrated:
        return
    with _UNCALIBRATED_LOCK:
        if source in _UNCALIBRATED_WARNED:
            return
        _UNCALIBRATED_WARNED.add(source)
    remote = is_remote_url(source)  # the fix applies to the served model file, then a reload
    logger.warning(
        "spoofsdk: %s is uncalibrated (its manifest says calibrated: false, or carries the exporter's "
        "placeholders scale 1, bias 0, threshold 0.5): spoof_prob is the model's raw softmax and the "
        "threshold %.2f is not a tuned operating point, so verdicts can flag many bona fide calls; fix: "
        "spoof-export calibrate %s --dev MANIFEST (a labelled development set)%s",
        source,
        manifest.threshold,
        "MODEL" if remote else source,
        ", on the model file the server loads, then reload it" if remote else "",
    )


def _no_uncalibrated_warning(source: str | os.PathLike[str]) -> None:
    """Skip the uncalibrated-model warning for ``source`` in this process: for tools that score a model in
    order to calibrate it (``spoof-export calibrate``), whom the warning would tell to do what they do."""
    with _UNCALIBRATED_LOCK:
        _UNCALIBRATED_WARNED.add(str(source))


def _check_settings(
    *, device_id: object, num_threads: object, batch_size: object, speech_gate: object
) -> None:
    """The plain settings of :class:`Detector`, checked before any file is read."""
    if isinstance(device_id, bool) or not isinstance(device_id, int) or device_id < 0:
        raise InvalidArgumentError(f"device_id: expected an integer >= 0, given {device_id!r}")
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 0:
        raise InvalidArgumentError(
            f"num_threads: expected an integer >= 0 (0 = default), given {num_threads!r}"
        )
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise InvalidArgumentError(f"batch_size: expected an integer >= 1, given {batch_size!r}")
    if not isinstance(speech_gate, bool):
        raise InvalidArgumentError(f"speech_gate: expected True or False, given {speech_gate!r}")


def _check_window_fits(window: int, limits: Any, min_samples: int, sr: int) -> None:
    """The window against the backend's input limits (an engine's shortest and longest input)."""
    if window < min_samples:
        raise InvalidArgumentError(
            f"window_s: expected >= {min_samples / sr} s (the engine's shortest input), given {window / sr} s"
        )
    if limits.max_samples is not None and window > limits.max_samples:
        raise InvalidArgumentError(
            f"window_s: expected <= {limits.max_samples / sr} s (the engine accepts at most "
            f"{limits.max_samples} samples), given {window / sr} s"
        )
    if (
        limits.max_samples is not None
        and limits.max_samples == limits.min_samples
        and window != limits.max_samples
    ):
        raise InvalidArgumentError(f"window_s: this graph has a fixed input of {limits.max_samples} samples")


class Detector:
    """A loaded detector: immutable and safe to share across threads.

    Parameters
    ----------
    path:
        An ``.onnx`` model or a TensorRT engine (``.trt`` / ``.engine`` / ``.plan`` with its
        ``.json`` sidecar) carrying a contract-B manifest. ``None`` loads the bundled default detector.
        A URL ``grpc://host:port/MODEL[/VERSION]`` or ``http(s)://host:port/MODEL[/VERSION]`` runs the
        model on a Triton Inference Server (:mod:`spoofsdk.backends.triton`; needs the ``triton`` extra);
        its manifest comes from the server's model config.
    backend:
        ``"auto"`` (TensorRT > CUDA > CPU, logged), ``"cpu"``, ``"cuda"`` or ``"tensorrt"``; ``"triton"``
        (or ``"auto"``) for a URL. An explicit backend that cannot run raises
        :class:`~spoofsdk.errors.BackendUnavailableError`.
    device_id:
        CUDA device for ``"cuda"`` / ``"tensorrt"``.
    num_threads:
        ONNX Runtime intra-op threads (0 = ORT's default, one per physical core).
    window_s, hop_s:
        Override the manifest's window and hop (seconds at the model rate).
    aggregate:
        Default window aggregation of :meth:`score` and :meth:`stream`
        (see :data:`spoofsdk.results.AGGREGATES`).
    threshold:
        Override the manifest's decision threshold on the spoof probability.
    batch_size:
        Windows per inference call in :meth:`score` (capped by the engine's profile). Default: 1 on
        the CPU backend (batching buys no speed there and costs peak memory: docs/benchmarks.md,
        "Detector runtime"), 8 on GPU backends.
    speech_gate, min_speech:
        Speech gating (:mod:`spoofsdk.gating`, on by default): each window's share of 32 ms frames with
        speech is measured, and a window under ``min_speech`` (default 0.1) is marked ``no_speech`` and
        not scored; a clip or call without a speech window is ``"undetermined"``. ``speech_gate=False``
        scores every window (the model then judges silence, noise and music too). The gate needs a
        16 kHz model.
    ort_options, tensorrt_options:
        :class:`OrtOptions` / :class:`TensorRTOptions` (or dicts of their fields).
    remote_options:
        :class:`~spoofsdk.backends.triton.RemoteOptions` (or a dict of its fields) of a remote model:
        per-request deadline, bounded retries with backoff, model version.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        backend: str = "auto",
        device_id: int = 0,
        num_threads: int = 0,
        window_s: float | None = None,
        hop_s: float | None = None,
        aggregate: str = "mean",
        threshold: float | None = None,
        batch_size: int | None = None,
        ort_options: OrtOptions | dict[str, Any] | None = None,
        tensorrt_options: TensorRTOptions | dict[str, Any] | None = None,
        speech_gate: bool = True,
        min_speech: float = DEFAULT_MIN_SPEECH,
        remote_options: RemoteOptions | dict[str, Any] | None = None,
    ) -> None:
        url = path if isinstance(path, str) and is_remote_url(path) else None
        model_path: Path | None = None
        if path is None:
            model_path = _default_model_path()
        elif url is not None:
            pass
        elif isinstance(path, (str, os.PathLike)):
            model_path = Path(path)
        else:
            raise InvalidArgumentError(f"path: expected a file path or None, given {type(path).__name__}")
        _check_settings(
            device_id=device_id, num_threads=num_threads, batch_size=batch_size, speech_gate=speech_gate
        )
        self._aggregate = check_aggregate(aggregate)
        self._min_speech = check_min_speech(min_speech)
        ort_opts: OrtOptions = coerce_options(ort_options, OrtOptions, "ort_options")
        trt_opts: TensorRTOptions = coerce_options(tensorrt_options, TensorRTOptions, "tensorrt_options")
        if num_threads:
            from dataclasses import replace

            ort_opts = replace(ort_opts, intra_op_num_threads=num_threads)
        remote_opts = coerce_remote_options(remote_options)

        remote: Backend | None = None
        if url is not None:
            if backend not in ("auto", "triton"):
                raise BackendUnavailableError(
                    f"backend {backend!r}: {url} is a remote model, which runs only on backend 'triton' "
                    "(or 'auto')"
                )
            from spoofsdk.backends.triton import TritonBackend

            triton = TritonBackend(url, remote_opts)
            remote, manifest = triton, triton.manifest
        else:
            assert model_path is not None
            manifest = read_manifest(model_path)
        sr = manifest.sample_rate
        window, hop = self._window_and_hop(manifest, window_s, hop_s)
        if threshold is not None and not (
            isinstance(threshold, (int, float)) and 0.0 < float(threshold) < 1.0
        ):
            raise InvalidArgumentError(
                f"threshold: expected a spoof probability in (0, 1), given {threshold!r}"
            )

        self._path = model_path
        self._source = url if url is not None else str(model_path)
        self._manifest = manifest
        _warn_if_uncalibrated(manifest, self._source)
        self._window = window
        self._hop = hop
        self._threshold = manifest.threshold if threshold is None else float(threshold)
        if remote is not None:
            self._backend: Backend = remote
        else:
            assert model_path is not None
            self._backend = create_backend(
                model_path,
                manifest,
                backend=backend,
                device_id=device_id,
                window_samples=window,
                ort_options=ort_opts,
                tensorrt_options=trt_opts,
            )
        limits = self._backend.limits
        self._min_samples = max(manifest.min_samples, limits.min_samples)
        _check_window_fits(window, limits, self._min_samples, sr)
        if batch_size is None:
            batch_size = 1 if self.backend == "cpu" else 8
        self._batch_size = min(batch_size, limits.max_batch or batch_size)
        self._scale = manifest.calibration.scale
        self._bias = manifest.calibration.bias
        self._spoof = manifest.spoof_index
        self._gate: SileroGate | None = None
        if speech_gate:
            if sr != SileroGate.sample_rate:
                raise InvalidArgumentError(
                    f"speech_gate: the speech gate runs at {SileroGate.sample_rate} Hz, this model at "
                    f"{sr} Hz; pass speech_gate=False to score every window"
                )
            self._gate = SileroGate()
        logger.debug("spoofsdk: loaded %r", self)

    @classmethod
    def _window_and_hop(
        cls, manifest: Manifest, window_s: float | None, hop_s: float | None
    ) -> tuple[int, int]:
        """Window and hop in samples: the model file's, or the ``window_s`` / ``hop_s`` overrides, checked."""
        sr = manifest.sample_rate
        window = manifest.window_samples if window_s is None else cls._seconds("window_s", window_s, sr)
        hop = manifest.hop_samples if hop_s is None else cls._seconds("hop_s", hop_s, sr)
        if window < manifest.min_samples:
            raise InvalidArgumentError(
                f"window_s: expected >= {manifest.min_samples / sr} s (the model's min_samples "
                f"{manifest.min_samples}), given {window / sr} s"
            )
        if not 0 < hop <= window:
            raise InvalidArgumentError(
                f"hop_s: expected 0 < hop_s <= window_s ({window / sr} s), given {hop / sr} s"
            )
        return window, hop

    @staticmethod
    def _seconds(name: str, value: object, sr: int) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not np.isfinite(value)
            or value <= 0
        ):
            raise InvalidArgumentError(f"{name}: expected a positive number of seconds, given {value!r}")
        return round(float(value) * sr)

    # ------------------------------------------------------------------ properties
    @property
    def backend(self) -> str:
        """The backend actually used: "cpu", "cuda", "tensorrt", or "triton" for a remote model."""
        return self._backend.name

    @property
    def backend_detail(self) -> str:
        return self._backend.detail

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def calibrated(self) -> bool:
        """Whether the model's scores and threshold were calibrated on data (:attr:`Manifest.is_calibrated`);
        an uncalibrated model is warned about once per process on the ``spoofsdk`` logger."""
        return self._manifest.is_calibrated

    @property
    def path(self) -> Path | None:
        """The model file (``None`` for a remote model: see :attr:`url`)."""
        return self._path

    @property
    def url(self) -> str | None:
        """The remote model's URL, or ``None`` for a local model file."""
        return None if self._path is not None else self._source

    @property
    def sample_rate(self) -> int:
        """The model rate (all windows are resampled to it)."""
        return self._manifest.sample_rate

    @property
    def window_samples(self) -> int:
        return self._window

    @property
    def hop_samples(self) -> int:
        return self._hop

    @property
    def min_samples(self) -> int:
        return self._min_samples

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def aggregate(self) -> str:
        return self._aggregate

    @property
    def max_batch(self) -> int:
        """Largest batch one inference call accepts (the scheduler caps its batches at it)."""
        return self._backend.limits.max_batch or 1 << 16

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def speech_gate(self) -> bool:
        """Whether windows are gated on speech (see :mod:`spoofsdk.gating`)."""
        return self._gate is not None

    @property
    def min_speech(self) -> float:
        return self._min_speech

    def __repr__(self) -> str:
        m = self._manifest
        return (
            f"Detector({self._source!r}, backend={self.backend!r}, sample_rate={m.sample_rate}, "
            f"window_s={self._window / m.sample_rate:g}, hop_s={self._hop / m.sample_rate:g}, "
            f"precision={m.precision!r}, threshold={self._threshold:g})"
        )

    # ------------------------------------------------------------------ inference
    def infer_logits(
        self, windows: Sequence[npt.NDArray[np.float32]], *, max_batch: int | None = None
    ) -> npt.NDArray[np.float64]:
        """Calibrated spoof log-odds of model-rate windows, batching equal-length windows together.

        Order is preserved. Windows shorter than the model's ``min_samples`` raise
        :class:`InvalidAudioError`.
        """
        n = len(windows)
        out = np.empty(n, dtype=np.float64)
        if n == 0:
            return out
        cap = max_batch or self._batch_size
        self._check_lengths(windows)
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(windows):
            groups.setdefault(int(w.shape[0]), []).append(i)
        for idx in groups.values():
            for k in range(0, len(idx), cap):
                part = idx[k : k + cap]
                batch = np.ascontiguousarray(np.stack([windows[i] for i in part]), dtype=np.float32)
                logits = self._backend.run(batch)
                if logits.shape != (len(part), 2) or not np.isfinite(logits).all():
                    raise ModelLoadError(
                        f"{self._source}: expected finite logits of shape ({len(part)}, 2), given shape "
                        f"{logits.shape}"
                        + ("" if logits.shape != (len(part), 2) else " with non-finite values")
                    )
                d = logits[:, self._spoof].astype(np.float64) - logits[:, 1 - self._spoof].astype(np.float64)
                out[part] = self._scale * d + self._bias
        return out

    def _check_lengths(self, windows: Sequence[npt.NDArray[np.float32]]) -> None:
        for w in windows:
            length = int(w.shape[0])
            if length < self._min_samples:
                sr = self.sample_rate
                raise InvalidAudioError(
                    f"audio too short: expected at least {self._min_samples} samples "
                    f"({self._min_samples / sr:.3f} s) "
                    f"at the model rate {sr} Hz, given {length} ({length / sr:.3f} s)"
                )

    def _window_scores(
        self,
        windows: Sequence[_native.Window],
        log_odds: npt.NDArray[np.float64],
        speech: npt.NDArray[np.float64] | None = None,
    ) -> list[WindowScore]:
        """:class:`WindowScore` objects of front-end windows; a NaN log-odds marks a ``no_speech`` window."""
        sr = self.sample_rate
        out = []
        for i, (w, z) in enumerate(zip(windows, log_odds, strict=True)):
            gated = bool(np.isnan(z))
            out.append(
                WindowScore(
                    start_s=w.start_index / sr,
                    end_s=(w.start_index + w.samples.shape[0]) / sr,
                    spoof_prob=math.nan if gated else sigmoid(float(z)),
                    logit=float(z),
                    is_final=bool(w.is_final),
                    speech=None if speech is None else float(speech[i]),
                    state="no_speech" if gated else "scored",
                )
            )
        return out

    def speech_share(self, samples: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float64] | None:
        """Each model-rate window's share of speech frames, or ``None`` without a speech gate."""
        return None if self._gate is None else self._gate.speech_share(samples)

    def _gate_and_infer(
        self,
        samples: Sequence[npt.NDArray[np.float32]],
        infer: Callable[[list[npt.NDArray[np.float32]]], npt.NDArray[np.float64]],
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64] | None]:
        """``(log_odds, speech)`` of windows: ``infer`` runs on the windows that hold speech only; the
        others get NaN. Used by :meth:`score`, the streaming sessions and (through them) the scheduler."""
        self._check_lengths(samples)  # too short is an error whether or not the window holds speech
        speech = self.speech_share(samples)
        z = np.full(len(samples), np.nan, dtype=np.float64)
        keep = (
            list(range(len(samples)))
            if speech is None
            else np.flatnonzero(speech >= self._min_speech).tolist()
        )
        if keep:
            z[keep] = infer([samples[i] for i in keep])
        return z, speech

    def _new_frontend(
        self,
        sample_rate: int,
        *,
        encoding: str = "float32",
        capacity_samples: int = 0,
        overflow: str = "error",
    ) -> _native.Frontend:
        from spoofsdk import _native

        return _native.Frontend(
            sample_rate,
            model_sample_rate=self.sample_rate,
            window_samples=self._window,
            hop_samples=self._hop,
            capacity_samples=capacity_samples,
            overflow=overflow,
            encoding=encoding,
        )

    def score(
        self, pcm: npt.NDArray[Any], sample_rate: int = 16000, *, aggregate: str | None = None
    ) -> Score:
        """Score a whole clip.

        ``pcm``: int16, float32 or float64; 1-D, or 2-D ``(frames, channels)`` downmixed by the mean.
        It is resampled to the model rate and cut into windows of ``window_samples`` every
        ``hop_samples`` by the native front end; at the end a last window ending at the last sample
        covers the tail. A clip shorter than one window is scored as one window of its own length if
        it has at least ``min_samples`` samples at the model rate, else :class:`InvalidAudioError`.
        """
        agg = check_aggregate(aggregate or self._aggregate)
        sr = check_sample_rate(sample_rate)
        x = as_mono_float(pcm)
        fe = self._new_frontend(sr, encoding="pcm16" if x.dtype == np.int16 else "float32")
        scores: list[WindowScore] = []
        pending: list[_native.Window] = []

        def flush_pending() -> None:
            z, speech = self._gate_and_infer([w.samples for w in pending], self.infer_logits)
            scores.extend(self._window_scores(pending, z, speech))
            pending.clear()

        for ready in iter_windows(fe, x, self._window):
            pending.extend(ready)
            if len(pending) >= self._batch_size:  # score as we go: memory stays bounded for long files
                flush_pending()
        if pending:
            flush_pending()
        if not scores:
            raise InvalidAudioError(
                f"audio too short: expected at least {self._min_samples} samples at the model rate "
                f"{self.sample_rate} Hz, given {fe.stats().samples_out} "
                f"(from {x.shape[0]} samples at {sr} Hz)"
            )
        return Score.from_windows(
            scores, aggregate=agg, threshold=self._threshold, duration_s=x.shape[0] / sr
        )

    def stream(
        self,
        sample_rate: int = 16000,
        *,
        encoding: str = "pcm16",
        aggregate: str | None = None,
        scheduler: BatchScheduler | None = None,
        buffer_s: float | None = None,
        overflow: str = "error",
    ) -> StreamingSession:
        """Open a :class:`~spoofsdk.session.StreamingSession` for one call or channel.

        ``encoding`` is the format of pushed bytes ("pcm16" little-endian, "mulaw", "alaw", "float32");
        numpy arrays may be pushed whatever the encoding. ``scheduler`` routes the session's windows
        through a shared :class:`~spoofsdk.scheduler.BatchScheduler` (many calls, one inference
        batch). ``buffer_s`` sizes the native ring buffer (default 4 windows); ``overflow`` is its
        policy ("error" or "drop_oldest").
        """
        return StreamingSession(
            self,
            sample_rate,
            encoding=encoding,
            aggregate=aggregate,
            scheduler=scheduler,
            buffer_s=buffer_s,
            overflow=overflow,
        )

    def close(self) -> None:
        """Release the backend (GPU contexts, buffers). The detector cannot be used afterwards."""
        self._backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_windows(
    fe: _native.Frontend, x: npt.NDArray[np.float32] | npt.NDArray[np.int16], window_samples: int
) -> Iterator[list[_native.Window]]:
    """Push a mono array into a front end in slices of about one window; yield the windows each completes.

    int16 goes in as PCM16 bytes (decoded natively), float32 through ``push_float``. Slicing does not
    change the windows (the front end is chunking-invariant); it bounds the ring buffer's fill and lets
    the caller score windows as they come instead of holding a long recording's windows in memory.
    """
    ratio = fe.input_sample_rate / fe.model_sample_rate
    chunk = max(1, int(window_samples * ratio))
    for start in range(0, x.shape[0], chunk):
        part = x[start : start + chunk]
        if part.dtype == np.int16:
            fe.push(part.astype("<i2", copy=False).tobytes(), "pcm16")
        else:
            fe.push_float(part.astype(np.float32, copy=False))
        yield fe.windows()
    fe.flush()
    yield fe.windows()
