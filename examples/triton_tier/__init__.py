"""A Triton inference tier for spoofsdk: the ``tritonserver`` of the ``nvidia-pytriton`` wheel on a model
repository written by ``spoof-export --triton DIR --triton-backend python``.

``python -m examples.triton_tier serve DIR --grpc-port P --http-port Q --metrics-port R``."""

from __future__ import annotations

from .server import TritonServerError, TritonServerProcess, find_tritonserver, start_tritonserver

__all__ = ["TritonServerError", "TritonServerProcess", "find_tritonserver", "start_tritonserver"]
