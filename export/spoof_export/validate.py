"""Run ONNX artifacts in a spawned process and compare each stage with the one it was made from.

ONNX Runtime sessions do not survive ``fork``, and a crashing kernel must not take the exporter (or a
host calling :func:`spoof_export.export`) down with it: every ONNX Runtime run here happens in a child
started with the ``spawn`` context. The child returns outputs, latencies and an optional per-operator
profile; comparisons happen in the parent and raise :class:`~spoof_export.errors.ValidationError`
(``ShapeError`` for a wrong shape) with the per-output maximum absolute difference.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spoof_export.errors import ShapeError, ValidationError
from spoof_export.onnx_export import INPUT_NAME, OUTPUT_NAME

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "OrtJob",
    "OrtResult",
    "compare_outputs",
    "parse_ort_profile",
    "run_ort_jobs",
    "score_agreement",
]

log = logging.getLogger("spoof_export")

INT8_KERNELS = (
    "QLinearConv",
    "QLinearMatMul",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
    "QGemm",
    "MatMulInteger",
    "ConvInteger",
    "QLinearAdd",
    "QLinearMul",
)


@dataclass
class OrtJob:
    """One artifact to run: ``batches`` are run in order and their ``logits`` concatenated."""

    path: str
    batches: list[NDArray[np.float32]] = field(default_factory=list)
    threads: int = 2
    latency_samples: int = 0  # > 0: time batch-1 windows of this many samples
    latency_repeats: int = 5
    profile: bool = False
    graph_optimization: str = "all"  # "basic" | "extended" | "all"


@dataclass
class OrtResult:
    path: str
    logits: NDArray[np.float32] | None
    output_shapes: list[tuple[int, ...]]
    output_names: list[str]
    latency_ms: float | None
    latency_all_ms: list[float]
    providers: list[str]
    profile: dict[str, Any] | None


def parse_ort_profile(trace_path: str | Path) -> dict[str, Any]:
    """Per-operator time shares from an ONNX Runtime profile (``enable_profiling``) trace.

    Only node kernel events are counted; the first run (warm-up) is included in ORT's trace, so the
    shares are over all runs in the trace. Returns ``{op_type: {"ms": total, "share": fraction,
    "nodes": count}}`` sorted by time, plus ``int8_share`` (time in integer kernels).
    """
    events = json.loads(Path(trace_path).read_text(encoding="utf-8"))
    per_op: dict[str, float] = defaultdict(float)
    nodes: dict[str, set[str]] = defaultdict(set)
    for ev in events:
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
            continue
        op = ev.get("args", {}).get("op_name", "?")
        per_op[op] += float(ev.get("dur", 0)) / 1000.0
        nodes[op].add(ev["name"])
    total = sum(per_op.values()) or 1.0
    ops = {
        op: {"ms": round(ms, 3), "share": round(ms / total, 4), "nodes": len(nodes[op])}
        for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1])
    }
    int8 = sum(v["ms"] for k, v in ops.items() if k in INT8_KERNELS)
    return {"ops": ops, "total_ms": round(total, 3), "int8_share": round(int8 / total, 4)}


def _run_jobs(jobs: list[OrtJob]) -> list[OrtResult]:
    """Body of the spawned child: import onnxruntime here, run each job, return plain data."""
    import onnxruntime as ort

    results = []
    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    for job in jobs:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = job.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = levels[job.graph_optimization]
        opts.log_severity_level = 3
        prof_dir = None
        if job.profile:
            prof_dir = tempfile.mkdtemp(prefix="spoof-export-prof-")
            opts.enable_profiling = True
            opts.profile_file_prefix = os.path.join(prof_dir, "ort")
        sess = ort.InferenceSession(job.path, sess_options=opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        outs: list[NDArray[np.float32]] = []
        shapes: list[tuple[int, ...]] = []
        for batch in job.batches:
            res = sess.run(None, {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})
            shapes.append(tuple(int(d) for d in res[0].shape))
            outs.append(np.asarray(res[names.index(OUTPUT_NAME)] if OUTPUT_NAME in names else res[0]))
        lat: list[float] = []
        if job.latency_samples > 0:
            x = np.random.default_rng(0).normal(0, 0.1, (1, job.latency_samples)).astype(np.float32)
            sess.run(None, {INPUT_NAME: x})  # warm-up
            for _ in range(job.latency_repeats):
                t0 = time.perf_counter()
                sess.run(None, {INPUT_NAME: x})
                lat.append((time.perf_counter() - t0) * 1000.0)
        profile = None
        if job.profile:
            trace = sess.end_profiling()
            profile = parse_ort_profile(trace)
            Path(trace).unlink(missing_ok=True)
            if prof_dir and not os.listdir(prof_dir):
                os.rmdir(prof_dir)
        results.append(
            OrtResult(
                path=job.path,
                logits=np.concatenate(outs) if outs else None,
                output_shapes=shapes,
                output_names=names,
                latency_ms=statistics.median(lat) if lat else None,
                latency_all_ms=lat,
                providers=list(sess.get_providers()),
                profile=profile,
            )
        )
        del sess
    return results


def run_ort_jobs(
    jobs: list[OrtJob],
    *,
    timeout: float | None = 3600.0,
    on_done: Callable[[int], None] | None = None,
) -> list[OrtResult]:
    """Run ``jobs`` in one spawned child process, one after the other; a crash or hang (``timeout``
    seconds for all of them) becomes a :class:`ValidationError`. ``on_done(n)`` is called in this process
    after the n-th job finished (progress)."""
    ctx = multiprocessing.get_context("spawn")
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            futures = [pool.submit(_run_jobs, [job]) for job in jobs]
            results: list[OrtResult] = []
            try:
                for future in futures:
                    left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                    results.extend(future.result(timeout=left))
                    if on_done is not None:
                        on_done(len(results))
            except BaseException:
                for future in futures:  # the jobs after a failure do not run
                    future.cancel()
                raise
            return results
    except BrokenProcessPool as exc:
        main = sys.modules.get("__main__")
        hint = (
            "; if export() was called at the top level of a script, put the call under "
            '`if __name__ == "__main__":` (the spawned process re-imports the main module)'
            if getattr(main, "__file__", None)
            else ""
        )
        raise ValidationError(
            f"ONNX Runtime crashed while running {[Path(j.path).name for j in jobs]} in the validation "
            f"process ({exc}); the artifact is not usable{hint}",
            stage="onnxruntime",
        ) from exc
    except TimeoutError as exc:
        raise ValidationError(
            f"ONNX Runtime did not finish {[Path(j.path).name for j in jobs]} within {timeout} s",
            stage="onnxruntime",
        ) from exc
    except ValidationError:
        raise
    except Exception as exc:  # onnxruntime's Fail / InvalidProtobuf / InvalidGraph / RuntimeException
        raise ValidationError(
            f"ONNX Runtime could not run {[Path(j.path).name for j in jobs]}: {exc}", stage="onnxruntime"
        ) from exc


def compare_outputs(
    reference: NDArray[np.float32], candidate: NDArray[np.float32], *, stage: str, atol: float
) -> dict[str, Any]:
    """Max / mean absolute difference of ``logits``; raises unless shapes match and max diff <= atol."""
    if reference.shape != candidate.shape:
        raise ShapeError(
            f"{stage}: expected output '{OUTPUT_NAME}' of shape {tuple(reference.shape)}, "
            f"given {tuple(candidate.shape)}",
            stage=stage,
        )
    if not np.isfinite(candidate).all():
        raise ValidationError(
            f"{stage}: output '{OUTPUT_NAME}' has non-finite values", stage=stage, atol=atol
        )
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    max_diff = float(diff.max()) if diff.size else 0.0
    result = {
        "stage": stage,
        "max_abs_diff": {OUTPUT_NAME: max_diff},
        "mean_abs_diff": {OUTPUT_NAME: float(diff.mean()) if diff.size else 0.0},
        "atol": atol,
        "ok": max_diff <= atol,
    }
    log.info(
        "%s: max |diff| %s = %.3g (atol %.3g) %s",
        stage,
        OUTPUT_NAME,
        max_diff,
        atol,
        "ok" if result["ok"] else "FAILED",
    )
    if not result["ok"]:
        raise ValidationError(
            f"{stage}: output '{OUTPUT_NAME}' differs by up to {max_diff:.4g}, expected <= atol {atol:g}",
            stage=stage,
            diffs={OUTPUT_NAME: max_diff},
            atol=atol,
        )
    return result


def score_agreement(
    reference: NDArray[np.float32],
    candidate: NDArray[np.float32],
    *,
    spoof_index: int,
    threshold_logit: float,
) -> dict[str, Any]:
    """How often two artifacts give the same decision, and how well their scores correlate.

    Scores are spoof logit differences ``logit[spoof] - logit[other]``; decisions compare them with
    ``threshold_logit`` (the manifest threshold mapped back through the calibration).
    """
    other = 1 - spoof_index
    a = reference[:, spoof_index].astype(np.float64) - reference[:, other]
    b = candidate[:, spoof_index].astype(np.float64) - candidate[:, other]
    agree = float(np.mean((a > threshold_logit) == (b > threshold_logit))) if a.size else 1.0
    corr = float(np.corrcoef(a, b)[0, 1]) if a.size > 1 and a.std() > 0 and b.std() > 0 else None
    return {
        "n": int(a.size),
        "decision_agreement": agree,
        "pearson": corr,
        "max_abs_score_diff": float(np.max(np.abs(a - b))) if a.size else 0.0,
    }
