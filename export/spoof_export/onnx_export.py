"""torch detector -> ONNX FP32 graph with contract-B names and dynamic axes.

The graph has one input ``audio`` float32 ``[batch, samples]`` and one output ``logits`` float32
``[batch, 2]``, both axes of ``audio`` dynamic. Export uses the TorchScript-based exporter
(``dynamo=False``): it handles WavLM / HuBERT / wav2vec 2.0 with a dynamic time axis at ~1e-6 parity
and is ~5x faster to run than the dynamo path; weight-norm parametrisations (the positional
convolution) are folded into plain weights first so the graph carries no weight-norm arithmetic.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spoof_export.errors import ExportArgumentError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "MAX_OPSET",
    "MIN_OPSET",
    "OUTPUT_NAME",
    "export_onnx",
    "fold_parametrizations",
]

log = logging.getLogger("spoof_export")

INPUT_NAME = "audio"
OUTPUT_NAME = "logits"
# ONNX Runtime 1.18+ and TensorRT 10.x (whose ONNX parser supports opsets 9-20) both accept 17..20;
# 17 is the first with LayerNormalization, which both runtimes fuse.
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 17, 20


def fold_parametrizations(model: torch.nn.Module) -> int:
    """Replace every parametrised weight (e.g. weight norm) by its current value; returns how many."""
    import torch
    from torch.nn.utils import parametrize

    count = 0
    for module in model.modules():
        if parametrize.is_parametrized(module):
            # nn.Module.__getattr__ is typed Tensor | Module; parametrize keeps a ModuleDict here
            parametrizations = module.parametrizations
            assert isinstance(parametrizations, torch.nn.ModuleDict)
            for name in list(parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
                count += 1
    return count


class _Wrapper:  # built lazily so this module imports without torch
    @staticmethod
    def build(model: torch.nn.Module) -> torch.nn.Module:
        import torch

        class LogitsOnly(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, audio: torch.Tensor) -> torch.Tensor:
                out: Any = self.inner(audio)
                if isinstance(out, (tuple, list)):
                    out = out[0]
                return out  # type: ignore[no-any-return]

        return LogitsOnly(model).eval()


def export_onnx(model: torch.nn.Module, path: str | Path, *, opset: int, example_samples: int) -> None:
    """Export ``model`` (``forward(wave[B, T]) -> logits[B, 2]``) to ``path`` as an FP32 ONNX graph."""
    import torch

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportArgumentError(
            f"opset: expected {MIN_OPSET}..{MAX_OPSET} (accepted by ONNX Runtime and TensorRT 10's "
            "ONNX parser), "
            f"given {opset}"
        )
    folded = fold_parametrizations(model)
    if folded:
        log.info("folded %d weight parametrisation(s) into plain weights before export", folded)
    wrapper = _Wrapper.build(model)
    example = torch.zeros(1, example_samples, dtype=torch.float32)
    example.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose (module docstring); its deprecation is not news.
        warnings.filterwarnings(
            "ignore", message=".*legacy TorchScript-based ONNX export.*", category=DeprecationWarning
        )
        # Tracer warnings (Python bools/ints taken from tensors) are what a traced export is checked
        # against: validation runs the graph at other batch sizes and lengths than the example.
        # torch.jit re-exports TracerWarning (from torch.jit._trace) without listing it in __all__
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # type: ignore[attr-defined]
        # A strided Slice (the spectral front end's decimation) is left unfolded: a note, not a problem.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch", 1: "samples"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
