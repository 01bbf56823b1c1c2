"""Remote inference on a Triton Inference Server: ``Detector("grpc://host:8001/MODEL")`` or ``"http://..."``.

The model is one that ``spoof-export --triton DIR`` wrote (``NAME_python`` for the Python backend,
``NAME_onnx`` / ``NAME_trt`` for a full Triton install): ``audio`` FP32 ``[-1]`` with Triton's batch axis,
``logits`` FP32 ``[2]``, and the contract-B manifest as ``spoof.*`` parameters of its config, which is where
this backend reads it from (the runtime never guesses: a missing or invalid key is a ``ModelLoadError``).

Rules:

* ``tritonclient`` is an optional extra (``pip install 'spoofsdk[triton]'``), imported only here and only
  when a URL is given; without it :class:`~spoofsdk.errors.BackendUnavailableError` names the package.
* One client per backend for gRPC (its channel is thread-safe and multiplexes every request over one
  connection) and one per calling thread for HTTP (tritonclient's HTTP client is not thread-safe); each keeps
  its connection open between requests.
* Every request has a deadline (``RemoteOptions.timeout_s``): past it
  :class:`~spoofsdk.errors.DeadlineExceededError`, not retried (the server may still be working on it).
* Connection failures are retried ``retries`` times with exponential backoff and jitter (``backoff_s``
  doubling up to ``max_backoff_s``); then :class:`~spoofsdk.errors.ServerUnavailableError`. The gRPC
  channel's own reconnect backoff is capped at ``max_backoff_s`` too, so a restarted server is used again
  within about that long.
* A model that is missing or not ready: :class:`~spoofsdk.errors.ModelNotReadyError`; a request the server
  rejects for its shape, or logits of the wrong shape: :class:`~spoofsdk.errors.ShapeMismatchError`.
* There is never a fallback to local inference: a failed request raises.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from spoofsdk.backends.base import InputLimits
from spoofsdk.errors import (
    BackendUnavailableError,
    DeadlineExceededError,
    InvalidArgumentError,
    ModelLoadError,
    ModelNotReadyError,
    RemoteInferenceError,
    ServerUnavailableError,
    ShapeMismatchError,
)
from spoofsdk.manifest import KEY_PREFIX, Manifest, manifest_from_dict

__all__ = ["REMOTE_SCHEMES", "RemoteOptions", "TritonBackend", "is_remote_url", "parse_remote_url"]

#: URL schemes that select this backend.
REMOTE_SCHEMES = ("grpc", "http", "https")
INPUT_NAME = "audio"
OUTPUT_NAME = "logits"
_INSTALL_HINT = "pip install 'spoofsdk[triton]' (the tritonclient[grpc,http] package)"
_T = TypeVar("_T")


@dataclass(frozen=True)
class RemoteOptions:
    """Client settings of a remote (Triton) detector.

    ``timeout_s``: deadline of one inference request. ``connect_timeout_s``: deadline of the metadata calls
    made when the detector is created, and the HTTP connect timeout. ``retries``: extra attempts after a
    connection failure (0 = none), waiting ``backoff_s`` x 2^k (capped at ``max_backoff_s``, times a random
    factor in [0.5, 1]) between them. ``model_version``: "" for the server's policy (latest ready).
    """

    timeout_s: float = 5.0
    connect_timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 0.05
    max_backoff_s: float = 1.0
    model_version: str = ""

    def __post_init__(self) -> None:
        for name in ("timeout_s", "connect_timeout_s", "max_backoff_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
                raise InvalidArgumentError(f"{name}: expected seconds in (0, 3600], given {value!r}")
        if isinstance(self.backoff_s, bool) or not isinstance(self.backoff_s, (int, float)):
            raise InvalidArgumentError(f"backoff_s: expected seconds >= 0, given {self.backoff_s!r}")
        if not 0 <= self.backoff_s <= self.max_backoff_s:
            raise InvalidArgumentError(
                f"backoff_s: expected 0 <= backoff_s <= max_backoff_s ({self.max_backoff_s}), "
                f"given {self.backoff_s!r}"
            )
        if (
            isinstance(self.retries, bool)
            or not isinstance(self.retries, int)
            or not 0 <= self.retries <= 100
        ):
            raise InvalidArgumentError(f"retries: expected an integer 0..100, given {self.retries!r}")
        if not isinstance(self.model_version, str) or not (
            self.model_version == "" or self.model_version.isdigit()
        ):
            raise InvalidArgumentError(
                "model_version: expected '' (server's choice) or a version number, "
                f"given {self.model_version!r}"
            )


def is_remote_url(path: object) -> bool:
    """Whether ``path`` is a ``grpc://``, ``http://`` or ``https://`` model URL (a string, not a Path)."""
    return isinstance(path, str) and path.split("://", 1)[0].lower() in REMOTE_SCHEMES and "://" in path


def parse_remote_url(url: str) -> tuple[str, str, str, str]:
    """``scheme://host:port/MODEL[/VERSION]`` -> ``(scheme, "host:port", model, version)``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    example = "grpc://host:8001/MODEL or http://host:8000/MODEL"
    if scheme not in REMOTE_SCHEMES:
        raise InvalidArgumentError(f"model URL: expected {example}, given {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise InvalidArgumentError(f"model URL: expected a port 1..65535, given {url!r}") from None
    if not parts.hostname or port is None:
        raise InvalidArgumentError(f"model URL: expected a host and a port ({example}), given {url!r}")
    if parts.query or parts.fragment:
        raise InvalidArgumentError(f"model URL: expected no query or fragment ({example}), given {url!r}")
    segments = [s for s in parts.path.split("/") if s]
    if not 1 <= len(segments) <= 2:
        raise InvalidArgumentError(
            f"model URL: expected the model name as the path ({example}[/VERSION]), given {url!r}"
        )
    version = segments[1] if len(segments) == 2 else ""
    if version and not version.isdigit():
        raise InvalidArgumentError(
            f"model URL: expected a numeric model version, given {version!r} in {url!r}"
        )
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return scheme, f"{host}:{port}", segments[0], version


def _import_client(protocol: str) -> Any:
    try:
        if protocol == "grpc":
            import tritonclient.grpc as client
        else:
            import tritonclient.http as client
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend 'triton': remote models need tritonclient with {protocol} support, which is not "
            f"installed ({exc}); {_INSTALL_HINT}"
        ) from None
    return client


class _Failure:
    """A tritonclient / transport exception sorted into what it means for the caller."""

    UNREACHABLE = "unreachable"
    DEADLINE = "deadline"
    NOT_FOUND = "not_found"
    NOT_READY = "not_ready"
    INVALID = "invalid"
    OTHER = "other"

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.kind = self._classify(exc)

    @staticmethod
    def _classify(exc: BaseException) -> str:
        status = ""
        status_fn = getattr(exc, "status", None)
        if callable(status_fn):
            status = str(status_fn() or "")
        text = str(exc).lower()
        if "deadline" in status.lower() or "deadline exceeded" in text:
            return _Failure.DEADLINE
        if isinstance(exc, TimeoutError) or type(exc).__name__ in ("timeout", "Timeout"):
            return _Failure.DEADLINE
        if "not ready" in text or "no available versions" in text or "unavailable model" in text:
            return _Failure.NOT_READY
        if "unknown model" in text or ("not found" in text and "model" in text) or status == "404":
            return _Failure.NOT_FOUND
        if status.endswith("UNAVAILABLE") or status.endswith("CANCELLED") or isinstance(exc, ConnectionError):
            return _Failure.UNREACHABLE
        if isinstance(exc, OSError) and not status:  # socket errors of the HTTP client
            return _Failure.UNREACHABLE
        if status.endswith("INVALID_ARGUMENT") or status == "400":
            return _Failure.INVALID
        if "failed to connect" in text or "connection refused" in text or "connection reset" in text:
            return _Failure.UNREACHABLE
        return _Failure.OTHER

    def message(self) -> str:
        return str(self.exc).strip() or type(self.exc).__name__


class TritonBackend:
    """Inference on a model served by Triton; safe to call from many threads (see the module docstring)."""

    def __init__(self, url: str, options: RemoteOptions | None = None) -> None:
        self._url = url
        self._options = options or RemoteOptions()
        scheme, address, model, version = parse_remote_url(url)
        self._protocol = "grpc" if scheme == "grpc" else "http"
        self._ssl = scheme == "https"
        self._address = address
        self._model = model
        self._version = version or self._options.model_version
        self._client_mod = _import_client(self._protocol)
        self._local = threading.local()
        self._grpc_client: Any = None
        self._grpc_lock = threading.Lock()
        self._closed = False
        load_timeout = self._options.connect_timeout_s
        try:
            config = self._call(self._load_config, what="model config", timeout_s=load_timeout)
        finally:
            if load_timeout != self._options.timeout_s:
                self._drop_http_client(load_timeout)  # the metadata connection's timeout is not the requests'
        self._manifest, self._limits, self._served_by = self._check_config(config)

    # ------------------------------------------------------------------ clients
    def _client(self, timeout_s: float) -> Any:
        """The gRPC client, or this thread's HTTP client whose network timeout is ``timeout_s``."""
        if self._closed:
            raise RemoteInferenceError(f"{self._url}: the detector was closed")
        if self._protocol == "grpc":
            with self._grpc_lock:
                if self._grpc_client is None:
                    cap = int(self._options.max_backoff_s * 1000)
                    limit = 2**31 - 1
                    self._grpc_client = self._client_mod.InferenceServerClient(
                        self._address,
                        ssl=False,
                        channel_args=[
                            ("grpc.max_send_message_length", limit),
                            ("grpc.max_receive_message_length", limit),
                            # A restarted server is reconnected within max_backoff_s, not gRPC's 120 s cap.
                            ("grpc.initial_reconnect_backoff_ms", min(100, cap)),
                            ("grpc.min_reconnect_backoff_ms", min(100, cap)),
                            ("grpc.max_reconnect_backoff_ms", cap),
                        ],
                    )
                return self._grpc_client
        clients: dict[float, Any] = self._local.__dict__.setdefault("clients", {})
        client = clients.get(timeout_s)
        if client is None:
            client = self._client_mod.InferenceServerClient(
                self._address,
                ssl=self._ssl,
                connection_timeout=self._options.connect_timeout_s,
                network_timeout=timeout_s,  # tritonclient's HTTP deadline is per connection
            )
            clients[timeout_s] = client
        return client

    def _drop_http_client(self, timeout_s: float | None = None) -> None:
        # A failed HTTP connection is not reused: the next attempt opens a fresh one.
        clients: dict[float, Any] = self._local.__dict__.get("clients", {})
        for key in [k for k in clients if timeout_s is None or k == timeout_s]:
            with contextlib.suppress(Exception):  # closing a broken connection
                clients.pop(key).close()

    def _drop_grpc_client(self, failed: Any) -> None:
        """A channel that could not reach the server is replaced, so the next attempt connects at once:
        gRPC fails a request on a channel in its reconnect backoff with the last connection error, without
        trying, so a server restarted during that backoff is found only after it (seen once in CI: the
        three attempts of the first push after a restart, within 0.11 s, all 'connection refused' while
        the server was up). Only the client that failed is dropped (another thread may have replaced it
        already); its calls in flight are failing anyway."""
        with self._grpc_lock:
            if self._grpc_client is not failed:
                return
            self._grpc_client = None
        with contextlib.suppress(Exception):  # closing a channel to a dead server
            failed.close()

    # ------------------------------------------------------------------ calls with retries
    def _call(self, fn: Callable[[Any, float], _T], *, what: str, timeout_s: float) -> _T:
        opts = self._options
        attempts = 1 + opts.retries
        t0 = time.monotonic()
        last: _Failure | None = None
        for k in range(attempts):
            client = None
            try:
                client = self._client(timeout_s)
                return fn(client, timeout_s)
            except RemoteInferenceError:
                raise
            except Exception as exc:
                failure = _Failure(exc)
                if self._protocol == "http":
                    self._drop_http_client(timeout_s)
                elif failure.kind == _Failure.UNREACHABLE and client is not None:
                    self._drop_grpc_client(client)
                if failure.kind == _Failure.DEADLINE:
                    raise DeadlineExceededError(
                        f"{self._url}: {what}: no answer within the deadline of {timeout_s:g} s "
                        f"({failure.message()}); not retried"
                    ) from None
                if failure.kind == _Failure.NOT_FOUND:
                    raise ModelNotReadyError(
                        f"{self._url}: model {self._model!r} is not on the server ({failure.message()})"
                        + self._models_hint()
                    ) from None
                if failure.kind == _Failure.INVALID:
                    raise ShapeMismatchError(
                        f"{self._url}: {what}: the server rejected the request ({failure.message()})"
                    ) from None
                if failure.kind == _Failure.OTHER:
                    raise RemoteInferenceError(f"{self._url}: {what} failed: {failure.message()}") from None
                last = failure  # unreachable or not ready: retry after a backoff
                if k + 1 < attempts:
                    delay = min(opts.max_backoff_s, opts.backoff_s * 2**k) * random.uniform(0.5, 1.0)
                    time.sleep(delay)
        assert last is not None
        elapsed = time.monotonic() - t0
        if last.kind == _Failure.NOT_READY:
            raise ModelNotReadyError(
                f"{self._url}: model {self._model!r} is not ready after {attempts} attempts over "
                f"{elapsed:.2f} s ({last.message()})"
            )
        raise ServerUnavailableError(
            f"{self._url}: {what}: server unreachable after {attempts} attempts over {elapsed:.2f} s "
            f"({last.message()})"
        )

    def _models_hint(self) -> str:
        try:
            client = self._client(self._options.connect_timeout_s)
            if self._protocol == "grpc":
                index = client.get_model_repository_index(
                    as_json=True, client_timeout=self._options.connect_timeout_s
                ).get("models", [])
            else:
                index = client.get_model_repository_index()
            names = sorted({str(m.get("name")) for m in index})
        except Exception:
            return ""
        return f"; models on the server: {names or 'none'}"

    def _load_config(self, client: Any, timeout_s: float) -> dict[str, Any]:
        if self._protocol == "grpc":
            ready = client.is_model_ready(self._model, self._version, client_timeout=timeout_s)
        else:
            ready = client.is_model_ready(self._model, self._version)
        if not ready:
            hint = self._models_hint()
            if hint and repr(self._model) not in hint.replace('"', "'"):
                raise ModelNotReadyError(f"{self._url}: model {self._model!r} is not on the server{hint}")
            raise ModelNotReadyError(
                f"{self._url}: model {self._model!r}"
                + (f" version {self._version}" if self._version else "")
                + " is not ready on the server (loading, unloaded or failed to load: see the server's log)"
            )
        if self._protocol == "grpc":
            raw = client.get_model_config(self._model, self._version, as_json=True, client_timeout=timeout_s)
            config = raw.get("config", {})
        else:
            config = client.get_model_config(self._model, self._version)
        if not isinstance(config, dict):
            raise ModelLoadError(
                f"{self._url}: expected the model config as an object, given {config!r:.200}"
            )
        return config

    # ------------------------------------------------------------------ config -> manifest, limits
    def _check_config(self, config: Mapping[str, Any]) -> tuple[Manifest, InputLimits, str]:
        src = f"{self._url} (model config)"
        params = config.get("parameters") or {}
        spoof = {
            str(k): str(v.get("string_value", "")) if isinstance(v, dict) else str(v)
            for k, v in params.items()
            if str(k).startswith(KEY_PREFIX)
        }
        if not spoof:
            raise ModelLoadError(
                f"{src}: the model has no spoofsdk manifest (no '{KEY_PREFIX}*' parameters in its config; "
                f"found {sorted(params)[:8] or 'none'}); serve a repository written by spoof-export --triton"
            )
        manifest = manifest_from_dict(spoof, source=src)
        max_batch = int(config.get("max_batch_size", 0) or 0)
        if max_batch < 1:
            raise ModelLoadError(
                f"{src}: expected max_batch_size >= 1 (the batch axis is Triton's, as spoof-export writes "
                f"it), given {max_batch}"
            )
        inputs = config.get("input") or []
        outputs = config.get("output") or []
        audio = [i for i in inputs if i.get("name") == INPUT_NAME]
        if len(inputs) != 1 or not audio:
            raise ModelLoadError(
                f"{src}: expected one input {INPUT_NAME!r}, given {[i.get('name') for i in inputs]}"
            )
        dims = [int(d) for d in audio[0].get("dims", [])]
        if audio[0].get("data_type") != "TYPE_FP32" or len(dims) != 1:
            raise ModelLoadError(
                f"{src}: expected input {INPUT_NAME!r} TYPE_FP32 dims [-1] (samples), given "
                f"{audio[0].get('data_type')} dims {dims}"
            )
        logits = [o for o in outputs if o.get("name") == OUTPUT_NAME]
        out_dims = [int(d) for d in logits[0].get("dims", [])] if logits else []
        if not logits or logits[0].get("data_type") != "TYPE_FP32" or out_dims != [2]:
            raise ModelLoadError(
                f"{src}: expected output {OUTPUT_NAME!r} TYPE_FP32 dims [2], given "
                + (
                    f"{logits[0].get('data_type')} dims {out_dims}"
                    if logits
                    else f"outputs {[o.get('name') for o in outputs]}"
                )
            )
        fixed = dims[0] if dims[0] > 0 else None
        if fixed is not None and fixed < manifest.min_samples:
            raise ModelLoadError(
                f"{src}: input {INPUT_NAME!r} takes {fixed} samples, fewer than the manifest's min_samples "
                f"{manifest.min_samples}"
            )
        limits = InputLimits(max_batch=max_batch, min_samples=fixed or 1, max_samples=fixed)
        served_by = str(config.get("backend") or config.get("platform") or "?")
        return manifest, limits, served_by

    # ------------------------------------------------------------------ Backend protocol
    @property
    def name(self) -> str:
        return "triton"

    @property
    def detail(self) -> str:
        return (
            f"Triton {self._protocol} {self._address} model {self._model!r}"
            f"{' version ' + self._version if self._version else ''} ({self._served_by}, "
            f"max batch {self._limits.max_batch}, timeout {self._options.timeout_s:g} s, "
            f"retries {self._options.retries})"
        )

    @property
    def limits(self) -> InputLimits:
        return self._limits

    @property
    def manifest(self) -> Manifest:
        """The manifest read from the server's model config."""
        return self._manifest

    @property
    def url(self) -> str:
        return self._url

    @property
    def options(self) -> RemoteOptions:
        return self._options

    def _infer(self, batch: npt.NDArray[np.float32]) -> Callable[[Any, float], npt.NDArray[np.float32]]:
        mod = self._client_mod

        def call(client: Any, timeout_s: float) -> npt.NDArray[np.float32]:
            inp = mod.InferInput(INPUT_NAME, list(batch.shape), "FP32")
            if self._protocol == "grpc":
                inp.set_data_from_numpy(batch)
                result = client.infer(
                    self._model,
                    [inp],
                    model_version=self._version,
                    outputs=[mod.InferRequestedOutput(OUTPUT_NAME)],
                    client_timeout=timeout_s,
                )
            else:
                inp.set_data_from_numpy(batch, binary_data=True)
                result = client.infer(
                    self._model,
                    [inp],
                    model_version=self._version,
                    outputs=[mod.InferRequestedOutput(OUTPUT_NAME, binary_data=True)],
                )
            out = result.as_numpy(OUTPUT_NAME)
            if out is None:
                raise ShapeMismatchError(f"{self._url}: the response has no output {OUTPUT_NAME!r}")
            return np.asarray(out, dtype=np.float32)

        return call

    def run(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if batch.ndim != 2 or batch.dtype != np.float32:
            raise ShapeMismatchError(
                f"{self._url}: expected a float32 batch [batch, samples], given {batch.dtype} {batch.shape}"
            )
        n = int(batch.shape[0])
        cap = self._limits.max_batch or n
        if n > cap:  # the server rejects batches over its max_batch_size: split them
            return np.concatenate([self.run(batch[k : k + cap]) for k in range(0, n, cap)])
        out = self._call(self._infer(batch), what="inference", timeout_s=self._options.timeout_s)
        if out.shape != (n, 2):
            raise ShapeMismatchError(
                f"{self._url}: expected logits of shape ({n}, 2) for a batch of {n}, given {out.shape}"
            )
        return out

    def close(self) -> None:
        self._closed = True
        with self._grpc_lock:
            client, self._grpc_client = self._grpc_client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        self._drop_http_client()


def coerce_remote_options(value: object) -> RemoteOptions:
    if value is None:
        return RemoteOptions()
    if isinstance(value, RemoteOptions):
        return value
    if isinstance(value, dict):
        try:
            return RemoteOptions(**value)
        except TypeError as exc:
            raise InvalidArgumentError(f"remote_options: {exc}") from None
    raise InvalidArgumentError(
        f"remote_options: expected RemoteOptions, a dict of its fields or None, given {type(value).__name__}"
    )
