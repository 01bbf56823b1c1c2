"""The model manifest (contract B): what a detector file says about itself.

An ONNX detector carries its manifest in ``metadata_props`` under keys prefixed ``spoof.``; a
TensorRT engine ``NAME.trt`` carries it in a JSON sidecar ``NAME.trt.json`` together with what the
engine was built for (TensorRT version, GPU compute capability, optimisation profile). One reader,
:func:`read_manifest`, validates both; the runtime never guesses a missing value.

The schema is documented in ``docs/ARTIFACTS.md``. Version 1 keys (ONNX ``metadata_props``; every
value is a string, structured values are JSON)::

    spoof.manifest_version   "1"
    spoof.sample_rate        "16000"                 model input rate in Hz
    spoof.window_samples     "64000"                 window length at the model rate
    spoof.hop_samples        "32000"                 0 < hop <= window
    spoof.min_samples        "400"                   shortest input the graph accepts
    spoof.label_order        '["bonafide", "spoof"]'  names of the two logits, in order
    spoof.spoof_index        "1"                     index of the spoof logit
    spoof.calibration        '{"type": "logistic", "scale": 1.0, "bias": 0.0, "calibrated": false}'
    spoof.threshold          "0.5"                   decision threshold on the spoof probability
    spoof.precision          "fp32" | "fp16" | "int8"
    spoof.layers             "6"                     transformer layers kept (0 if not applicable)
    spoof.backbone           "wavlm-base"
    spoof.source_sha256      64 hex digits, or "" when the source checkpoint is unknown
    spoof.exporter           "spoof_export"
    spoof.exporter_version   "0.1.0"
    spoof.created_at         ISO 8601 UTC, e.g. "2026-11-22T02:00:00Z"

The spoof log-odds of one window are ``z = scale * (logit[spoof] - logit[other]) + bias`` and its
spoof probability is ``sigmoid(z)``. ``calibration.calibrated`` (optional, a JSON boolean) says whether
``scale``, ``bias`` and ``threshold`` were fitted on data; files written before it existed lack it, and
:attr:`Manifest.is_calibrated` then reads the identity map with threshold 0.5 as uncalibrated.

This module imports neither ``onnx`` nor ``onnxruntime`` at import time: the ONNX metadata is read
by a small protobuf-free reader, and :func:`write_onnx_manifest` imports ``onnx`` lazily.
"""

from __future__ import annotations

import json
import math
import mmap
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spoofsdk.errors import EngineIncompatibleError, InvalidArgumentError, ModelLoadError

if TYPE_CHECKING:
    from os import PathLike

__all__ = [
    "ENGINE_SUFFIXES",
    "KEY_PREFIX",
    "MANIFEST_VERSION",
    "PRECISIONS",
    "Calibration",
    "EngineInfo",
    "Manifest",
    "check_engine_compatibility",
    "engine_sidecar_path",
    "manifest_from_dict",
    "read_manifest",
    "read_onnx_metadata",
    "write_engine_manifest",
    "write_onnx_manifest",
]

MANIFEST_VERSION = 1
KEY_PREFIX = "spoof."
PRECISIONS = ("fp32", "fp16", "int8")
ENGINE_SUFFIXES = (".trt", ".engine", ".plan")
# Rates the native front end accepts; the model rate must be one of the usual speech rates.
_MIN_RATE, _MAX_RATE = 1000, 384000
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SM_RE = re.compile(r"^\d+\.\d+$")
# A sidecar larger than this is not a manifest.
_MAX_SIDECAR_BYTES = 1 << 20


@dataclass(frozen=True)
class Calibration:
    """Maps the logit difference ``d = logit[spoof] - logit[other]`` to spoof log-odds ``scale*d + bias``.

    ``calibrated`` is what the file says: True when ``scale``/``bias`` and the manifest's threshold were
    fitted on data, False when the exporter wrote placeholders (identity, 0.5), None when the file predates
    the field (see :attr:`Manifest.is_calibrated`).
    """

    scale: float = 1.0
    bias: float = 0.0
    type: str = "logistic"
    calibrated: bool | None = None

    def log_odds(self, d: float) -> float:
        return self.scale * d + self.bias


@dataclass(frozen=True)
class EngineInfo:
    """What a TensorRT engine was built for (the ``engine`` block of ``NAME.trt.json``).

    ``profile_min/opt/max`` are the ``(batch, samples)`` shapes of the ``audio`` input in the engine's
    optimisation profile 0. ``hardware_compatibility_level`` is ``"none"`` (the engine runs only on the
    compute capability it was built on) or ``"ampere_plus"`` (any GPU of compute capability >= 8.0).
    ``version_compatible`` engines run on any TensorRT of the same major version >= the build version.
    """

    tensorrt_version: str
    compute_capability: str
    gpu_name: str
    profile_min: tuple[int, int]
    profile_opt: tuple[int, int]
    profile_max: tuple[int, int]
    build_flags: tuple[str, ...] = ()
    hardware_compatibility_level: str = "none"
    version_compatible: bool = False
    platform: str = ""


@dataclass(frozen=True)
class Manifest:
    """A validated contract-B manifest. Build it with keywords; every field is checked on creation."""

    sample_rate: int
    window_samples: int
    hop_samples: int
    min_samples: int
    label_order: tuple[str, ...] = ("bonafide", "spoof")
    spoof_index: int = 1
    calibration: Calibration = field(default_factory=Calibration)
    threshold: float = 0.5
    precision: str = "fp32"
    layers: int = 0
    backbone: str = ""
    source_sha256: str = ""
    exporter: str = ""
    exporter_version: str = ""
    created_at: str = ""
    manifest_version: int = MANIFEST_VERSION
    engine: EngineInfo | None = None

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def window_s(self) -> float:
        return self.window_samples / self.sample_rate

    @property
    def hop_s(self) -> float:
        return self.hop_samples / self.sample_rate

    @property
    def bonafide_index(self) -> int:
        return 1 - self.spoof_index

    @property
    def is_calibrated(self) -> bool:
        """Whether the spoof probabilities and the threshold of this model were calibrated on data.

        The file's ``calibration.calibrated`` when it has one; for files written before that field, False
        exactly for the exporter's uncalibrated placeholders (scale 1, bias 0, threshold 0.5), else True.
        """
        if self.calibration.calibrated is not None:
            return self.calibration.calibrated
        cal = self.calibration
        return not (cal.scale == 1.0 and cal.bias == 0.0 and self.threshold == 0.5)

    def to_metadata(self) -> dict[str, str]:
        """The ``spoof.*`` string map stored in ONNX ``metadata_props`` (without the engine block)."""
        out: dict[str, str] = {}
        for key, value in _plain_fields(self).items():
            if isinstance(value, str):
                out[KEY_PREFIX + key] = value
            elif isinstance(value, bool):  # pragma: no cover - no bool fields today
                out[KEY_PREFIX + key] = "true" if value else "false"
            elif isinstance(value, (int, float)):
                out[KEY_PREFIX + key] = repr(value)
            else:
                out[KEY_PREFIX + key] = json.dumps(value)
        return out

    def to_json_dict(self) -> dict[str, Any]:
        """The sidecar form: plain keys with JSON types, plus ``engine`` when present."""
        out = dict(_plain_fields(self))
        if self.engine is not None:
            eng = asdict(self.engine)
            for key in ("profile_min", "profile_opt", "profile_max", "build_flags"):
                eng[key] = list(eng[key])
            out["engine"] = eng
        return out


def _plain_fields(m: Manifest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(m):
        if f.name == "engine":
            continue
        value = getattr(m, f.name)
        if f.name == "label_order":
            value = list(value)
        elif f.name == "calibration":
            cal = value
            value = {"type": cal.type, "scale": cal.scale, "bias": cal.bias}
            if cal.calibrated is not None:
                value["calibrated"] = cal.calibrated
        out[f.name] = value
    return out


def _fail(key: str, expected: str, given: object) -> ModelLoadError:
    return ModelLoadError(f"manifest key '{KEY_PREFIX}{key}': expected {expected}, given {given!r}")


def _validate(m: Manifest) -> None:
    if m.manifest_version != MANIFEST_VERSION:
        raise _fail(
            "manifest_version", f"{MANIFEST_VERSION} (the version this spoofsdk reads)", m.manifest_version
        )
    if not _MIN_RATE <= m.sample_rate <= _MAX_RATE:
        raise _fail("sample_rate", f"an integer in [{_MIN_RATE}, {_MAX_RATE}] Hz", m.sample_rate)
    if m.window_samples <= 0:
        raise _fail("window_samples", "a positive integer", m.window_samples)
    if not 0 < m.hop_samples <= m.window_samples:
        raise _fail("hop_samples", f"an integer in [1, window_samples={m.window_samples}]", m.hop_samples)
    if not 1 <= m.min_samples <= m.window_samples:
        raise _fail("min_samples", f"an integer in [1, window_samples={m.window_samples}]", m.min_samples)
    if len(m.label_order) != 2 or len(set(m.label_order)) != 2 or not all(m.label_order):
        raise _fail(
            "label_order", "two distinct non-empty label names (the model has 2 logits)", m.label_order
        )
    if m.spoof_index not in (0, 1):
        raise _fail("spoof_index", "0 or 1 (an index into label_order)", m.spoof_index)
    cal = m.calibration
    if cal.type != "logistic":
        raise _fail("calibration", 'type "logistic"', cal.type)
    if not (math.isfinite(cal.scale) and cal.scale > 0):
        raise _fail("calibration", "a finite scale > 0", cal.scale)
    if not math.isfinite(cal.bias):
        raise _fail("calibration", "a finite bias", cal.bias)
    if cal.calibrated is not None and not isinstance(cal.calibrated, bool):
        raise _fail("calibration", "calibrated: true or false", cal.calibrated)
    if not (math.isfinite(m.threshold) and 0.0 < m.threshold < 1.0):
        raise _fail("threshold", "a spoof probability in (0, 1)", m.threshold)
    if m.precision not in PRECISIONS:
        raise _fail("precision", f"one of {PRECISIONS}", m.precision)
    if m.layers < 0:
        raise _fail("layers", "an integer >= 0", m.layers)
    if m.source_sha256 and not _SHA256_RE.match(m.source_sha256):
        raise _fail("source_sha256", "64 lower-case hex digits or an empty string", m.source_sha256)
    if m.created_at:
        try:
            datetime.fromisoformat(m.created_at.replace("Z", "+00:00"))
        except ValueError:
            raise _fail("created_at", "an ISO 8601 timestamp", m.created_at) from None
    if m.engine is not None:
        _validate_engine(m.engine, m)


def _validate_engine(e: EngineInfo, m: Manifest) -> None:
    def bad(key: str, expected: str, given: object) -> ModelLoadError:
        return ModelLoadError(f"engine sidecar key 'engine.{key}': expected {expected}, given {given!r}")

    if not e.tensorrt_version or not re.match(r"^\d+(\.\d+)*$", e.tensorrt_version):
        raise bad("tensorrt_version", 'a dotted version such as "10.3.0"', e.tensorrt_version)
    if not _SM_RE.match(e.compute_capability):
        raise bad(
            "compute_capability", 'a "major.minor" compute capability such as "8.7"', e.compute_capability
        )
    if e.hardware_compatibility_level not in ("none", "ampere_plus"):
        raise bad("hardware_compatibility_level", '"none" or "ampere_plus"', e.hardware_compatibility_level)
    for name, shape in (
        ("profile_min", e.profile_min),
        ("profile_opt", e.profile_opt),
        ("profile_max", e.profile_max),
    ):
        if len(shape) != 2 or any(int(v) < 1 for v in shape):
            raise bad(name, "a (batch, samples) pair of positive integers", shape)
    for axis in (0, 1):
        if not e.profile_min[axis] <= e.profile_opt[axis] <= e.profile_max[axis]:
            raise bad(
                "profile_opt", "min <= opt <= max on both axes", (e.profile_min, e.profile_opt, e.profile_max)
            )
    if e.profile_max[1] < m.window_samples:
        raise bad("profile_max", f"samples >= window_samples ({m.window_samples})", e.profile_max)


# ---------------------------------------------------------------------------------------------
# Parsing a raw key/value map (ONNX strings or sidecar JSON values) into a Manifest
# ---------------------------------------------------------------------------------------------
_REQUIRED = (
    "manifest_version",
    "sample_rate",
    "window_samples",
    "hop_samples",
    "min_samples",
    "label_order",
    "spoof_index",
    "calibration",
    "threshold",
    "precision",
)
_INT_KEYS = (
    "manifest_version",
    "sample_rate",
    "window_samples",
    "hop_samples",
    "min_samples",
    "spoof_index",
    "layers",
)
_FLOAT_KEYS = ("threshold",)
_STR_KEYS = ("precision", "backbone", "source_sha256", "exporter", "exporter_version", "created_at")


def _as_int(key: str, value: object) -> int:
    if isinstance(value, bool):
        raise _fail(key, "an integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _fail(key, "an integer", value)


def _as_float(key: str, value: object) -> float:
    if isinstance(value, bool):
        raise _fail(key, "a number", value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _fail(key, "a number", value)


def _as_json(key: str, value: object) -> object:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            raise _fail(key, "a JSON value", value) from None
    return value


def manifest_from_dict(raw: Mapping[str, object], *, source: str = "manifest") -> Manifest:
    """Validate a raw map into a :class:`Manifest`.

    Keys may carry the ``spoof.`` prefix (ONNX metadata) or not (sidecar JSON); values may be strings
    (ONNX) or JSON types (sidecar). Unknown ``spoof.*`` keys are ignored (forward compatible within a
    manifest version). Raises :class:`ModelLoadError` naming the first missing or invalid key.
    """
    plain: dict[str, object] = {}
    for key, value in raw.items():
        name = key[len(KEY_PREFIX) :] if key.startswith(KEY_PREFIX) else key
        plain[name] = value
    missing = [k for k in _REQUIRED if k not in plain]
    if missing:
        raise ModelLoadError(
            f"{source}: manifest key '{KEY_PREFIX}{missing[0]}' is missing"
            + (
                f" (also missing: {', '.join(KEY_PREFIX + k for k in missing[1:])})"
                if len(missing) > 1
                else ""
            )
            + "; a spoofsdk detector needs the contract-B manifest written by spoof-export "
            "(spoofsdk.manifest.write_onnx_manifest)"
        )
    version = _as_int("manifest_version", plain["manifest_version"])
    if version != MANIFEST_VERSION:
        raise _fail("manifest_version", f"{MANIFEST_VERSION} (the version this spoofsdk reads)", version)
    kwargs: dict[str, Any] = {}
    for key in _INT_KEYS:
        if key in plain:
            kwargs[key] = _as_int(key, plain[key])
    for key in _FLOAT_KEYS:
        kwargs[key] = _as_float(key, plain[key])
    for key in _STR_KEYS:
        if key in plain:
            value = plain[key]
            if not isinstance(value, str):
                raise _fail(key, "a string", value)
            kwargs[key] = value
    labels = _as_json("label_order", plain["label_order"])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise _fail(
            "label_order", 'a JSON list of label names, e.g. ["bonafide", "spoof"]', plain["label_order"]
        )
    kwargs["label_order"] = tuple(labels)
    cal = _as_json("calibration", plain["calibration"])
    if not isinstance(cal, dict) or not {"scale", "bias"} <= set(cal):
        raise _fail(
            "calibration", 'a JSON object {"type": "logistic", "scale": s, "bias": b}', plain["calibration"]
        )
    calibrated = cal.get("calibrated")
    if calibrated is not None and not isinstance(calibrated, bool):
        raise _fail("calibration", 'a JSON boolean "calibrated" (true or false)', calibrated)
    kwargs["calibration"] = Calibration(
        scale=_as_float("calibration", cal["scale"]),
        bias=_as_float("calibration", cal["bias"]),
        type=str(cal.get("type", "logistic")),
        calibrated=calibrated,
    )
    if "engine" in plain:
        kwargs["engine"] = _engine_from_dict(plain["engine"])
    return Manifest(**kwargs)


def _engine_from_dict(raw: object) -> EngineInfo:
    if not isinstance(raw, dict):
        raise ModelLoadError(f"engine sidecar key 'engine': expected a JSON object, given {raw!r:.200}")
    required = ("tensorrt_version", "compute_capability", "profile_min", "profile_opt", "profile_max")
    for key in required:
        if key not in raw:
            raise ModelLoadError(
                f"engine sidecar key 'engine.{key}' is missing; an engine sidecar needs {', '.join(required)}"
            )

    def shape(key: str) -> tuple[int, int]:
        v = raw[key]
        if (
            not isinstance(v, list)
            or len(v) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in v)
        ):
            raise ModelLoadError(f"engine sidecar key 'engine.{key}': expected [batch, samples], given {v!r}")
        return (int(v[0]), int(v[1]))

    flags = raw.get("build_flags", [])
    if not isinstance(flags, list) or not all(isinstance(x, str) for x in flags):
        raise ModelLoadError(
            f"engine sidecar key 'engine.build_flags': expected a list of strings, given {flags!r}"
        )
    strs = {}
    for key in (
        "tensorrt_version",
        "compute_capability",
        "gpu_name",
        "hardware_compatibility_level",
        "platform",
    ):
        v = raw.get(key, "" if key in ("gpu_name", "platform") else "none")
        if not isinstance(v, str):
            raise ModelLoadError(f"engine sidecar key 'engine.{key}': expected a string, given {v!r}")
        strs[key] = v
    vc = raw.get("version_compatible", False)
    if not isinstance(vc, bool):
        raise ModelLoadError(
            f"engine sidecar key 'engine.version_compatible': expected true/false, given {vc!r}"
        )
    return EngineInfo(
        tensorrt_version=strs["tensorrt_version"],
        compute_capability=strs["compute_capability"],
        gpu_name=strs["gpu_name"],
        profile_min=shape("profile_min"),
        profile_opt=shape("profile_opt"),
        profile_max=shape("profile_max"),
        build_flags=tuple(flags),
        hardware_compatibility_level=strs["hardware_compatibility_level"],
        version_compatible=vc,
        platform=strs["platform"],
    )


# ---------------------------------------------------------------------------------------------
# A protobuf-free reader of ONNX ModelProto.metadata_props
# ---------------------------------------------------------------------------------------------
# ModelProto field numbers (onnx/onnx.proto3): metadata_props = 14 (repeated StringStringEntryProto,
# whose key = 1 and value = 2). Everything else is skipped by wire type without being parsed.
_METADATA_PROPS_FIELD = 14


class _Truncated(Exception):
    pass


def _varint(buf: mmap.mmap | bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise _Truncated
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Truncated


def _fields(buf: mmap.mmap | bytes, pos: int, end: int) -> list[tuple[int, int, int, int]]:
    """(field number, wire type, start, stop) of each length-delimited field; others are skipped."""
    out = []
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise _Truncated
        if wire == 0:
            _, pos = _varint(buf, pos, end)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _Truncated
            out.append((number, wire, pos, pos + length))
            pos += length
        elif wire == 5:
            pos += 4
        else:  # groups (3, 4) and invalid wire types do not occur in ONNX
            raise _Truncated
        if pos > end:
            raise _Truncated
    return out


def read_onnx_metadata(path: str | PathLike[str]) -> dict[str, str]:
    """Return ``metadata_props`` of an ONNX file as a dict, without onnx or onnxruntime.

    Raises :class:`ModelLoadError` when the file is missing, empty, or not a well-formed protobuf.
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            size = p.stat().st_size
            if size == 0:
                raise ModelLoadError(f"{p}: the model file is empty (0 bytes)")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse_metadata(buf, size, p)
    except ModelLoadError:
        raise
    except OSError as exc:
        raise ModelLoadError(f"{p}: cannot read the model file ({exc.strerror or exc})") from exc


def _parse_metadata(buf: mmap.mmap, size: int, p: Path) -> dict[str, str]:
    try:
        top = _fields(buf, 0, size)
        props: dict[str, str] = {}
        has_graph = False
        for number, _wire, start, stop in top:
            if number == 7:  # ModelProto.graph
                has_graph = True
            if number != _METADATA_PROPS_FIELD:
                continue
            key = value = ""
            for sub, _w, s0, s1 in _fields(buf, start, stop):
                if sub == 1:
                    key = bytes(buf[s0:s1]).decode("utf-8")
                elif sub == 2:
                    value = bytes(buf[s0:s1]).decode("utf-8")
            props[key] = value
    except (_Truncated, UnicodeDecodeError):
        raise ModelLoadError(
            f"{p}: not a valid ONNX model (the protobuf is truncated or corrupt; {size} bytes)"
        ) from None
    if not has_graph:
        raise ModelLoadError(f"{p}: not a valid ONNX model (no graph found in {size} bytes)")
    return props


# ---------------------------------------------------------------------------------------------
# Readers and writers
# ---------------------------------------------------------------------------------------------
def engine_sidecar_path(engine_path: str | PathLike[str]) -> Path:
    """``NAME.trt`` -> ``NAME.trt.json`` (likewise for ``.engine`` and ``.plan``)."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def read_manifest(path: str | PathLike[str]) -> Manifest:
    """Read and validate the manifest of a detector file.

    ``path`` may be an ``.onnx`` model, a TensorRT engine (``.trt`` / ``.engine`` / ``.plan``; its
    sidecar ``PATH.json`` is read) or a sidecar ``.json`` itself.
    """
    p = Path(path)
    if p.suffix.lower() in ENGINE_SUFFIXES:
        return _read_sidecar(engine_sidecar_path(p), engine=p)
    if p.suffix.lower() == ".json":
        return _read_sidecar(p, engine=None)
    if not p.exists():
        raise ModelLoadError(f"{p}: model file not found")
    meta = read_onnx_metadata(p)
    spoof_keys = {k: v for k, v in meta.items() if k.startswith(KEY_PREFIX)}
    if not spoof_keys:
        raise ModelLoadError(
            f"{p}: the ONNX model has no spoofsdk manifest (no '{KEY_PREFIX}*' metadata_props; "
            f"found {sorted(meta)[:8] or 'none'}); write one with spoofsdk.manifest.write_onnx_manifest "
            "or export the model with spoof-export"
        )
    return manifest_from_dict(spoof_keys, source=str(p))


def _read_sidecar(sidecar: Path, *, engine: Path | None) -> Manifest:
    if engine is not None and not engine.exists():
        raise ModelLoadError(f"{engine}: engine file not found")
    if not sidecar.exists():
        raise ModelLoadError(
            f"{sidecar}: the engine's manifest sidecar is missing; a TensorRT engine NAME.trt needs "
            "NAME.trt.json (written by spoof-export / spoofsdk.manifest.write_engine_manifest)"
        )
    try:
        if sidecar.stat().st_size > _MAX_SIDECAR_BYTES:
            raise ModelLoadError(
                f"{sidecar}: expected a JSON manifest under 1 MiB, given {sidecar.stat().st_size} bytes"
            )
        raw = json.loads(sidecar.read_text(encoding="utf-8"))
    except ModelLoadError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelLoadError(f"{sidecar}: not a readable JSON manifest ({exc})") from None
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{sidecar}: expected a JSON object, given {type(raw).__name__}")
    manifest = manifest_from_dict(raw, source=str(sidecar))
    if engine is not None and manifest.engine is None:
        raise ModelLoadError(
            f"{sidecar}: manifest key 'engine' is missing (needed for the TensorRT engine {engine})"
        )
    return manifest


def _utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def write_onnx_manifest(model: Any, manifest: Manifest, *, output: str | PathLike[str] | None = None) -> Any:
    """Write ``manifest`` into an ONNX model's ``metadata_props`` (replacing any ``spoof.*`` keys).

    ``model`` is an ``onnx.ModelProto`` (modified in place and returned) or a path to an ``.onnx`` file
    (rewritten in place, or written to ``output``). The manifest is checked against the graph first:
    one input named ``audio`` of rank 2, one output named ``logits`` of shape ``[batch, 2]``.
    Needs the ``onnx`` package (the ``[export]`` extra); it is imported here only.
    """
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - onnx is in the dev environment
        raise ModelLoadError(
            "write_onnx_manifest needs the 'onnx' package: pip install 'spoofsdk[export]'"
        ) from exc
    if not isinstance(manifest, Manifest):
        raise InvalidArgumentError(
            f"manifest: expected a spoofsdk.manifest.Manifest, given {type(manifest).__name__}"
        )
    path: Path | None = None
    if isinstance(model, onnx.ModelProto):
        proto = model
    else:
        path = Path(model)
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise ModelLoadError(f"{path}: cannot load the ONNX model ({exc})") from exc
    check_graph_signature(
        [
            (i.name, _proto_dims(i))
            for i in proto.graph.input
            if i.name not in {t.name for t in proto.graph.initializer}
        ],
        [(o.name, _proto_dims(o)) for o in proto.graph.output],
        source=str(path or "model"),
    )
    if not manifest.created_at:
        manifest = replace(manifest, created_at=_utc_now())
    keep = [p for p in proto.metadata_props if not p.key.startswith(KEY_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in manifest.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = value
    if path is not None:
        onnx.save(proto, str(output or path))
    return proto


def _proto_dims(value_info: Any) -> list[int | str | None]:
    dims: list[int | str | None] = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def check_graph_signature(
    inputs: list[tuple[str, list[int | str | None]]],
    outputs: list[tuple[str, list[int | str | None]]],
    *,
    source: str,
) -> None:
    """Check a graph against contract B: input ``audio [batch, samples]``, output ``logits [batch, 2]``.

    Dimensions are ints (fixed), strings or ``None`` (dynamic), or ``-1`` (TensorRT dynamic).
    """
    if len(inputs) != 1 or inputs[0][0] != "audio":
        raise ModelLoadError(
            f"{source}: the manifest disagrees with the graph: expected one input named 'audio', "
            f"given inputs {[name for name, _ in inputs]}"
        )
    if len(inputs[0][1]) != 2:
        raise ModelLoadError(
            f"{source}: the manifest disagrees with the graph: expected input 'audio' of rank 2 "
            f"[batch, samples], given rank {len(inputs[0][1])} {inputs[0][1]}"
        )
    names = [name for name, _ in outputs]
    if "logits" not in names:
        raise ModelLoadError(
            f"{source}: the manifest disagrees with the graph: expected an output named 'logits', given "
            f"{names}"
        )
    dims = dict(outputs)["logits"]
    if len(dims) != 2 or (isinstance(dims[1], int) and dims[1] not in (2, -1)):
        raise ModelLoadError(
            f"{source}: the manifest disagrees with the graph: expected output 'logits' of shape "
            f"[batch, 2], given {dims}"
        )


def write_engine_manifest(
    engine_path: str | PathLike[str],
    manifest: Manifest,
    engine: EngineInfo,
) -> Path:
    """Write ``NAME.trt.json`` next to a TensorRT engine; returns the sidecar path."""
    if not isinstance(manifest, Manifest) or not isinstance(engine, EngineInfo):
        raise InvalidArgumentError(
            "write_engine_manifest: expected (path, Manifest, EngineInfo), "
            f"given ({type(manifest).__name__}, {type(engine).__name__})"
        )
    full = replace(manifest, engine=engine, created_at=manifest.created_at or _utc_now())
    sidecar = engine_sidecar_path(engine_path)
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(json.dumps(full.to_json_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(sidecar)
    return sidecar


# ---------------------------------------------------------------------------------------------
# Engine compatibility (checked before deserialising an engine)
# ---------------------------------------------------------------------------------------------
def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v))


def check_engine_compatibility(
    engine: EngineInfo,
    *,
    tensorrt_version: str,
    compute_capability: str,
    gpu_name: str = "",
    source: str = "engine",
) -> None:
    """Raise :class:`EngineIncompatibleError` unless an engine built as ``engine`` runs here.

    Rules (TensorRT 10 portability): the TensorRT version must equal the build version, or, for a
    ``version_compatible`` engine, have the same major version and be >= the build version. The GPU
    compute capability must equal the build one, or, for ``hardware_compatibility_level ==
    "ampere_plus"``, be >= 8.0.
    """
    built_v, run_v = _version_tuple(engine.tensorrt_version), _version_tuple(tensorrt_version)
    if engine.version_compatible:
        ok_v = bool(run_v) and run_v[0] == built_v[0] and run_v >= built_v
    else:
        # TensorRT serialises major.minor.patch; the build number is not part of compatibility.
        ok_v = run_v[:3] == built_v[:3]
    if not ok_v:
        raise EngineIncompatibleError(
            f"{source}: built for TensorRT {engine.tensorrt_version}"
            + (" (version-compatible)" if engine.version_compatible else "")
            + f", running TensorRT {tensorrt_version}; rebuild the engine on this machine "
            "(spoof-export --tensorrt) or use the .onnx model"
        )
    built_sm, run_sm = _version_tuple(engine.compute_capability), _version_tuple(compute_capability)
    if engine.hardware_compatibility_level == "ampere_plus":
        ok_sm = run_sm >= (8, 0)
        wanted = "compute capability >= 8.0 (hardware-compatible engine)"
    else:
        ok_sm = run_sm == built_sm
        wanted = f"compute capability {engine.compute_capability}"
    if not ok_sm:
        built_for = f"{wanted}" + (f" ({engine.gpu_name})" if engine.gpu_name else "")
        running = f"compute capability {compute_capability}" + (f" ({gpu_name})" if gpu_name else "")
        raise EngineIncompatibleError(
            f"{source}: built for {built_for}, running on {running}; rebuild the engine on this GPU "
            "or use the .onnx model"
        )
