"""Triton model served by the Python backend: the exported ONNX file run through ONNX Runtime.

A full Triton install runs the ``onnxruntime_onnx`` / ``tensorrt_plan`` models of
:mod:`spoof_export.triton`. The ``tritonserver`` bundled in the ``nvidia-pytriton`` wheel has only the
Python backend, so for it :func:`write_python_model` writes::

    DIR/NAME/config.pbtxt      backend "python", dynamic batching, the manifest as ``spoof.*`` parameters
    DIR/NAME/1/model.py        TritonPythonModel: one ONNX Runtime session per instance
    DIR/NAME/1/model.onnx      the exported detector (contract B, manifest in its metadata_props too)

The model has the same signature as the ONNX one (``audio`` ``TYPE_FP32 [-1]`` with Triton's batch axis,
``logits`` ``TYPE_FP32 [2]``), so a client cannot tell the two apart. ``execute`` receives the requests the
dynamic batcher grouped and runs the windows of equal length as one ONNX Runtime batch; a request whose
input is not float32 ``[batch, samples]`` gets an error response of its own and the others are served.
The stub process that runs ``model.py`` needs ``numpy`` and ``onnxruntime`` importable (``python -m
examples.triton_tier serve`` sets that up for the Python that starts it).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from spoof_export.errors import ExportArgumentError
from spoof_export.onnx_export import INPUT_NAME, OUTPUT_NAME
from spoof_export.triton import _quote, io_and_batching_lines, parameter_lines

__all__ = ["MODEL_PY", "PythonTritonModel", "render_python_config", "write_python_model"]

#: The parameter carrying ONNX Runtime's intra-op threads per model instance.
THREADS_PARAMETER = "onnx_intra_op_threads"

MODEL_PY = '''\
"""Triton Python-backend model written by spoof-export: runs model.onnx (beside this file) on ONNX Runtime.

Inputs and outputs follow spoofsdk's contract B: "audio" float32 [batch, samples] at the model rate,
"logits" float32 [batch, 2]. The requests the dynamic batcher grouped are run as one ONNX Runtime batch
per window length.
"""

import json
import os
import sys

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

INPUT = "__INPUT_NAME__"
OUTPUT = "__OUTPUT_NAME__"


def _quiet_dlpack_hook(default):
    # The stub marks a consumed DLPack capsule "used_dlpack"; numpy's capsule destructor expects
    # "used_dltensor" and reports the name mismatch as an unraisable ValueError (the stub has freed the
    # tensor through its own deleter, nothing leaks). Drop that one report; pass every other one on.
    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, ValueError) and "PyCapsule_GetPointer called with incorrect name" in str(exc):
            return
        default(unraisable)

    return hook


class TritonPythonModel:
    def initialize(self, args):
        sys.unraisablehook = _quiet_dlpack_hook(sys.unraisablehook)
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        threads = int(params.get("__THREADS_PARAMETER__", "1"))
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        responses = [None] * len(requests)
        groups = {}
        arrays = []
        for i, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, INPUT)
            # DLPack, not as_numpy(): the stub's numpy bridge was built for numpy 1.x (the
            # element size it reads from a numpy 2 dtype is wrong); DLPack carries dtype and shape itself.
            x = None if tensor is None else np.from_dlpack(tensor)
            arrays.append(x)
            if x is None or x.dtype != np.float32 or x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
                given = "no input" if x is None else f"{x.dtype} {list(x.shape)}"
                responses[i] = pb_utils.InferenceResponse(
                    output_tensors=[],
                    error=pb_utils.TritonError(
                        f"{INPUT}: expected float32 [batch, samples], given {given}"
                    ),
                )
                continue
            groups.setdefault(x.shape[1], []).append(i)
        for idx in groups.values():
            batch = np.ascontiguousarray(np.concatenate([arrays[i] for i in idx]))
            try:
                logits = self.session.run([OUTPUT], {INPUT: batch})[0].astype(np.float32, copy=False)
            except Exception as exc:  # an ONNX Runtime failure answers these requests, not the server
                for i in idx:
                    responses[i] = pb_utils.InferenceResponse(
                        output_tensors=[], error=pb_utils.TritonError(f"onnxruntime: {exc}")
                    )
                continue
            start = 0
            for i in idx:
                n = arrays[i].shape[0]
                part = np.ascontiguousarray(logits[start : start + n])
                out = pb_utils.Tensor.from_dlpack(OUTPUT, part.__dlpack__())
                responses[i] = pb_utils.InferenceResponse(output_tensors=[out])
                start += n
        return responses

    def finalize(self):
        self.session = None
'''
MODEL_PY = (
    MODEL_PY.replace("__INPUT_NAME__", INPUT_NAME)
    .replace("__OUTPUT_NAME__", OUTPUT_NAME)
    .replace("__THREADS_PARAMETER__", THREADS_PARAMETER)
)


@dataclass(frozen=True)
class PythonTritonModel:
    name: str
    backend: str
    config_path: Path
    model_path: Path
    script_path: Path


def render_python_config(
    *,
    name: str,
    max_batch_size: int,
    preferred_batch_sizes: list[int],
    max_queue_delay_us: int,
    instance_count: int,
    intra_op_threads: int,
    parameters: dict[str, str],
) -> str:
    """The text of the Python-backend model's ``config.pbtxt``."""
    lines = [
        f"name: {_quote(name)}",
        'backend: "python"',
        *io_and_batching_lines(
            max_batch_size, preferred_batch_sizes, max_queue_delay_us, instance_count, "KIND_CPU"
        ),
        *parameter_lines({THREADS_PARAMETER: str(intra_op_threads), **parameters}),
    ]
    return "\n".join(lines) + "\n"


def write_python_model(
    directory: str | Path,
    *,
    name: str,
    onnx_path: str | Path,
    manifest_metadata: dict[str, str],
    max_batch_size: int = 32,
    instance_count: int = 1,
    max_queue_delay_us: int = 2000,
    intra_op_threads: int = 1,
) -> PythonTritonModel:
    """Write (or replace) the Python-backend model ``NAME_python`` under ``directory``.

    ``intra_op_threads`` is ONNX Runtime's thread count per instance (instances x threads should not
    exceed the cores given to the server). The model directory is written beside its final place and
    renamed into it, so a server polling the repository never sees half a model.
    """
    for what, value in (
        ("triton_max_batch", max_batch_size),
        ("triton_instances", instance_count),
        ("triton_threads", intra_op_threads),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ExportArgumentError(f"{what}: expected an integer >= 1, given {value!r}")
    if (
        isinstance(max_queue_delay_us, bool)
        or not isinstance(max_queue_delay_us, int)
        or max_queue_delay_us < 0
    ):
        raise ExportArgumentError(
            f"triton_max_queue_delay_us: expected an integer >= 0, given {max_queue_delay_us!r}"
        )
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ExportArgumentError(f"triton model name: expected letters, digits, '-' or '_', given {name!r}")
    if not any(k.startswith("spoof.") for k in manifest_metadata):
        raise ExportArgumentError("manifest_metadata: expected the spoof.* manifest keys, given none")
    src = Path(onnx_path)
    if not src.is_file():
        raise ExportArgumentError(f"onnx_path: expected an ONNX file, given {src} (not found)")
    # The served file's own manifest wins: the config then says exactly what model.onnx carries (e.g. the
    # created_at that writing the file stamped, which the caller's in-memory manifest may not have yet).
    from spoofsdk.manifest import KEY_PREFIX, read_onnx_metadata

    served = {k: v for k, v in read_onnx_metadata(src).items() if k.startswith(KEY_PREFIX)}
    manifest_metadata = {**manifest_metadata, **served}
    model_name = f"{name}_python"
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    preferred = sorted({b for b in (1, 4, 8, 16, max_batch_size) if b <= max_batch_size})
    text = render_python_config(
        name=model_name,
        max_batch_size=max_batch_size,
        preferred_batch_sizes=preferred,
        max_queue_delay_us=max_queue_delay_us,
        instance_count=instance_count,
        intra_op_threads=intra_op_threads,
        parameters=manifest_metadata,
    )
    staging = root / f".{model_name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "1").mkdir(parents=True)
    shutil.copyfile(src, staging / "1" / "model.onnx")
    (staging / "1" / "model.py").write_text(MODEL_PY, encoding="utf-8")
    (staging / "config.pbtxt").write_text(text, encoding="utf-8")
    final = root / model_name
    if final.exists():
        shutil.rmtree(final)
    staging.replace(final)
    return PythonTritonModel(
        name=model_name,
        backend="python",
        config_path=final / "config.pbtxt",
        model_path=final / "1" / "model.onnx",
        script_path=final / "1" / "model.py",
    )
