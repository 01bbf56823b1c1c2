"""Triton Inference Server model repository for exported detectors.

Layout written by :func:`write_triton_repository` (one model per artifact)::

    DIR/
      NAME_onnx/config.pbtxt      platform "onnxruntime_onnx"
      NAME_onnx/1/model.onnx
      NAME_trt/config.pbtxt       platform "tensorrt_plan"   (only when an engine was built)
      NAME_trt/1/model.plan

Each config declares ``audio`` ``TYPE_FP32 [-1]`` (samples; the batch axis is Triton's) and ``logits``
``TYPE_FP32 [2]``, ``max_batch_size``, dynamic batching (preferred sizes, a queue delay bound), and
instance groups, so one server batches the windows of many concurrent calls into one inference. The
contract-B manifest travels in ``parameters`` (``spoof.*`` keys), so a Triton client can read the
sample rate, window, label order and calibration from the model's config.

Requests are batched only when their shapes match: send fixed-length windows (``window_samples``),
which is what the SDK's streaming sessions produce.

``backend="python"`` writes instead one model for Triton's Python backend, ``NAME_python`` (the exported
ONNX run through ONNX Runtime inside ``model.py``; :mod:`spoof_export.triton_python`): the backend that the
``tritonserver`` of the ``nvidia-pytriton`` wheel has, with the same inputs, outputs, batching and
``spoof.*`` parameters.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spoof_export.errors import ExportArgumentError
from spoof_export.onnx_export import INPUT_NAME, OUTPUT_NAME

__all__ = ["TRITON_BACKENDS", "TritonModel", "render_config", "write_triton_repository"]

#: ``--triton-backend`` choices: the onnxruntime (and tensorrt) backends of a full Triton install, or the
#: Python backend running ONNX Runtime in ``model.py``.
TRITON_BACKENDS = ("onnxruntime", "python")

_PLATFORMS = {"onnx": ("onnxruntime_onnx", "model.onnx"), "trt": ("tensorrt_plan", "model.plan")}


@dataclass(frozen=True)
class TritonModel:
    name: str
    platform: str
    config_path: Path
    model_path: Path


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def io_and_batching_lines(
    max_batch_size: int,
    preferred_batch_sizes: list[int],
    max_queue_delay_us: int,
    instance_count: int,
    instance_kind: str,
) -> list[str]:
    """``config.pbtxt`` lines every spoofsdk model shares: batch size, the ``audio`` input ``[-1]`` and the
    ``logits`` output ``[2]`` (FP32), dynamic batching and the instance group."""
    return [
        f"max_batch_size: {max_batch_size}",
        "input [",
        "  {",
        f"    name: {_quote(INPUT_NAME)}",
        "    data_type: TYPE_FP32",
        "    dims: [ -1 ]",
        "  }",
        "]",
        "output [",
        "  {",
        f"    name: {_quote(OUTPUT_NAME)}",
        "    data_type: TYPE_FP32",
        "    dims: [ 2 ]",
        "  }",
        "]",
        "dynamic_batching {",
        f"  preferred_batch_size: [ {', '.join(str(b) for b in preferred_batch_sizes)} ]",
        f"  max_queue_delay_microseconds: {max_queue_delay_us}",
        "}",
        "instance_group [",
        "  {",
        f"    count: {instance_count}",
        f"    kind: {instance_kind}",
        "  }",
        "]",
    ]


def parameter_lines(parameters: dict[str, str]) -> list[str]:
    """``parameters`` entries (string values), sorted by key."""
    lines: list[str] = []
    for key, value in sorted(parameters.items()):
        lines += [
            "parameters {",
            f"  key: {_quote(key)}",
            f"  value: {{ string_value: {_quote(value)} }}",
            "}",
        ]
    return lines


def render_config(
    *,
    name: str,
    kind: str,
    max_batch_size: int,
    preferred_batch_sizes: list[int],
    max_queue_delay_us: int,
    instance_count: int,
    instance_kind: str,
    parameters: dict[str, str],
    max_samples: int | None = None,
) -> str:
    """The text of one ``config.pbtxt`` (Triton's ``ModelConfig`` protobuf in text format)."""
    platform, filename = _PLATFORMS[kind]
    lines = [
        f"name: {_quote(name)}",
        f"platform: {_quote(platform)}",
        f"default_model_filename: {_quote(filename)}",
        *io_and_batching_lines(
            max_batch_size, preferred_batch_sizes, max_queue_delay_us, instance_count, instance_kind
        ),
    ]
    if kind == "onnx" and instance_kind == "KIND_CPU":
        # ORT's own thread pool per instance; instances x threads should not exceed the cores.
        lines += [
            "parameters {",
            '  key: "intra_op_thread_count"',
            '  value: { string_value: "0" }',
            "}",
        ]
    lines += parameter_lines(parameters)
    if max_samples is not None:
        lines.insert(0, f"# engine profile accepts up to {max_samples} samples per request")
    return "\n".join(lines) + "\n"


def write_triton_repository(
    directory: str | Path,
    *,
    name: str,
    onnx_path: str | Path,
    engine_path: str | Path | None,
    manifest_metadata: dict[str, str],
    max_batch_size: int = 32,
    instance_count: int = 1,
    max_queue_delay_us: int = 2000,
    engine_max_batch: int | None = None,
    backend: str = "onnxruntime",
) -> list[TritonModel]:
    """Write (or replace) ``NAME_onnx`` and, with an engine, ``NAME_trt`` under ``directory``.

    The ONNX model is served on GPU when Triton has one (``KIND_GPU``) only if asked through its own
    config; here ``KIND_CPU`` is the default for ``onnxruntime_onnx`` and ``KIND_GPU`` for the engine.
    ``backend="python"`` writes ``NAME_python`` only (:func:`spoof_export.triton_python.write_python_model`;
    an engine is not served by it).
    """
    if backend not in TRITON_BACKENDS:
        raise ExportArgumentError(f"triton_backend: expected one of {TRITON_BACKENDS}, given {backend!r}")
    if backend == "python":
        from spoof_export.triton_python import write_python_model

        m = write_python_model(
            directory,
            name=name,
            onnx_path=onnx_path,
            manifest_metadata=manifest_metadata,
            max_batch_size=max_batch_size,
            instance_count=instance_count,
            max_queue_delay_us=max_queue_delay_us,
        )
        return [
            TritonModel(name=m.name, platform="python", config_path=m.config_path, model_path=m.model_path)
        ]
    if max_batch_size < 1:
        raise ExportArgumentError(f"triton_max_batch: expected an integer >= 1, given {max_batch_size}")
    if instance_count < 1:
        raise ExportArgumentError(f"triton_instances: expected an integer >= 1, given {instance_count}")
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ExportArgumentError(f"triton model name: expected letters, digits, '-' or '_', given {name!r}")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    jobs: list[tuple[str, Path, int]] = [("onnx", Path(onnx_path), max_batch_size)]
    if engine_path is not None:
        trt_batch = min(max_batch_size, engine_max_batch or max_batch_size)
        jobs.append(("trt", Path(engine_path), trt_batch))
    for kind, src, batch in jobs:
        model_name = f"{name}_{kind}"
        platform, filename = _PLATFORMS[kind]
        preferred = sorted({b for b in (1, 4, 8, 16, batch) if b <= batch})
        text = render_config(
            name=model_name,
            kind=kind,
            max_batch_size=batch,
            preferred_batch_sizes=preferred,
            max_queue_delay_us=max_queue_delay_us,
            instance_count=instance_count,
            instance_kind="KIND_CPU" if kind == "onnx" else "KIND_GPU",
            parameters=manifest_metadata,
        )
        staging = root / f".{model_name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "1").mkdir(parents=True)
        shutil.copyfile(src, staging / "1" / filename)
        (staging / "config.pbtxt").write_text(text, encoding="utf-8")
        final = root / model_name
        if final.exists():
            shutil.rmtree(final)
        staging.replace(final)
        written.append(
            TritonModel(
                name=model_name,
                platform=platform,
                config_path=final / "config.pbtxt",
                model_path=final / "1" / filename,
            )
        )
    return written


def parse_config(text: str) -> Any:
    """Parse ``config.pbtxt`` text with Triton's ``ModelConfig`` schema (needs ``tritonclient``)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())
