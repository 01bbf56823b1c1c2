"""Skip helpers of the GPU lane (each skip names what is missing)."""

from __future__ import annotations

import pytest


def ort_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


def skip_unless_provider(provider: str) -> None:
    have = ort_providers()
    if provider not in have:
        pytest.skip(
            f"onnxruntime offers no {provider} here (providers: {have}); "
            "install onnxruntime-gpu on a CUDA machine (pip install 'spoofsdk[gpu]')"
        )
    if provider == "TensorrtExecutionProvider":
        # onnxruntime-gpu lists its TensorRT EP whenever the EP's bridge library is in the wheel, also
        # where TensorRT itself (libnvinfer) is not installed; the session would then fail to create it.
        import ctypes

        try:
            ctypes.CDLL("libnvinfer.so.10")
        except OSError as exc:
            pytest.skip(f"onnxruntime lists {provider} but TensorRT 10's libnvinfer cannot be loaded ({exc})")


def cuda_device() -> tuple[str, str]:
    """(compute capability, name) of device 0, or skip with the reason."""
    try:
        from spoofsdk.backends.tensorrt import import_cudart, running_gpu

        cudart = import_cudart()
        return running_gpu(cudart, 0)
    except Exception as exc:
        pytest.skip(f"no usable CUDA device through cuda-python: {exc}")


def tensorrt_module():  # type: ignore[no-untyped-def]
    try:
        from spoofsdk.backends.tensorrt import import_tensorrt

        return import_tensorrt()
    except Exception as exc:
        pytest.skip(f"TensorRT runtime unavailable: {exc}")
