"""Start and stop the ``tritonserver`` bundled in the ``nvidia-pytriton`` wheel.

The wheel ships the real Triton Inference Server binary with its Python backend and one backend stub per
Python version (3.8-3.13), for Linux x86-64. :func:`start_tritonserver` lays out a backend directory for the
running Python (the backend library, its utilities and the matching stub, copied into a work directory, as
pytriton itself does), sets the library path (the wheel's own libraries and this Python's
``libpython``) and the stub's Python path (this interpreter's ``sys.path``, so ``model.py`` imports the
same numpy and onnxruntime), starts the server in a process group of its own and waits until it reports
ready. :meth:`TritonServerProcess.stop` ends the server and the stub processes it started.

Nothing here imports ``pytriton`` itself (its Python API pins numpy < 2); only its files are used.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = [
    "TritonDistribution",
    "TritonServerError",
    "TritonServerProcess",
    "find_tritonserver",
    "start_tritonserver",
]

INSTALL_HINT = (
    "pip install --no-deps nvidia-pytriton==0.7.0 (the wheel bundles tritonserver for Linux x86-64)"
)


class TritonServerError(RuntimeError):
    """The bundled tritonserver cannot be found, cannot run here, or did not become ready."""


@dataclass(frozen=True)
class TritonDistribution:
    """Where the wheel's files are: server binary, Python backend, this Python's stub, libraries."""

    binary: Path
    python_backend: Path
    stub: Path
    libs: Path


def find_tritonserver() -> TritonDistribution:
    """Locate the wheel's ``tritonserver`` and the Python-backend stub for this Python, or say why not."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise TritonServerError(
            f"the nvidia-pytriton wheel's tritonserver runs on Linux x86-64 only, this is "
            f"{sys.platform} {platform.machine()}"
        )
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonServerError(f"the nvidia-pytriton wheel is not installed ({INSTALL_HINT})")
    root = Path(next(iter(spec.submodule_search_locations)))
    dist = root / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = TritonDistribution(
        binary=dist / "bin" / "tritonserver",
        python_backend=dist / "backends" / "python",
        stub=dist / "python_backend_stubs" / version / "triton_python_backend_stub",
        libs=root.parent / "nvidia_pytriton.libs",
    )
    for what, path in (
        ("tritonserver binary", found.binary),
        ("Python backend", found.python_backend / "libtriton_python.so"),
        (f"Python-backend stub for Python {version}", found.stub),
        ("bundled libraries", found.libs),
    ):
        if not path.exists():
            raise TritonServerError(
                f"the nvidia-pytriton wheel has no {what} ({path} is missing; {INSTALL_HINT})"
            )
    return found


def prepare_backends(dist: TritonDistribution, workdir: Path) -> Path:
    """``workdir/backends/python`` with the backend library, its utilities and this Python's stub."""
    target = workdir / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    for src in dist.python_backend.iterdir():
        if src.is_file():
            shutil.copy2(src, target / src.name)
    shutil.copy2(dist.stub, target / "triton_python_backend_stub")
    return workdir / "backends"


def server_environment(dist: TritonDistribution) -> dict[str, str]:
    """The environment of the server and its stubs: library path and the running Python's import path."""
    env = dict(os.environ)
    libdirs = [str(dist.libs)]
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and any(Path(libdir).glob("libpython3*.so*")):
        libdirs.insert(0, libdir)  # the stub links libpython3.X.so: this interpreter's, not the system's
    if env.get("LD_LIBRARY_PATH"):
        libdirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libdirs)
    env["PYTHONHOME"] = sys.base_prefix
    paths = [p for p in sys.path if p and Path(p).is_dir()]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


class TritonServerProcess:
    """A running tritonserver (its own process group); :meth:`stop` ends it and every stub it started."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        *,
        host: str,
        grpc_port: int,
        http_port: int,
        metrics_port: int,
        workdir: Path,
        log_path: Path | None,
        own_workdir: bool,
    ) -> None:
        self.proc = proc
        self.host = host
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.metrics_port = metrics_port
        self.workdir = workdir
        self.log_path = log_path
        self._own_workdir = own_workdir

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ready(self, timeout_s: float = 1.0) -> bool:
        """Whether ``/v2/health/ready`` answers 200 (all models loaded and ready)."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=timeout_s) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def metrics(self, timeout_s: float = 5.0) -> str:
        """The Prometheus text of Triton's metrics endpoint."""
        with urllib.request.urlopen(self.metrics_url, timeout=timeout_s) as r:
            text: str = r.read().decode("utf-8")
            return text

    def log_tail(self, chars: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.proc.returncode
                self.stop()
                raise TritonServerError(
                    f"tritonserver exited with code {code} before it was ready; log tail:\n{self.log_tail()}"
                )
            if self.ready(timeout_s=1.0):
                return
            time.sleep(0.1)
        tail = self.log_tail()
        self.stop()
        raise TritonServerError(f"tritonserver was not ready after {timeout_s:g} s; log tail:\n{tail}")

    def stop(self, timeout_s: float = 10.0, *, kill: bool = False) -> int | None:
        """End the server: SIGTERM (SIGKILL with ``kill=True`` or after ``timeout_s``), then its group.

        Returns the server's exit code. Idempotent.
        """
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait()
        # Stubs left behind by a killed server share its process group (its id is the server's pid).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.proc.returncode

    def __enter__(self) -> TritonServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _check_port(name: str, port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"{name}: expected a TCP port 1..65535, given {port!r}")
    return port


def start_tritonserver(
    repository: str | os.PathLike[str],
    *,
    grpc_port: int,
    http_port: int,
    metrics_port: int,
    host: str = "127.0.0.1",
    log_path: str | os.PathLike[str] | None = None,
    log_verbose: int = 0,
    ready_timeout_s: float = 120.0,
    exit_timeout_s: int = 5,
    workdir: str | os.PathLike[str] | None = None,
    extra_args: tuple[str, ...] = (),
    stdout: IO[bytes] | int | None = None,
) -> TritonServerProcess:
    """Start tritonserver on ``repository`` and wait until it is ready (every model loaded).

    ``log_path``: the server's output goes there (else to ``stdout``, default inherited).
    Raises :class:`TritonServerError` when the wheel cannot run here, the repository is missing, or the
    server exits or is not ready within ``ready_timeout_s`` (the log tail is in the message).
    """
    repo = Path(repository)
    if not repo.is_dir():
        raise TritonServerError(f"model repository: expected a directory, given {repo} (not found)")
    ports = {
        name: _check_port(name, p)
        for name, p in (("grpc_port", grpc_port), ("http_port", http_port), ("metrics_port", metrics_port))
    }
    if len(set(ports.values())) != 3:
        raise ValueError(f"ports: expected three different ports, given {ports}")
    dist = find_tritonserver()
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="spoof-triton-")) if workdir is None else Path(workdir)
    backends = prepare_backends(dist, work)
    args = [
        str(dist.binary),
        f"--model-repository={repo.resolve()}",
        f"--backend-directory={backends}",
        f"--cache-directory={work / 'caches'}",
        f"--http-address={host}",
        f"--http-port={http_port}",
        f"--grpc-address={host}",
        f"--grpc-port={grpc_port}",
        f"--metrics-address={host}",
        f"--metrics-port={metrics_port}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        "--strict-readiness=true",
        "--exit-on-error=true",
        f"--exit-timeout-secs={exit_timeout_s}",
        f"--log-verbose={log_verbose}",
        *extra_args,
    ]
    log_file = None
    if log_path is not None:
        log_file = open(log_path, "ab")  # noqa: SIM115 - the child keeps it; closed below
    try:
        proc = subprocess.Popen(
            args,
            env=server_environment(dist),
            stdin=subprocess.DEVNULL,
            stdout=log_file if log_file is not None else stdout,
            stderr=subprocess.STDOUT if (log_file is not None or stdout is not None) else None,
            start_new_session=True,
        )
    finally:
        if log_file is not None:
            log_file.close()
    server = TritonServerProcess(
        proc,
        host=host,
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        workdir=work,
        log_path=None if log_path is None else Path(log_path),
        own_workdir=own,
    )
    server.wait_ready(ready_timeout_s)
    return server
