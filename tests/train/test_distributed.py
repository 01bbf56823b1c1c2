"""Distributed data parallel: torchrun starts 2 CPU processes (gloo); after training steps every rank holds
the same weights, only rank 0 writes checkpoints and logs, the sampler's shards are disjoint, and on a model
without BatchNorm or dropout the all-reduced gradients equal those of the same batches in one process."""

from __future__ import annotations

import json
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

    import json
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    import torch
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    from spoof_train.config import run_config_from_dict
    from spoof_train.data import collate_pad
    from spoof_train.distributed import cleanup_distributed, init_distributed
    from spoof_train.models import build_detector
    from spoof_train.presets import get_preset
    from spoof_train.train import fit

    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    batch_size = int(sys.argv[2])
    with_batchnorm = sys.argv[3] == "bn"


    class Toy:
        \"\"\"The same 12 items on every rank; records the ids it is asked for (its shard, in order).\"\"\"

        def __init__(self, n, seed):
            g = torch.Generator().manual_seed(seed)
            self.items = [
                {"wave": torch.randn(4000, generator=g) * (0.3 if i % 2 else 1.0), "label": i % 2,
                 "id": f"u{i}", "attack": "-" if i % 2 == 0 else "A1"}
                for i in range(n)
            ]
            self.rows = [SimpleNamespace(label=item["label"]) for item in self.items]  # labels, unread
            self.asked = []

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            self.asked.append(self.items[i]["id"])
            return self.items[i]


    def cfg(run, preset):
        return run_config_from_dict({
            "model": {"preset": preset}, "output_dir": str(run), "seed": 3, "device": "cpu",
            "data": {"batch_size": batch_size},
            "train": {"epochs": 1, "max_steps": 3, "lr": 1e-2, "progress": False, "tensorboard": False,
                      "log_every_steps": 1, "early_stopping": {"monitor": "train_loss"}},
        })


    dist = init_distributed()
    tag = f"rank{dist.rank}" if dist.enabled else "single"
    if with_batchnorm:
        # RawNet2 (BatchNorm): every rank ends with the same weights and buffers
        model = build_detector(get_preset("rawnet2-small"), seed=0)
        fit(model, Toy(12, 100), None, cfg(out / "run_bn", "rawnet2-small"), detector_config=model.config,
            collate_fn=collate_pad, out_dir=out / "run_bn", dist=dist)
        torch.save(model.state_dict(), out / f"bn_{tag}.pt")
    # no BatchNorm, no dropout (no layerdrop, no SpecAugment in the tiny presets, back-end dropout 0): the
    # all-reduced gradient of 2 ranks x 2 items is the gradient of the same 4 items in one process
    model = build_detector(get_preset("xlsr-tiny", backend_config={"dropout": 0.0}), seed=0)
    names = {id(p): n for n, p in model.named_parameters()}
    grads = []

    def record(optimizer, args, kwargs):
        grads.append({names[id(p)]: p.grad.detach().clone() for g in optimizer.param_groups
                      for p in g["params"] if p.grad is not None})

    hook = register_optimizer_step_pre_hook(record)
    data = Toy(12, 100)
    fit(model, data, None, cfg(out / f"run_{tag}", "xlsr-tiny"), detector_config=model.config,
        collate_fn=collate_pad, out_dir=out / f"run_{tag}", dist=dist)
    hook.remove()
    torch.save({"grads": grads, "weights": model.state_dict()}, out / f"{tag}.pt")
    (out / f"{tag}.json").write_text(json.dumps(data.asked))
    cleanup_distributed()
    """
)


def _worker(tmp_path: Path) -> Path:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    return script


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.mark.slow
def test_two_cpu_ranks_match_one_process(tmp_path: Path) -> None:
    script = _worker(tmp_path)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={find_free_port()}",
        str(script),
        str(tmp_path),
        "2",
        "bn",
    ]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # the same run in one process, with the two ranks' batches of 2 as one batch of 4
    one = [sys.executable, str(script), str(tmp_path), "4", "-"]
    proc = subprocess.run(
        one, env={**ENV, "WORLD_SIZE": "1"}, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    # RawNet2 with BatchNorm: identical on both ranks (gradients all-reduced, buffers taken from rank 0)
    r0 = torch.load(tmp_path / "bn_rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "bn_rank1.pt", weights_only=True)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    run = tmp_path / "run_bn"
    assert (run / "checkpoints" / "last" / "model.safetensors").is_file()
    steps = (run / "steps.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in steps] == ["step", "1", "2", "3"]  # rank 0 alone wrote the log

    # the sampler's shards: disjoint, together the whole epoch, and batch for batch the one-process batches
    shard0 = json.loads((tmp_path / "rank0.json").read_text())
    shard1 = json.loads((tmp_path / "rank1.json").read_text())
    single = json.loads((tmp_path / "single.json").read_text())
    assert len(shard0) == len(shard1) == 6
    assert not set(shard0) & set(shard1)
    assert set(shard0) | set(shard1) == {f"u{i}" for i in range(12)}
    for k in range(3):
        pair = set(shard0[2 * k : 2 * k + 2]) | set(shard1[2 * k : 2 * k + 2])
        assert set(single[4 * k : 4 * k + 4]) == pair

    # gradients: the same on both ranks, and those of the one-process run, at each of the 3 steps
    g0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    g1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    g = torch.load(tmp_path / "single.pt", weights_only=True)
    assert len(g0["grads"]) == len(g1["grads"]) == len(g["grads"]) == 3
    # (measured: max |rank - single| <= 4.3e-5 of the tensor's largest gradient; the key-projection biases,
    # whose true gradient is 0 under softmax, differ by rounding noise of 1e-11)
    for step, (a, b, c) in enumerate(zip(g0["grads"], g1["grads"], g["grads"], strict=True)):
        assert a.keys() == b.keys() == c.keys()
        assert len(a) == len(g["weights"])  # every parameter has a gradient
        assert sum(float(v.abs().max()) for v in c.values()) > 1e-2  # and they are not all ~0
        for name in a:
            assert torch.equal(a[name], b[name]), (step, name)  # all-reduced: bit-identical on both ranks
            torch.testing.assert_close(
                a[name], c[name], rtol=0, atol=1e-9 + 1e-3 * float(c[name].abs().max()), msg=f"{step} {name}"
            )


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
