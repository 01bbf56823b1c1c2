"""The GPU validation kit's measuring half (issue 24); ``scripts/gpu-check.sh`` installs and then runs it.

It proves the CUDA and TensorRT paths of spoofsdk on a real GPU and writes everything it measures to one
JSON file (``OUT/gpu-check.json``); the shell wrapper tees the log to ``OUT/gpu-check.log``.

Work is a list of *items* (``models/default``, ``engine/wavlm6/fp16``, ``parity/trt/default/int8``,
``tput/ort-cuda/wavlm6/fp32/scheduler/b32``...). Each item's result is saved to ``STATE/results.json``
as soon as it ends, so a run killed at any point keeps what it finished, and the next run (a second
short call on the same warm machine) does only what is left:

* ``ok`` and ``failed`` items are kept (``--retry-failed`` runs failed ones again);
* ``skipped`` items (a capability is missing: no GPU, no TensorRT...) are looked at again every run;
* ``deferred`` items (not enough of the time budget left) run next time.

Without a GPU (``--rehearse`` on a developer machine) everything up to the device boundary really
runs: the exports, the FP16 and int8 Q/DQ models, TensorRT buildability checks, the ORT CPU
references, a CPU throughput baseline, the sidecar check at manifest level and the tests/gpu lane
(which skips with reasons); every item that needs CUDA reports ``skipped: no GPU ...``.
``--quick`` swaps the WavLM-base 6-layer detector for the 2-layer test WavLM and shortens the
measurements (the CI rehearsal, tests/gpu/test_gpu_kit.py).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

KIT_VERSION = 1
SR = 16000
WIN4 = 4 * SR  # throughput windows: 4 s
BATCHES = (1, 8, 32, 64)
PRECISIONS = ("fp32", "fp16", "int8")
ENGINE_OPT_BATCH = 8
ENGINE_MAX_BATCH = max(BATCHES)
REPO = Path(__file__).resolve().parents[1]

log = logging.getLogger("gpu-check")


class Skip(Exception):
    """An item cannot run here (its reason is recorded as ``skipped: ...``)."""


# ---------------------------------------------------------------------------------------------
# Results: one JSON document, saved after every item
# ---------------------------------------------------------------------------------------------
def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return None if math.isnan(v) or math.isinf(v) else round(v, 6)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    return value


class Kit:
    def __init__(self, args: argparse.Namespace) -> None:
        self.state = Path(args.state).resolve()
        self.out = Path(args.out).resolve()
        self.rehearse = bool(args.rehearse)
        self.fake = bool(args.fake_gpu)
        self.quick = bool(args.quick) or self.fake
        self.retry_failed = bool(args.retry_failed)
        self.t0 = time.monotonic()
        self.deadline = self.t0 + float(args.budget_s)
        self.state.mkdir(parents=True, exist_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        self.results_path = self.state / "results.json"
        doc: dict[str, Any] = {}
        if self.results_path.is_file():
            with contextlib.suppress(ValueError):
                doc = json.loads(self.results_path.read_text())
        if (doc.get("kit_version"), bool(doc.get("quick")), bool(doc.get("fake_gpu"))) != (
            KIT_VERSION,
            self.quick,
            self.fake,
        ):
            doc = {}
        self.doc: dict[str, Any] = doc or {
            "kit": "spoofsdk GPU validation kit (scripts/gpu-check.sh)",
            "kit_version": KIT_VERSION,
            "quick": self.quick,
            "fake_gpu": self.fake,
            "items": {},
            "runs": [],
        }
        self.doc["mode"] = "rehearse" if self.rehearse else "device"
        self.run_record: dict[str, Any] = {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "budget_s": float(args.budget_s),
            "host": platform.node(),
            "ran": [],
        }
        self.doc["runs"].append(self.run_record)
        self.cap: dict[str, bool] = {}
        self.why: dict[str, str] = {}
        self.cache: dict[str, Any] = {}

    def close_cache(self) -> None:
        for _, det in self.cache.values():
            with contextlib.suppress(Exception):
                det.close()
        self.cache.clear()

    @property
    def items(self) -> dict[str, Any]:
        items: dict[str, Any] = self.doc["items"]
        return items

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        counts: dict[str, int] = {}
        for v in self.items.values():
            counts[v["status"]] = counts.get(v["status"], 0) + 1
        self.doc["summary"] = {
            "counts": counts,
            "complete": not counts.get("deferred") and not counts.get("failed"),
            "gpu_items_run": sum(
                1
                for v in self.items.values()
                if v["status"] in ("ok", "failed") and v.get("needs") and not v.get("fake_gpu")
            ),
        }
        self.run_record["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        text = json.dumps(_jsonable(self.doc), indent=2) + "\n"
        _atomic_write(self.results_path, text)
        _atomic_write(self.out / "gpu-check.json", text)

    def item(
        self,
        key: str,
        fn: Callable[[], dict[str, Any] | None],
        *,
        needs: tuple[str, ...] = (),
        estimate_s: float = 5.0,
        after: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Run ``fn`` as item ``key`` unless an earlier run finished it; record and save the result."""
        prev = self.items.get(key)
        if prev and (prev["status"] == "ok" or (prev["status"] == "failed" and not self.retry_failed)):
            return dict(prev)
        rec: dict[str, Any] = {"needs": list(needs)}
        if self.fake and "gpu" in needs:
            rec["fake_gpu"] = True  # ran against scripts/gpu_fakes.py: plumbing only, no GPU
        missing = [n for n in needs if not self.cap.get(n)]
        blocked = [a for a in after if self.items.get(a, {}).get("status") != "ok"]
        if missing:
            rec |= {"status": "skipped", "reason": "; ".join(dict.fromkeys(self.why[n] for n in missing))}
        elif blocked:
            states = {a: self.items.get(a, {}).get("status", "not run") for a in blocked}
            rec |= {"status": "skipped", "reason": f"depends on {states}"}
        elif self.remaining() < estimate_s:
            rec |= {
                "status": "deferred",
                "reason": f"time budget: needs ~{estimate_s:.0f} s, {max(0.0, self.remaining()):.0f} s "
                "left; run the kit again to finish",
            }
        else:
            log.info("[%s] start (~%.0f s, %.0f s of budget left)", key, estimate_s, self.remaining())
            t = time.perf_counter()
            try:
                data = fn() or {}
                rec |= {"status": "ok" if data.pop("ok", True) else "failed"} | data
            except Skip as exc:
                rec |= {"status": "skipped", "reason": str(exc)}
            except Exception as exc:
                rec |= {
                    "status": "failed",
                    "error": f"{type(exc).__name__}: {exc}"[:2000],
                    "traceback": traceback.format_exc()[-3000:],
                }
            rec["seconds"] = round(time.perf_counter() - t, 2)
            self.run_record["ran"].append(key)
        level = {"failed": logging.WARNING, "skipped": logging.DEBUG}.get(rec["status"], logging.INFO)
        detail = rec.get("reason") or rec.get("error") or ""
        log.log(level, "[%s] %s %s", key, rec["status"], detail[:300])
        self.items[key] = rec
        self.save()
        return rec


# ---------------------------------------------------------------------------------------------
# Environment and capabilities
# ---------------------------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def probe_env(kit: Kit) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "versions": {
            d: _version(d)
            for d in (
                "spoofsdk",
                "numpy",
                "onnx",
                "onnxruntime",
                "onnxruntime-gpu",
                "torch",
                "transformers",
                "tensorrt",
                "tensorrt-cu13",
                "tensorrt-cu13-libs",
                "tensorrt-cu13-bindings",
                "cuda-bindings",
                "cuda-python",
                "soundfile",
            )
        },
        "project_build": os.environ.get("GPU_CHECK_PROJECT_BUILD", "not built by the kit (rehearsal)"),
        "LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH", ""),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    import spoofsdk

    env["spoofsdk"] = {"file": spoofsdk.__file__, "version": spoofsdk.__version__}
    try:
        from spoofsdk import _native  # noqa: F401

        env["spoofsdk"]["native"] = "ok"
    except ImportError as exc:
        env["spoofsdk"]["native"] = f"missing: {exc}"
    smi = shutil.which("nvidia-smi")
    if smi:
        q = "name,driver_version,memory.total,compute_cap,clocks.max.sm"
        try:
            r = subprocess.run(
                [smi, f"--query-gpu={q}", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            env["nvidia_smi"] = r.stdout.strip() or r.stderr.strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            env["nvidia_smi"] = f"failed: {exc}"
    else:
        env["nvidia_smi"] = None

    # ONNX Runtime: load the CUDA/cuDNN libraries of the nvidia-* wheels first (onnxruntime >= 1.21).
    import onnxruntime as ort

    env["onnxruntime"] = {"version": ort.__version__, "file": ort.__file__}
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None and not kit.rehearse:
        try:
            preload()
            env["onnxruntime"]["preload_dlls"] = "ok"
        except Exception as exc:
            env["onnxruntime"]["preload_dlls"] = f"failed: {exc}"
    providers = list(ort.get_available_providers())
    env["onnxruntime"]["providers"] = providers

    gpu: dict[str, str] | None = None
    try:
        from spoof_export.tensorrt import gpu_info

        gpu = gpu_info(0)
        env["gpu"] = gpu
    except Exception as exc:
        env["gpu"] = None
        kit.why["gpu"] = f"no GPU ({type(exc).__name__}: {str(exc)[:300]})"
    kit.cap["gpu"] = gpu is not None

    try:
        from spoof_export.tensorrt import import_tensorrt

        trt = import_tensorrt()
        env["tensorrt"] = {"version": str(trt.__version__), "file": getattr(trt, "__file__", None)}
        kit.cap["tensorrt"] = True
    except Exception as exc:
        env["tensorrt"] = None
        kit.cap["tensorrt"] = False
        kit.why["tensorrt"] = (
            "TensorRT is not installed (libnvinfer from tensorrt-cu13-libs: on PyPI only a "
            f"stub that downloads from NVIDIA's index; see docs/benchmarks.md) ({str(exc)[:200]})"
        )
    for name, prov in (("ort_cuda", "CUDAExecutionProvider"), ("ort_trt", "TensorrtExecutionProvider")):
        kit.cap[name] = prov in providers
        kit.why[name] = (
            f"onnxruntime {ort.__version__} offers no {prov} (providers {providers}); install onnxruntime-gpu"
        )
    kit.cap["ort_trt"] = kit.cap["ort_trt"] and kit.cap["tensorrt"]
    if not kit.cap["tensorrt"]:
        kit.why["ort_trt"] = kit.why["tensorrt"]
    for name in ("ort_cuda", "ort_trt", "tensorrt"):
        if not kit.cap["gpu"]:
            kit.cap[name] = False
            kit.why[name] = kit.why["gpu"]
    env["capabilities"] = dict(kit.cap)
    return env


# ---------------------------------------------------------------------------------------------
# Audio and models
# ---------------------------------------------------------------------------------------------
def speechlike(n: int, samples: int, seed: int) -> np.ndarray:
    """Deterministic voiced-speech-like audio: a gliding harmonic source, a syllable envelope, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / SR
    out = np.empty((n, samples), dtype=np.float32)
    for i in range(n):
        f0 = 110 + 90 * rng.random() + 20 * np.sin(2 * np.pi * 0.7 * t + rng.random() * 6)
        phase = 2 * np.pi * np.cumsum(f0) / SR
        x = sum(np.sin(k * phase) / k for k in range(1, 8))
        env = 0.5 + 0.5 * np.sin(2 * np.pi * (3 + rng.random()) * t) ** 2
        x = 0.15 * x * env + 0.01 * rng.standard_normal(samples)
        out[i] = x.astype(np.float32)
    return out


@dataclasses.dataclass(frozen=True)
class ModelSet:
    name: str
    files: dict[str, Path]  # precision -> .onnx
    window: int
    min_samples: int
    tolerances: dict[str, float]  # precision -> atol of a GPU path against ORT CPU
    tolerance_source: str


def _manifest_with(path: Path, precision: str) -> Any:
    from spoofsdk.manifest import read_manifest

    return dataclasses.replace(read_manifest(path), precision=precision)


def prepare_default(kit: Kit) -> dict[str, Any]:
    """The bundled default detector: FP32 as shipped, FP16 and symmetric int8 Q/DQ derived from it."""
    from spoof_export.quantize import convert_fp16, quantize_int8
    from spoof_export.tensorrt import check_tensorrt_compatibility
    from spoofsdk.detector import _default_model_path
    from spoofsdk.manifest import read_manifest, write_onnx_manifest

    src = _default_model_path()
    d = kit.state / "models" / "default"
    d.mkdir(parents=True, exist_ok=True)
    files = {p: d / f"default.{p}.onnx" for p in PRECISIONS}
    shutil.copyfile(src, files["fp32"])
    m = read_manifest(files["fp32"])
    info: dict[str, Any] = {"source": str(src), "manifest_window": m.window_samples, "stages": {}}
    info["stages"]["fp16"] = convert_fp16(files["fp32"], files["fp16"])
    write_onnx_manifest(files["fp16"], dataclasses.replace(m, precision="fp16"))
    calib = speechlike(8 if kit.quick else 32, m.window_samples, seed=11)
    q = quantize_int8(files["fp32"], files["int8"], calib, target="tensorrt")
    info["stages"]["int8_tensorrt"] = {k: v for k, v in q.items() if k != "excluded_nodes"}
    write_onnx_manifest(files["int8"], dataclasses.replace(m, precision="int8"))
    info["tensorrt_check"] = {}
    for p, f in files.items():
        chk = check_tensorrt_compatibility(f, strict=False)
        chk.pop("op_counts", None)
        info["tensorrt_check"][p] = chk
    info["files"] = {p: {"path": str(f), "bytes": f.stat().st_size} for p, f in files.items()}
    # No export report for the bundled model: the tolerances of spoof_export.export()'s defaults.
    info["tolerances"] = {"fp32": 1e-2, "fp16": 0.1, "int8": 1.0}
    info["tolerance_source"] = (
        "spoof_export.export() defaults (engine vs FP32 ONNX: max(atol=1e-3, 1e-2); fp16_atol 0.1; "
        "int8_atol 1.0); the bundled model ships without an export report"
    )
    info["tensorrt_buildable"] = all(c["ok"] for c in info["tensorrt_check"].values())
    return info


def prepare_wavlm(kit: Kit, name: str) -> dict[str, Any]:
    """A WavLM-base-shaped 6-layer detector (random weights from the preset's config), exported by
    spoof_export.export() to FP32, FP16 and TensorRT int8 Q/DQ ONNX with its own validation report."""
    import soundfile as sf

    from spoof_export import export
    from spoof_train.presets import init_checkpoint

    preset, layers = ("wavlm-tiny", None) if kit.quick else ("wavlm-base", 6)
    d = kit.state / "models" / name
    d.mkdir(parents=True, exist_ok=True)
    ckpt = init_checkpoint(preset, "ffn", d / "checkpoint", layers=layers, seed=0, overwrite=True)
    calib = d / "calib"
    shutil.rmtree(calib, ignore_errors=True)
    calib.mkdir()
    for i, x in enumerate(speechlike(16, int(4.5 * SR), seed=100)):
        sf.write(calib / f"c{i:02d}.wav", x, SR)
    result = export(
        ckpt,
        output=d / name,
        fp16=True,
        int8=True,
        int8_target="tensorrt",
        calib=calib,
        calib_min_files=16,
        calib_max_files=16,
        num_threads=max(1, min(16, os.cpu_count() or 1)),
        latency_repeats=1,
    )
    rep = result.report
    args = rep["arguments"]
    files = {
        "fp32": result.paths["onnx"],
        "fp16": result.paths["fp16"],
        "int8": result.paths["int8_tensorrt"],
    }
    # Uniform names next to the default model's (default.fp32.onnx...).
    for p, f in list(files.items()):
        target = d / f"{name}.{p}.onnx"
        if f != target:
            shutil.copyfile(f, target)
            files[p] = target
    stages = {k: v for k, v in rep["stages"].items() if isinstance(v, dict) and "max_abs_diff" in v}
    return {
        "preset": preset,
        "layers": layers,
        "checkpoint": str(ckpt),
        "report": str(result.paths["report"]),
        "export_seconds": rep.get("seconds"),
        "export_stages": {
            k: {kk: v.get(kk) for kk in ("ok", "max_abs_diff", "atol", "score_agreement")}
            for k, v in stages.items()
        },
        "tensorrt_check": {
            k: {kk: v.get(kk) for kk in ("ok", "blockers", "warnings")}
            for k, v in rep["tensorrt_check"].items()
        },
        "files": {p: {"path": str(f), "bytes": f.stat().st_size} for p, f in files.items()},
        "manifest_window": rep["manifest"]["window_samples"],
        "tolerances": {
            "fp32": max(float(args["atol"]), 1e-2),
            "fp16": float(args["fp16_atol"]),
            "int8": float(args["int8_atol"]),
        },
        "tolerance_source": f"{result.paths['report'].name}: engine vs FP32 ONNX max(atol, 1e-2), "
        "fp16_atol, int8_atol",
    }


def model_set(kit: Kit, name: str) -> ModelSet | None:
    rec = kit.items.get(f"models/{name}")
    if not rec or rec["status"] != "ok":
        return None
    from spoofsdk.manifest import read_manifest

    files = {p: Path(v["path"]) for p, v in rec["files"].items()}
    if not all(f.is_file() for f in files.values()):
        return None
    m = read_manifest(files["fp32"])
    return ModelSet(
        name=name,
        files=files,
        window=m.window_samples,
        min_samples=m.min_samples,
        tolerances={k: float(v) for k, v in rec["tolerances"].items()},
        tolerance_source=rec["tolerance_source"],
    )


def parity_inputs(ms: ModelSet, quick: bool) -> dict[str, np.ndarray]:
    short = min(max(ms.min_samples * 4, SR), ms.window)
    return {
        f"{2 if quick else 8}x{WIN4}": speechlike(2 if quick else 8, WIN4, seed=1),
        f"2x{ms.window}": speechlike(2, ms.window, seed=2),
        f"1x{short}": speechlike(1, short, seed=3),
    }


def _raw_logits(det: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    backend = det._backend  # the Backend protocol: run(batch) -> float32 [batch, 2] raw logits
    return {k: np.asarray(backend.run(np.ascontiguousarray(x)), dtype=np.float32) for k, x in inputs.items()}


def _ref_path(kit: Kit, ms: ModelSet, precision: str) -> Path:
    return kit.state / "ref" / f"{ms.name}.{precision}.npz"


def cpu_reference(kit: Kit, ms: ModelSet, precision: str) -> dict[str, Any]:
    from spoofsdk import Detector

    inputs = parity_inputs(ms, kit.quick)
    det = Detector(ms.files[precision], backend="cpu", speech_gate=False)
    t = time.perf_counter()
    got = _raw_logits(det, inputs)
    seconds = time.perf_counter() - t
    det.close()
    path = _ref_path(kit, ms, precision)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **got)
    finite = all(np.isfinite(v).all() for v in got.values())
    out: dict[str, Any] = {
        "backend": "onnxruntime CPUExecutionProvider",
        "shapes": {k: list(v.shape) for k, v in inputs.items()},
        "seconds": round(seconds, 2),
        "reference": str(path),
        "ok": finite,
    }
    if precision != "fp32":
        ref32 = dict(np.load(_ref_path(kit, ms, "fp32")))
        diff = max(float(np.abs(got[k] - ref32[k]).max()) for k in got)
        tol = ms.tolerances[precision]
        out["cpu_vs_fp32_max_abs_diff"] = diff
        out["tolerance"] = tol
        out["cpu_within_tolerance"] = diff <= tol
    if not finite:
        out["error"] = "non-finite logits on ORT CPU"
    return out


# ---------------------------------------------------------------------------------------------
# GPU paths: TensorRT engines (runtime backend), ORT CUDA EP, ORT TensorRT EP
# ---------------------------------------------------------------------------------------------
def engine_path(kit: Kit, ms: ModelSet, precision: str) -> Path:
    return kit.state / "engines" / f"{ms.name}.{precision}.trt"


def build_one_engine(kit: Kit, ms: ModelSet, precision: str) -> dict[str, Any]:
    from spoof_export.tensorrt import build_engine
    from spoofsdk.manifest import write_engine_manifest

    out = engine_path(kit, ms, precision)
    out.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    built = build_engine(
        ms.files[precision],
        out,
        profile_min=(1, ms.min_samples),
        profile_opt=(ENGINE_OPT_BATCH, WIN4),
        profile_max=(ENGINE_MAX_BATCH, max(WIN4, ms.window)),
        workspace_bytes=8 << 30,
        timing_cache=kit.state / "engines" / "timing.cache",
    )
    seconds = time.perf_counter() - t
    write_engine_manifest(out, _manifest_with(ms.files[precision], precision), built.engine_info())
    return {
        "engine": str(out),
        "bytes": out.stat().st_size,
        "build_seconds": round(seconds, 2),
        "engine_info": dataclasses.asdict(built.engine_info()),
    }


def open_detector(kit: Kit, path_kind: str, ms: ModelSet, precision: str, *, window_s: float | None) -> Any:
    from spoofsdk import Detector

    kw: dict[str, Any] = {"speech_gate": False}
    if window_s is not None:
        kw["window_s"] = window_s
        kw["hop_s"] = window_s
    if path_kind == "trt":
        return Detector(engine_path(kit, ms, precision), backend="tensorrt", **kw)
    if path_kind == "ort-cuda":
        return Detector(ms.files[precision], backend="cuda", **kw)
    if path_kind == "ort-trt":
        opts = {
            "engine_cache_dir": str(kit.state / "ort-trt-cache"),
            "timing_cache_dir": str(kit.state / "ort-trt-cache"),
            "fp16": precision == "fp16",
            "int8": precision == "int8",
            "max_batch": ENGINE_MAX_BATCH,
            "opt_batch": ENGINE_OPT_BATCH,
        }
        (kit.state / "ort-trt-cache").mkdir(parents=True, exist_ok=True)
        # window_s 4 s puts 4 s windows inside the EP's optimisation profile (see TensorRTOptions).
        kw.setdefault("window_s", WIN4 / SR)
        return Detector(ms.files[precision], backend="tensorrt", tensorrt_options=opts, **kw)
    if path_kind == "cpu":
        return Detector(ms.files[precision], backend="cpu", **kw)
    raise ValueError(path_kind)


def parity(kit: Kit, path_kind: str, ms: ModelSet, precision: str) -> dict[str, Any]:
    inputs = parity_inputs(ms, kit.quick)
    ref_file = _ref_path(kit, ms, precision)
    if not ref_file.is_file():
        raise Skip(f"no ORT CPU reference ({ref_file.name}); run the kit's cpu items first")
    ref = dict(np.load(ref_file))
    ref32 = dict(np.load(_ref_path(kit, ms, "fp32")))
    t = time.perf_counter()
    det = open_detector(kit, path_kind, ms, precision, window_s=None)
    open_s = time.perf_counter() - t
    try:
        got = _raw_logits(det, inputs)
        detail = det.backend_detail
        backend = det.backend
    finally:
        det.close()
    tol = ms.tolerances[precision]
    per = {}
    for k in inputs:
        d_same = float(np.abs(got[k] - ref[k]).max())
        d_32 = float(np.abs(got[k] - ref32[k]).max())
        agree = float(np.mean(np.sign(got[k][:, 1] - got[k][:, 0]) == np.sign(ref[k][:, 1] - ref[k][:, 0])))
        per[k] = {
            "max_abs_diff_vs_cpu_same_file": d_same,
            "max_abs_diff_vs_cpu_fp32": d_32,
            "sign_agreement": agree,
        }
    worst = max(v["max_abs_diff_vs_cpu_same_file"] for v in per.values())
    finite = all(np.isfinite(v).all() for v in got.values())
    return {
        "ok": finite and worst <= tol,
        "backend": backend,
        "detail": detail,
        "open_seconds": round(open_s, 2),
        "tolerance": tol,
        "tolerance_source": ms.tolerance_source,
        "max_abs_diff": worst,
        "inputs": per,
        **({} if finite else {"error": "non-finite logits"}),
    }


def sidecar_check(kit: Kit, ms: ModelSet) -> dict[str, Any]:
    """A copy of a real engine whose sidecar claims another GPU / TensorRT must be refused, typed, before
    deserialisation; the untouched copy must load."""
    from spoofsdk import Detector
    from spoofsdk.errors import EngineIncompatibleError
    from spoofsdk.manifest import engine_sidecar_path

    src = engine_path(kit, ms, "fp32")
    d = kit.state / "sidecar"
    d.mkdir(parents=True, exist_ok=True)
    other = d / "other.trt"
    shutil.copyfile(src, other)
    doc = json.loads(engine_sidecar_path(src).read_text())
    cases: dict[str, Any] = {}

    def attempt(name: str, mutate: Callable[[dict[str, Any]], None], expect_error: bool) -> None:
        mutated = json.loads(json.dumps(doc))
        mutate(mutated["engine"])
        engine_sidecar_path(other).write_text(json.dumps(mutated))
        try:
            det = Detector(other, backend="tensorrt", speech_gate=False)
            det.close()
            cases[name] = {"raised": None, "ok": not expect_error}
        except EngineIncompatibleError as exc:
            cases[name] = {"raised": "EngineIncompatibleError", "message": str(exc), "ok": expect_error}
        except Exception as exc:
            cases[name] = {"raised": type(exc).__name__, "message": str(exc)[:500], "ok": False}

    cc = doc["engine"]["compute_capability"]
    attempt(
        "other_gpu",
        lambda e: e.update(compute_capability="7.2" if cc != "7.2" else "9.0", gpu_name="some other GPU"),
        True,
    )
    attempt("other_tensorrt", lambda e: e.update(tensorrt_version="9.0.0"), True)
    attempt("unchanged", lambda e: None, False)
    return {"engine": str(src), "cases": cases, "ok": all(c["ok"] for c in cases.values())}


def sidecar_manifest_level() -> dict[str, Any]:
    """Without a GPU: the compatibility check itself (what the Detector calls before deserialising)."""
    from spoofsdk.errors import EngineIncompatibleError
    from spoofsdk.manifest import EngineInfo, check_engine_compatibility

    info = EngineInfo(
        tensorrt_version="10.16.1.11",
        compute_capability="9.0",
        gpu_name="NVIDIA H100 80GB HBM3",
        profile_min=(1, 1600),
        profile_opt=(ENGINE_OPT_BATCH, WIN4),
        profile_max=(ENGINE_MAX_BATCH, WIN4),
        build_flags=("strongly_typed",),
    )
    cases = {}
    for name, kw in {
        "other_gpu": {"tensorrt_version": "10.16.1.11", "compute_capability": "8.7", "gpu_name": "Orin"},
        "other_tensorrt": {"tensorrt_version": "11.4.0.106", "compute_capability": "9.0"},
    }.items():
        try:
            check_engine_compatibility(info, source="fake.trt", **kw)  # type: ignore[arg-type]
            cases[name] = {"raised": None, "ok": False}
        except EngineIncompatibleError as exc:
            cases[name] = {"raised": "EngineIncompatibleError", "message": str(exc), "ok": True}
    check_engine_compatibility(
        info, source="fake.trt", tensorrt_version="10.16.1.11", compute_capability="9.0"
    )
    cases["unchanged"] = {"raised": None, "ok": True}
    return {"cases": cases, "ok": all(c["ok"] for c in cases.values())}


# ---------------------------------------------------------------------------------------------
# Throughput: raw batches, BatchScheduler with many sessions, many independent streaming sessions
# ---------------------------------------------------------------------------------------------
def _timed(fn: Callable[[], Any], *, min_s: float, min_runs: int, max_runs: int) -> list[float]:
    times: list[float] = []
    t_end = time.perf_counter() + min_s
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() < t_end):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def tput_raw(det: Any, batch: int, *, min_s: float) -> dict[str, Any]:
    x = speechlike(1, WIN4, seed=5).repeat(batch, axis=0)
    run = det._backend.run
    for _ in range(2):
        run(x)
    times = _timed(lambda: run(x), min_s=min_s, min_runs=3, max_runs=200)
    med = float(np.median(times))
    return {
        "runs": len(times),
        "ms_per_batch_median": med * 1000,
        "ms_per_batch_p90": float(np.percentile(times, 90)) * 1000,
        "windows_per_s": batch / med,
        "audio_s_per_s": batch * WIN4 / SR / med,
    }


def tput_streams(det: Any, streams: int, *, scheduler: bool, min_s: float, est_wps: float) -> dict[str, Any]:
    """``streams`` threads, each feeding its own session 4 s at a time (one window per push, hop 4 s)."""
    from spoofsdk import BatchScheduler

    per_thread = max(2, math.ceil(est_wps * min_s / streams))
    chunk = speechlike(1, WIN4, seed=6)[0]
    sched = (
        BatchScheduler(
            det, max_batch=streams, max_wait_ms=5.0, max_queue=max(1024, 4 * streams), timeout_s=120.0
        )
        if scheduler
        else None
    )
    sessions = [
        (sched.stream(SR, encoding="float32") if sched else det.stream(SR, encoding="float32"))
        for _ in range(streams)
    ]
    for s in sessions:  # warm-up: one window each (contexts, buffers, engines per thread are made lazily)
        s.push(chunk)
    errors: list[BaseException] = []
    counts = [0] * streams
    start = threading.Barrier(streams + 1)

    def work(i: int) -> None:
        try:
            start.wait()
            for _ in range(per_thread):
                counts[i] += len(sessions[i].push(chunk))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(streams)]
    for th in threads:
        th.start()
    start.wait()
    t = time.perf_counter()
    for th in threads:
        th.join(timeout=300)
    wall = time.perf_counter() - t
    stats = sched.stats() if sched else None
    p2r = []
    for s in sessions:
        with contextlib.suppress(Exception):
            p2r.append(s.stats().push_to_result.p50_ms)
        s.close()
    if sched:
        sched.close()
    if errors:
        raise errors[0]
    windows = sum(counts)
    out: dict[str, Any] = {
        "streams": streams,
        "windows": windows,
        "wall_s": wall,
        "windows_per_s": windows / wall,
        "audio_s_per_s": windows * WIN4 / SR / wall,
        "push_to_result_ms_p50_median": float(np.median(p2r)) if p2r else None,
    }
    if stats is not None:
        out |= {"mean_batch": stats.mean_batch, "largest_batch": stats.largest_batch}
    return out


def throughput(
    kit: Kit, path_kind: str, ms: ModelSet, precision: str, *, mode: str, batch: int
) -> dict[str, Any]:
    min_s = 0.1 if kit.fake else 0.3 if kit.quick else 1.0
    if mode == "raw":
        # One detector for the raw batches of a (path, model, precision): creating a GPU session (cuDNN
        # algorithm search, engine deserialisation) is not what is measured. Streaming modes open their own,
        # so that their per-thread TensorRT contexts and buffers are freed after each item.
        key = (path_kind, ms.name, precision)
        cached = kit.cache.get("raw")
        if cached is None or cached[0] != key:
            kit.close_cache()
            cached = (key, open_detector(kit, path_kind, ms, precision, window_s=WIN4 / SR))
            kit.cache["raw"] = cached
        det = cached[1]
    else:
        kit.close_cache()
        det = open_detector(kit, path_kind, ms, precision, window_s=WIN4 / SR)
    try:
        if batch > det.max_batch:
            raise Skip(f"batch {batch} > this backend's max batch {det.max_batch}")
        if mode == "raw":
            r = tput_raw(det, batch, min_s=min_s)
        else:
            raw = kit.items.get(f"tput/{path_kind}/{ms.name}/{precision}/raw/b{batch}", {})
            est = float(raw.get("windows_per_s") or 50.0)
            r = tput_streams(det, batch, scheduler=mode == "scheduler", min_s=min_s, est_wps=est)
        return {"backend": det.backend, "detail": det.backend_detail, "window_samples": WIN4, **r}
    finally:
        if mode != "raw":
            det.close()


# ---------------------------------------------------------------------------------------------
# The tests/gpu lane
# ---------------------------------------------------------------------------------------------
def tests_gpu(kit: Kit) -> dict[str, Any]:
    junit = kit.state / "tests_gpu.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(REPO / "tests" / "gpu"),
        f"--ignore={REPO / 'tests' / 'gpu' / 'test_gpu_kit.py'}",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rA",
        f"--junitxml={junit}",
    ]
    timeout = max(30.0, min(300.0, kit.remaining() - 10))
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
        rc, tail = r.returncode, (r.stdout + r.stderr)[-4000:]
    except subprocess.TimeoutExpired as exc:
        rc, tail = None, f"timed out after {timeout:.0f} s: {str(exc.stdout or '')[-2000:]}"
    log.info("tests/gpu output tail:\n%s", tail)
    cases: dict[str, Any] = {}
    if junit.is_file():
        for tc in ET.parse(junit).getroot().iter("testcase"):
            name = f"{tc.get('classname')}::{tc.get('name')}"
            outcome, msg = "passed", ""
            for tag in ("failure", "error", "skipped"):
                el = tc.find(tag)
                if el is not None:
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                    msg = (el.get("message") or el.text or "")[:400]
            cases[name] = {"outcome": outcome, **({"message": msg} if msg else {})}
    counts: dict[str, int] = {}
    for c in cases.values():
        counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
    return {
        "ok": rc in (0, 5) and not counts.get("failed") and not counts.get("error"),
        "returncode": rc,
        "counts": counts,
        "cases": cases,
        "output_tail": tail[-1500:],
    }


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--state", required=True, help="state folder kept between runs (results, models, engines)"
    )
    ap.add_argument("--out", required=True, help="where gpu-check.json is written")
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop starting items after this many s")
    ap.add_argument("--rehearse", action="store_true", help="CPU rehearsal: no onnxruntime preload")
    ap.add_argument("--quick", action="store_true", help="tiny WavLM and short timings (CI rehearsal)")
    ap.add_argument("--retry-failed", action="store_true", help="run items that failed before again")
    ap.add_argument("--no-tests", action="store_true", help="leave out the tests/gpu lane")
    ap.add_argument(
        "--fake-gpu",
        action="store_true",
        help="with --rehearse: fake TensorRT + CUDA (scripts/gpu_fakes.py) so the TensorRT items run their "
        "plumbing on the CPU; implies --quick",
    )
    args = ap.parse_args(argv)
    if args.fake_gpu and not args.rehearse:
        ap.error("--fake-gpu is for rehearsals (--rehearse) only")
    if args.fake_gpu:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import gpu_fakes

        gpu_fakes.install()

    kit = Kit(args)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
        force=True,
    )
    for noisy in ("spoof_export", "spoof_train", "spoofsdk"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    kit.doc["env"] = probe_env(kit)
    kit.save()
    log.info("capabilities: %s", kit.cap)
    gpu_paths = [
        ("trt", ("gpu", "tensorrt")),
        ("ort-cuda", ("gpu", "ort_cuda")),
        ("ort-trt", ("gpu", "ort_trt")),
    ]

    wavlm = "wavlm-tiny" if kit.quick else "wavlm6"
    kit.item("models/default", lambda: prepare_default(kit), estimate_s=30 if kit.quick else 60)
    kit.item(f"models/{wavlm}", lambda: prepare_wavlm(kit, wavlm), estimate_s=40 if kit.quick else 150)
    sets = [s for s in (model_set(kit, "default"), model_set(kit, wavlm)) if s is not None]

    # ORT CPU: the reference of every parity check, and the in-run CPU throughput baseline.
    for ms in sets:
        for p in PRECISIONS:
            after = () if p == "fp32" else (f"cpu/{ms.name}/fp32",)
            kit.item(
                f"cpu/{ms.name}/{p}", lambda ms=ms, p=p: cpu_reference(kit, ms, p), estimate_s=20, after=after
            )
        for b in (1,) if kit.quick else (1, 8):
            kit.item(
                f"tput/cpu/{ms.name}/fp32/raw/b{b}",
                lambda ms=ms, b=b: throughput(kit, "cpu", ms, "fp32", mode="raw", batch=b),
                estimate_s=10 * b,
            )

    # TensorRT engines (FP32, FP16, int8 Q/DQ; profile batch 1..64, samples min..4 s).
    for ms in sets:
        for p in PRECISIONS:
            kit.item(
                f"engine/{ms.name}/{p}",
                lambda ms=ms, p=p: build_one_engine(kit, ms, p),
                needs=("gpu", "tensorrt"),
                estimate_s=40 if ms.name == "default" else 120,
            )

    # EngineIncompatibleError on a deliberately mismatched sidecar.
    kit.item("sidecar/manifest_check", sidecar_manifest_level, estimate_s=1)
    if sets:
        kit.item(
            "sidecar/detector",
            lambda: sidecar_check(kit, sets[0]),
            needs=("gpu", "tensorrt"),
            after=(f"engine/{sets[0].name}/fp32",),
            estimate_s=15,
        )

    # Parity of every engine and both execution providers against ORT CPU.
    for kind, needs in gpu_paths:
        for ms in sets:
            for p in PRECISIONS:
                after = (f"cpu/{ms.name}/{p}",) + ((f"engine/{ms.name}/{p}",) if kind == "trt" else ())
                est = 15 if kind != "ort-trt" else (60 if ms.name == "default" else 180)
                kit.item(
                    f"parity/{kind}/{ms.name}/{p}",
                    lambda kind=kind, ms=ms, p=p: parity(kit, kind, ms, p),
                    needs=needs,
                    after=after,
                    estimate_s=est,
                )

    if not args.no_tests:
        kit.item("tests_gpu", lambda: tests_gpu(kit), estimate_s=30 if not kit.cap.get("gpu") else 150)

    # Throughput on the GPU: raw batches for every path and precision; scheduler and many-session modes
    # for the TensorRT FP16 engine and the ORT CUDA EP in FP32.
    batches = (1, 8) if kit.quick else BATCHES
    for kind, needs in gpu_paths:
        for ms in sets:
            for p in PRECISIONS:
                modes = ["raw"]
                if (kind, p) in (("trt", "fp16"), ("ort-cuda", "fp32")):
                    modes += ["scheduler", "sessions"]
                for mode in modes:
                    for b in batches:
                        after = (f"parity/{kind}/{ms.name}/{p}",)
                        kit.item(
                            f"tput/{kind}/{ms.name}/{p}/{mode}/b{b}",
                            lambda kind=kind, ms=ms, p=p, mode=mode, b=b: throughput(
                                kit, kind, ms, p, mode=mode, batch=b
                            ),
                            needs=needs,
                            after=after,
                            estimate_s=8,
                        )

    kit.close_cache()
    kit.run_record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    kit.save()
    write_markdown(kit)
    print_summary(kit)
    counts = kit.doc["summary"]["counts"]
    return 1 if counts.get("failed") else 0


def write_markdown(kit: Kit) -> None:
    """``OUT/gpu-check.md``: the tables to paste into docs/benchmarks.md (device named, fakes marked)."""
    env = kit.doc.get("env", {})
    gpu = env.get("gpu") or {}
    trt = env.get("tensorrt") or {}
    lines = [
        f"GPU: {gpu.get('name', 'none')} (compute capability {gpu.get('compute_capability', '-')}); "
        f"nvidia-smi: {env.get('nvidia_smi')}; onnxruntime {env.get('onnxruntime', {}).get('version')} "
        f"{env.get('onnxruntime', {}).get('providers')}; TensorRT {trt.get('version', 'not installed')}; "
        f"python {env.get('python')}; {env.get('cpu_count')} CPUs; mode {kit.doc.get('mode')}"
        + ("; FAKE GPU (plumbing only)" if kit.fake else ""),
        "",
        "| parity item | max abs logit diff vs ORT CPU (same file) | vs ORT CPU FP32 | tolerance | status |",
        "|---|---|---|---|---|",
    ]
    for key, v in kit.items.items():
        if key.startswith("parity/") and v["status"] in ("ok", "failed"):
            vs32 = max((i["max_abs_diff_vs_cpu_fp32"] for i in v.get("inputs", {}).values()), default=None)
            lines.append(
                f"| {key} | {v.get('max_abs_diff', float('nan')):.3g} | "
                f"{float('nan') if vs32 is None else vs32:.3g} | {v.get('tolerance')} | {v['status']} |"
            )
    lines += [
        "",
        "| throughput item (4 s windows) | windows/s | audio s/s | ms per batch (median) | mean batch |",
        "|---|---|---|---|---|",
    ]
    for key, v in kit.items.items():
        if key.startswith("tput/") and v["status"] == "ok":
            ms = v.get("ms_per_batch_median")
            lines.append(
                f"| {key} | {v['windows_per_s']:.1f} | {v['audio_s_per_s']:.0f} | "
                f"{'' if ms is None else f'{ms:.1f}'} | {v.get('mean_batch', '') or ''} |"
            )
    tests = kit.items.get("tests_gpu", {})
    if tests.get("cases"):
        lines += ["", "| tests/gpu | outcome |", "|---|---|"]
        lines += [f"| {name} | {c['outcome']} |" for name, c in tests["cases"].items()]
    _atomic_write(kit.out / "gpu-check.md", "\n".join(lines) + "\n")


def print_summary(kit: Kit) -> None:
    log.info("summary: %s", kit.doc["summary"])
    rows = []
    for key, v in kit.items.items():
        if key.startswith("tput/") and v["status"] == "ok":
            rows.append(
                f"  {key:<48} {v['windows_per_s']:>9.1f} windows/s  {v['audio_s_per_s']:>9.1f} audio s/s"
                + (" [fake GPU]" if v.get("fake_gpu") else "")
                + (f"  mean batch {v['mean_batch']:.1f}" if "mean_batch" in v else "")
            )
        elif key.startswith("parity/") and v["status"] == "ok":
            rows.append(
                f"  {key:<48} max|diff| {v['max_abs_diff']:.2e} (tol {v['tolerance']:g})"
                + (" [fake GPU]" if v.get("fake_gpu") else "")
            )
    if rows:
        log.info("measured:\n%s", "\n".join(rows))
    groups: dict[str, list[str]] = {}
    for k, v in kit.items.items():
        if v["status"] != "ok":
            why = f"{v['status']}: {(v.get('reason') or v.get('error') or '')[:200]}"
            groups.setdefault(why, []).append(k)
    for why, keys in groups.items():
        log.info("%d item(s) %s\n  %s", len(keys), why, " ".join(keys))


if __name__ == "__main__":
    raise SystemExit(main())
