"""Distributed data parallel: torchrun starts 2 CPU processes (gloo); after training steps every rank holds
the same weights, and only rank 0 writes checkpoints and logs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from spoof_train.distributed import DistInfo, broadcast_object, find_free_port, init_distributed

WORKER = textwrap.dedent(
    """
    from __future__ import annotations

    import os
    import sys
    from pathlib import Path

    import torch

    from spoof_train.config import run_config_from_dict
    from spoof_train.data import collate_pad
    from spoof_train.distributed import cleanup_distributed, init_distributed
    from spoof_train.models import build_detector
    from spoof_train.presets import get_preset
    from spoof_train.train import fit

    torch.set_num_threads(1)
    out = Path(sys.argv[1])


    class Toy:
        def __init__(self, n, seed):
            g = torch.Generator().manual_seed(seed)
            self.items = [
                {"wave": torch.randn(4000, generator=g) * (0.3 if i % 2 else 1.0), "label": i % 2,
                 "id": f"u{i}", "attack": "-" if i % 2 == 0 else "A1"}
                for i in range(n)
            ]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]


    dist = init_distributed()
    model = build_detector(get_preset("rawnet2-small"), seed=0)
    torch.save(model.state_dict(), out / f"init{dist.rank}.pt")
    cfg = run_config_from_dict({
        "model": {"preset": "rawnet2-small"}, "output_dir": str(out / "run"), "seed": 3, "device": "cpu",
        "data": {"batch_size": 2},
        "train": {"epochs": 1, "max_steps": 3, "lr": 1e-2, "progress": False, "tensorboard": False,
                  "log_every_steps": 1, "early_stopping": {"monitor": "train_loss"}},
    })
    fit(model, Toy(12, dist.rank + 100), None, cfg, detector_config=model.config, collate_fn=collate_pad,
        out_dir=out / "run", dist=dist)
    torch.save(model.state_dict(), out / f"rank{dist.rank}.pt")
    cleanup_distributed()
    """
)


@pytest.mark.slow
def test_two_cpu_ranks_hold_identical_weights(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={find_free_port()}",
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    init = torch.load(tmp_path / "init0.pt", weights_only=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in r0:
        # identical on both ranks: gradients all-reduced, BatchNorm buffers taken from rank 0
        assert torch.equal(r0[k], r1[k]), k
    changed = [k for k in r0 if r0[k].is_floating_point() and not torch.equal(r0[k], init[k])]
    assert changed  # and they did train
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last" / "model.safetensors").is_file()
    steps = (run / "steps.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in steps] == ["step", "1", "2", "3"]  # rank 0 alone wrote the log


def test_single_process_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_distributed()
    assert info == DistInfo()
    assert info.is_main
    assert not info.enabled
    assert broadcast_object({"a": 1}, info) == {"a": 1}


def test_missing_rendezvous_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from spoof_train.errors import ConfigError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR is not set"):
        init_distributed()
    assert not torch.distributed.is_initialized()
