"""spoof_export: turn spoof_train checkpoints into ONNX / int8 / TensorRT model files."""

from __future__ import annotations
