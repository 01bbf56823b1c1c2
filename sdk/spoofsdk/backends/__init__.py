"""Inference backends and their resolution (``backend="auto" | "cpu" | "cuda" | "tensorrt"``).

Rules (settled in ARCHITECTURE.md):

* ``.onnx`` models run on ONNX Runtime. ``"auto"`` tries the TensorRT execution provider, then
  CUDA, then the CPU, skipping the ones this onnxruntime does not offer or that fail to initialise,
  and logs the choice. An explicit backend that cannot run raises
  :class:`~spoofsdk.errors.BackendUnavailableError` listing what is available: no silent fallback.
* ``.trt`` / ``.engine`` / ``.plan`` engines run on the TensorRT runtime only (``"auto"`` or
  ``"tensorrt"``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from spoofsdk.backends.base import BACKENDS, Backend, InputLimits
from spoofsdk.backends.ort import OrtBackend, OrtOptions, TensorRTOptions, available_ort_backends
from spoofsdk.errors import BackendUnavailableError, InvalidArgumentError
from spoofsdk.manifest import ENGINE_SUFFIXES, Manifest

__all__ = [
    "BACKENDS",
    "Backend",
    "InputLimits",
    "OrtOptions",
    "TensorRTOptions",
    "available_backends",
    "create_backend",
]

logger = logging.getLogger("spoofsdk")


def available_backends() -> list[str]:
    """Backends this installation can try for an ``.onnx`` model, best first (e.g. ``["cpu"]``)."""
    have = available_ort_backends()
    return [b for b in ("tensorrt", "cuda", "cpu") if b in have]


def create_backend(
    path: Path,
    manifest: Manifest,
    *,
    backend: str,
    device_id: int,
    window_samples: int,
    ort_options: OrtOptions,
    tensorrt_options: TensorRTOptions,
) -> Backend:
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend: expected one of {BACKENDS}, given {backend!r}")
    if backend == "triton":
        raise BackendUnavailableError(
            "backend 'triton': runs remote models only; pass grpc://host:port/MODEL or "
            f"http://host:port/MODEL as the path, given the file {path}"
        )
    if path.suffix.lower() in ENGINE_SUFFIXES:
        if backend not in ("auto", "tensorrt"):
            raise BackendUnavailableError(
                f"backend {backend!r}: {path.name} is a TensorRT engine, which runs only on backend "
                "'tensorrt' "
                "(pass the .onnx model for 'cpu' or 'cuda')"
            )
        from spoofsdk.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(path, manifest, device_id=device_id, options=tensorrt_options)

    def make(name: str) -> OrtBackend:
        return OrtBackend(
            path,
            manifest,
            backend=name,
            device_id=device_id,
            window_samples=window_samples,
            ort_options=ort_options,
            tensorrt_options=tensorrt_options,
        )

    if backend != "auto":
        return make(backend)
    candidates = available_backends()
    for name in candidates:
        try:
            chosen = make(name)
        except BackendUnavailableError as exc:
            if name == "cpu":
                raise
            logger.warning("spoofsdk: backend 'auto' skipped %r: %s", name, exc)
            continue
        logger.info("spoofsdk: backend 'auto' resolved to %r (%s) for %s", name, chosen.detail, path.name)
        return chosen
    raise BackendUnavailableError(  # pragma: no cover - onnxruntime always offers the CPU provider
        f"no backend can run {path}: onnxruntime offers {candidates}"
    )
