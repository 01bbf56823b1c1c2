"""Remote (Triton) detectors without a server: URL and option checks, the missing extra, no silent fallback,
an unreachable server after bounded retries. The lane with a real tritonserver is tests/triton/."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from spoofsdk import (
    BackendUnavailableError,
    Detector,
    InvalidArgumentError,
    RemoteOptions,
    ServerUnavailableError,
)
from spoofsdk.backends.triton import is_remote_url, parse_remote_url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_url_parsing() -> None:
    assert parse_remote_url("grpc://127.0.0.1:8001/det_python") == (
        "grpc",
        "127.0.0.1:8001",
        "det_python",
        "",
    )
    assert parse_remote_url("http://tier.local:8000/det/3") == ("http", "tier.local:8000", "det", "3")
    assert parse_remote_url("grpc://[::1]:8001/m") == ("grpc", "[::1]:8001", "m", "")
    assert is_remote_url("grpc://h:1/m")
    assert is_remote_url("HTTPS://h:1/m")
    assert not is_remote_url("model.onnx")
    assert not is_remote_url(Path("grpc://h:1/m"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("grpc://127.0.0.1/m", "expected a host and a port"),
        ("grpc://127.0.0.1:8001", "expected the model name as the path"),
        ("grpc://127.0.0.1:8001/a/b/c", "expected the model name as the path"),
        ("grpc://127.0.0.1:8001/m/latest", "expected a numeric model version, given 'latest'"),
        ("http://127.0.0.1:99999/m", "expected a port 1..65535"),
        ("grpc://127.0.0.1:8001/m?x=1", "expected no query or fragment"),
    ],
)
def test_bad_urls_are_argument_errors(url: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        Detector(url)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout_s": 0}, r"timeout_s: expected seconds in \(0, 3600\], given 0"),
        ({"retries": -1}, "retries: expected an integer 0..100, given -1"),
        ({"retries": 1.5}, "retries: expected an integer 0..100, given 1.5"),
        ({"backoff_s": 2.0, "max_backoff_s": 1.0}, "backoff_s: expected 0 <= backoff_s <= max_backoff_s"),
        ({"model_version": "v1"}, "model_version: expected '' .* or a version number, given 'v1'"),
    ],
)
def test_remote_options_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        RemoteOptions(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=message):
        Detector("grpc://127.0.0.1:1/m", remote_options=kwargs)
    with pytest.raises(InvalidArgumentError, match=r"remote_options: .*unexpected keyword"):
        Detector("grpc://127.0.0.1:1/m", remote_options={"deadline": 1})


def test_backend_and_path_must_agree(tiny_model: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="backend 'triton': runs remote models only"):
        Detector(tiny_model, backend="triton")
    with pytest.raises(
        BackendUnavailableError,
        match=r"backend 'cpu': grpc://127.0.0.1:1/m is a remote model, which runs only",
    ):
        Detector("grpc://127.0.0.1:1/m", backend="cpu")


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_missing_tritonclient_names_the_extra(monkeypatch: pytest.MonkeyPatch, scheme: str) -> None:
    monkeypatch.setitem(sys.modules, f"tritonclient.{scheme}", None)  # import raises ImportError
    with pytest.raises(
        BackendUnavailableError, match=r"need tritonclient .*pip install 'spoofsdk\[triton\]'"
    ):
        Detector(f"{scheme}://127.0.0.1:1/m")


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_unreachable_server_after_bounded_retries(scheme: str) -> None:
    pytest.importorskip(f"tritonclient.{scheme}", reason="the triton extra is not installed")
    port = _free_port()  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(ServerUnavailableError, match=r"server unreachable after 3 attempts") as err:
        Detector(
            f"{scheme}://127.0.0.1:{port}/m",
            remote_options={"retries": 2, "backoff_s": 0.05, "max_backoff_s": 0.1, "connect_timeout_s": 2},
        )
    assert isinstance(err.value, BackendUnavailableError)  # an unreachable tier is an unavailable backend
    assert time.monotonic() - t0 < 10


def test_an_unreachable_grpc_channel_is_replaced_before_the_next_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """gRPC fails a request on a channel in its reconnect backoff without trying to connect, so a server that
    came back during the backoff would stay 'unreachable' for the remaining retries: every attempt after a
    failure to connect gets a new channel, and the failed one is closed."""
    grpc_client = pytest.importorskip("tritonclient.grpc", reason="the triton extra is not installed")
    real = grpc_client.InferenceServerClient
    made: list[object] = []
    closed: list[object] = []

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

        def close(self) -> None:
            closed.append(self)
            super().close()

    monkeypatch.setattr(grpc_client, "InferenceServerClient", Counting)
    port = _free_port()  # nothing listens there
    with pytest.raises(ServerUnavailableError, match=r"server unreachable after 3 attempts"):
        Detector(
            f"grpc://127.0.0.1:{port}/m",
            remote_options={"retries": 2, "backoff_s": 0.01, "max_backoff_s": 0.05, "connect_timeout_s": 2},
        )
    assert len(made) == 3
    assert set(map(id, closed)) >= set(map(id, made[:2]))
