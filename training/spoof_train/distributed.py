"""Distributed data parallel helpers (``torch.distributed``; torchrun on GPUs, gloo on CPU).

``spoof-train train`` started by ``torchrun --nproc_per_node=K -m spoof_train.cli train CONFIG`` reads the
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR`` / ``MASTER_PORT`` variables that torchrun sets;
without them it runs as a single process. Rank 0 alone writes checkpoints, logs and runs the dev evaluation;
its decisions (early stop) are broadcast so every rank leaves the loop together.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

from spoof_train.errors import ConfigError

__all__ = [
    "DistInfo",
    "all_reduce_mean",
    "barrier",
    "broadcast_object",
    "cleanup_distributed",
    "find_free_port",
    "init_distributed",
    "resolve_device",
]

log = logging.getLogger("spoof_train")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job. ``world_size == 1`` means no process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str, dist: DistInfo | None = None) -> Any:
    """``"auto"`` -> ``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``; explicit names are checked."""
    import torch

    local_rank = dist.local_rank if dist is not None else 0
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {device!r} was requested but CUDA is not available on this machine")
        if device == "cuda" and dist is not None and dist.enabled:
            return torch.device(f"cuda:{local_rank}")
        return torch.device(device)
    if device != "cpu":
        raise ConfigError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    return torch.device("cpu")


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group described by torchrun's environment variables (no-op without them).

    The backend defaults to NCCL when CUDA is available and gloo otherwise.
    """
    import torch
    import torch.distributed as tdist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise ConfigError(f"distributed: WORLD_SIZE={world} but {var} is not set (start with torchrun)")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not tdist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        tdist.init_process_group(backend=backend, rank=rank, world_size=world)
    log.info("distributed: rank %d/%d (local %d), backend %s", rank, world, local_rank, backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, backend=backend)


def cleanup_distributed() -> None:
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def barrier(dist: DistInfo) -> None:
    if dist.enabled:
        import torch.distributed as tdist

        tdist.barrier()


def broadcast_object(obj: Any, dist: DistInfo, src: int = 0) -> Any:
    """Send a picklable object from ``src`` to every rank (identity without a process group)."""
    if not dist.enabled:
        return obj
    import torch.distributed as tdist

    holder = [obj]
    tdist.broadcast_object_list(holder, src=src)
    return holder[0]


def all_reduce_mean(value: float, dist: DistInfo) -> float:
    """Mean of a Python float over ranks."""
    if not dist.enabled:
        return value
    import torch
    import torch.distributed as tdist

    t = torch.tensor([value], dtype=torch.float64)
    tdist.all_reduce(t)
    return float(t.item()) / dist.world_size


def find_free_port() -> int:
    """A free TCP port on localhost (for tests that start a local process group)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
