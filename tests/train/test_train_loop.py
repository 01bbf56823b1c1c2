"""The training loop: exact resume, early stopping (both modes), frozen warm-up, schedules, losses, logs."""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from spoof_train.checkpoint import load_checkpoint
from spoof_train.config import TrainConfig, run_config_from_dict
from spoof_train.data import collate_pad
from spoof_train.errors import CheckpointError, ConfigError, DataError
from spoof_train.models import build_detector
from spoof_train.presets import get_preset
from spoof_train.train import (
    OCSoftmaxLoss,
    SharpnessAware,
    StepState,
    build_criterion,
    build_optimizer,
    build_scheduler,
    fit,
    frozen_norm_stats,
    get_rng_state,
    load_trainer_state,
    lr_factor,
    mixup,
    set_rng_state,
    set_seed,
)


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    """One intra-op thread: on a shared, oversubscribed CPU 2 OpenMP threads run tiny models 10-50x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class ToyDataset:
    """In-memory data following the data contract: bona fide = a low tone in noise, spoof = white noise."""

    def __init__(self, n: int, seed: int, length: int = 3200) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            y = i % 2
            n_samples = length + 160 * (i % 5)
            w = torch.randn(n_samples, generator=g) * 0.05
            if y == 0:
                f0 = 150.0 + 100.0 * torch.rand(1, generator=g).item()
                w = w + 0.3 * torch.sin(2 * math.pi * f0 * torch.arange(n_samples) / 16000)
            self.items.append({"wave": w, "label": y, "id": f"u{i}", "attack": "-" if y == 0 else "A1"})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def _cfg(out: Path, **train: Any) -> Any:
    base: dict[str, Any] = {
        "epochs": 3,
        "lr": 3e-3,
        "progress": False,
        "tensorboard": False,
        "log_every_steps": 1,
    }
    base.update(train)
    return run_config_from_dict(
        {
            "model": {"preset": "wavlm-tiny"},
            "output_dir": str(out),
            "seed": 7,
            "device": "cpu",
            "data": {"batch_size": 4, "eval_batch_size": 8},
            "train": base,
        }
    )


def _model(backend: str = "ffn", seed: int = 3) -> torch.nn.Module:
    return build_detector(get_preset("wavlm-tiny", backend=backend), seed=seed)


def _run(out: Path, cfg: Any, *, resume: bool = False, on_step: Any = None, backend: str = "ffn") -> Any:
    model = _model(backend)
    best = fit(
        model,
        ToyDataset(22, 0),
        ToyDataset(10, 1),
        cfg,
        detector_config=model.config,
        collate_fn=collate_pad,
        out_dir=out,
        resume=resume,
        on_step=on_step,
    )
    return model, best


class Killed(Exception):
    pass


@pytest.mark.parametrize(
    ("extra", "at_kill"),
    [
        ({"grad_accum_steps": 2}, (1, 2, 9)),
        ({"grad_accum_steps": 2, "ema_decay": 0.9}, (1, 2, 9)),
        ({"sam_rho": 0.05}, (0, 4, 18)),
        ({"grad_accum_steps": 2, "mixup_alpha": 0.4}, (1, 2, 9)),
    ],
    ids=["plain", "ema", "sam", "mixup"],
)
def test_killed_and_resumed_run_reproduces_the_uninterrupted_run(
    tmp_path: Path, extra: dict[str, Any], at_kill: tuple[int, int, int]
) -> None:
    # 22 items / batch 4 = 6 micro-batches per epoch, 2 accumulated per step -> 3 steps per epoch, 9 in all
    # (SAM: 1 per step, 6 per epoch, 18 in all). Checkpoints every 2 steps; the run dies at step 5, after the
    # step-4 checkpoint: the resumed run replays step 5 from the middle of an epoch, with dropout, shuffling
    # and the cosine schedule in flight (and, with ema_decay, the weight average: its state rides in the
    # trainer state; with SAM, the second gradient of every step and its frozen batch norm statistics).
    settings = {"checkpoint_every_steps": 2, "scheduler": {"name": "cosine", "warmup_steps": 2}, **extra}
    ema_decay = extra.get("ema_decay")
    epoch_at_kill, batch_at_kill, steps = at_kill
    straight, _ = _run(tmp_path / "a", _cfg(tmp_path / "a", **settings))

    def kill(st: StepState) -> None:
        if st.global_step == 5:
            raise Killed

    with pytest.raises(Killed):
        _run(tmp_path / "b", _cfg(tmp_path / "b", **settings), on_step=kill)
    state = load_trainer_state(tmp_path / "b" / "checkpoints" / "last")
    assert state["step_state"]["global_step"] == 4
    assert state["step_state"]["epoch"] == epoch_at_kill
    assert state["step_state"]["batch_in_epoch"] == batch_at_kill
    resumed, _ = _run(tmp_path / "b", _cfg(tmp_path / "b", **settings), resume=True)

    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k

    def rows(p: Path) -> list[list[str]]:  # the seconds column differs, the rest must not
        with p.open() as f:
            return [r[:6] for r in csv.reader(f)]

    assert rows(tmp_path / "a" / "epochs.csv") == rows(tmp_path / "b" / "epochs.csv")
    assert [r[:4] for r in rows(tmp_path / "a" / "steps.csv")] == [
        r[:4] for r in rows(tmp_path / "b" / "steps.csv")
    ]
    # the saved "last" checkpoint is a loadable contract-A checkpoint equal to the final weights
    loaded, _, info = load_checkpoint(tmp_path / "b" / "checkpoints" / "last")
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, b[k])
    assert info["global_step"] == steps
    if ema_decay is not None:
        avg_a = load_trainer_state(tmp_path / "a" / "checkpoints" / "last")["ema"]
        avg_b = load_trainer_state(tmp_path / "b" / "checkpoints" / "last")["ema"]
        for k in avg_a:
            assert torch.equal(avg_a[k], avg_b[k]), k
        assert info["weights"] == "raw"
        assert any(not torch.equal(avg_b[k], b[k]) for k in b if b[k].is_floating_point())


def test_weight_average_follows_its_formula() -> None:
    from spoof_train.train import WeightAverage

    model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    avg = WeightAverage(model, 0.99)
    assert avg.rate(0) == pytest.approx(0.1)
    assert avg.rate(1000) == 0.99
    assert not any(p.requires_grad for p in avg.module.parameters())
    assert not avg.module.training
    expected = 1.0
    for n, value in enumerate([3.0, -1.0, 5.0]):
        with torch.no_grad():
            model[0].weight.fill_(value)
        model[1].num_batches_tracked.fill_(n + 7)
        avg.update(model, n)
        d = min(0.99, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * value
        assert torch.allclose(avg.module[0].weight, torch.full((1, 2), expected), atol=1e-6)
        assert int(avg.module[1].num_batches_tracked) == n + 7  # integer buffers are copied
    assert model[0].weight[0, 0].item() == 5.0  # the source model is untouched


def test_weight_average_is_what_dev_scores_and_best_holds(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, epochs=1, ema_decay=0.95, early_stopping={"monitor": "dev_eer"})
    raw, best = _run(tmp_path, cfg)
    averaged, _, info = load_checkpoint(best)
    assert info["weights"] == "ema"
    assert info["ema_decay"] == 0.95
    state = load_trainer_state(tmp_path / "checkpoints" / "last")
    got = averaged.state_dict()
    for k, v in state["ema"].items():  # one epoch: the best checkpoint is the final average
        assert torch.equal(got[k], v), k
    raw_w = raw.state_dict()
    assert any(not torch.equal(got[k], raw_w[k]) for k in got if got[k].is_floating_point())
    # the recorded dev EER is the average's, not the raw weights'
    from spoof_train.evaluation import _eer_of, score_utterances

    eer, _ = _eer_of(score_utterances(averaged, ToyDataset(10, 1), batch_size=8))
    assert info["dev_eer"] == pytest.approx(eer)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5, 1.5])
def test_ema_decay_outside_zero_one_is_a_config_error(tmp_path: Path, bad: float) -> None:
    with pytest.raises(ConfigError, match="ema_decay"):
        _cfg(tmp_path, ema_decay=bad).validate()


def test_resume_with_ema_of_a_run_without_it_is_a_typed_error(tmp_path: Path) -> None:
    _run(tmp_path, _cfg(tmp_path, epochs=3, max_steps=2))
    with pytest.raises(CheckpointError, match="weight average"):
        _run(tmp_path, _cfg(tmp_path, epochs=3, ema_decay=0.9), resume=True)


def test_resume_without_trainer_state_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"trainer_state\.pt"):
        load_trainer_state(tmp_path / "empty")


@pytest.mark.parametrize("monitor", ["train_loss", "dev_eer"])
def test_early_stopping_modes(tmp_path: Path, monitor: str) -> None:
    # An improvement of 2.0 is impossible for both monitors: epoch 1 sets the best, epochs 2 and 3 fail to
    # improve; with patience 1 the run stops after epoch 3 of 10.
    cfg = _cfg(tmp_path, epochs=10, early_stopping={"monitor": monitor, "patience": 1, "min_delta": 2.0})
    _, best = _run(tmp_path, cfg)
    with (tmp_path / "epochs.csv").open() as f:
        epochs = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in epochs] == [1, 2, 3]
    assert all(r["dev_eer"] != "" for r in epochs)
    info = json.loads((best / "training.json").read_text())
    assert info["best_epoch"] == 1
    state = load_trainer_state(tmp_path / "checkpoints" / "last")
    assert state["step_state"]["stopped_early"] is True


def test_learning_improves_dev_eer(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, epochs=3, lr=3e-3, early_stopping={"monitor": "dev_eer", "patience": 10})
    _, best = _run(tmp_path, cfg)
    info = json.loads((best / "training.json").read_text())
    assert info["dev_eer"] <= 0.1  # a tone in noise vs white noise: separable
    assert (tmp_path / "run_config.yaml").is_file()


def test_frozen_backbone_warmup_then_finetuning(tmp_path: Path) -> None:
    init = _model().state_dict()
    seen: dict[int, dict[str, torch.Tensor]] = {}
    holder: dict[str, torch.nn.Module] = {}

    def snapshot(st: StepState) -> None:
        if st.global_step in (6, 12):  # ends of epochs 1 and 2 (6 steps per epoch)
            seen[st.global_step] = {k: v.clone() for k, v in holder["m"].state_dict().items()}

    model = _model()
    holder["m"] = model
    cfg = _cfg(tmp_path, epochs=2, freeze_backbone_epochs=1, backbone_lr=1e-3)
    fit(
        model,
        ToyDataset(22, 0),
        ToyDataset(10, 1),
        cfg,
        detector_config=model.config,
        collate_fn=collate_pad,
        out_dir=tmp_path,
        on_step=snapshot,
    )
    bb = [k for k in init if k.startswith("backbone.") and init[k].is_floating_point() and "running" not in k]
    head = [k for k in init if k.startswith("backend.")]
    assert bb
    assert head
    assert all(torch.equal(seen[6][k], init[k]) for k in bb)  # frozen in epoch 1
    assert any(not torch.equal(seen[6][k], init[k]) for k in head)  # the head learned
    assert any(not torch.equal(seen[12][k], seen[6][k]) for k in bb)  # fine-tuned in epoch 2
    with (tmp_path / "epochs.csv").open() as f:
        assert [r["backbone_frozen"] for r in csv.DictReader(f)] == ["1", "0"]


def test_per_group_learning_rates() -> None:
    model = _model()
    opt = build_optimizer(model, TrainConfig(lr=1e-3, backbone_lr=1e-5, optimizer="adam"))
    assert isinstance(opt, torch.optim.Adam)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["head"]["lr"] == 1e-3
    assert groups["backbone"]["lr"] == 1e-5
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())
    assert isinstance(build_optimizer(model, TrainConfig()), torch.optim.AdamW)


def test_schedules() -> None:
    cfg = run_config_from_dict(
        {
            "model": {"preset": "x"},
            "train": {"scheduler": {"name": "cosine", "warmup_steps": 4, "min_lr_ratio": 0.1}},
        }
    ).train
    f = [lr_factor(s, cfg, total_steps=14, steps_per_epoch=7) for s in range(15)]
    assert f[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f[4] == pytest.approx(1.0)
    assert f[9] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f[14] == pytest.approx(0.1)
    step = run_config_from_dict(
        {"model": {"preset": "x"}, "train": {"scheduler": {"name": "step", "step_epochs": 2, "gamma": 0.1}}}
    ).train
    assert [lr_factor(s, step, 100, 10) for s in (0, 19, 20, 39, 40)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    plateau = run_config_from_dict(
        {"model": {"preset": "x"}, "train": {"scheduler": {"name": "plateau", "patience": 0, "factor": 0.5}}}
    ).train
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, plateau, 10, 5)
    sched.step(1.0)
    sched.step(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_weighted_cross_entropy() -> None:
    model = _model()
    crit = build_criterion(TrainConfig(class_weights="balanced"), model, [0, 1, 1, 1])
    assert crit.weight.tolist() == pytest.approx([2.0, 2.0 / 3.0])
    crit = build_criterion(TrainConfig(class_weights=[0.9, 0.1]), model, [0, 1])
    assert crit.weight.tolist() == pytest.approx([0.9, 0.1])
    assert build_criterion(TrainConfig(class_weights=None), model, [0]).weight is None
    with pytest.raises(DataError, match="needs both classes, got bonafide=0, spoof=2"):
        build_criterion(TrainConfig(class_weights="balanced"), model, [1, 1])


def test_ocsoftmax_matches_its_definition() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    loss_fn = OCSoftmaxLoss(net, margin_real=0.9, margin_fake=0.2, alpha=20.0)
    x = torch.randn(5, 6)
    y = torch.tensor([0, 1, 0, 1, 1])
    logits = net(x)
    loss = loss_fn(logits, y)
    emb = torch.tanh(net[0](x))
    w = net[2].weight[0] - net[2].weight[1]
    cos = torch.nn.functional.cosine_similarity(emb, w.unsqueeze(0), dim=-1)
    expected = torch.where(
        y == 0, torch.nn.functional.softplus(20 * (0.9 - cos)), torch.nn.functional.softplus(20 * (cos - 0.2))
    ).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert net[2].weight.grad is not None  # the one-class direction is trained through the final layer
    loss_fn.remove()
    with pytest.raises(ConfigError, match=r"no final nn.Linear\(_, 2\)"):
        OCSoftmaxLoss(torch.nn.Linear(3, 3))


def test_ocsoftmax_training_runs(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, epochs=1, loss="ocsoftmax", early_stopping={"monitor": "train_loss"})
    _, best = _run(tmp_path, cfg)
    assert json.loads((best / "training.json").read_text())["loss"] == "ocsoftmax"


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_steps_from_w_with_the_gradient_taken_at_w_plus_e(adaptive: bool) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    x, y = torch.randn(8, 5), torch.tensor([0, 1] * 4)
    w0 = [p.detach().clone() for p in net.parameters()]

    def grads_at(weights: list[torch.Tensor]) -> list[torch.Tensor]:
        probe = copy.deepcopy(net)
        with torch.no_grad():
            for p, w in zip(probe.parameters(), weights, strict=True):
                p.copy_(w)
        torch.nn.functional.cross_entropy(probe(x), y).backward()
        return [p.grad.detach().clone() for p in probe.parameters()]

    g = grads_at(w0)
    rho, eta = 0.05, 0.01
    t = [(w.abs() + eta) if adaptive else torch.ones_like(w) for w in w0]
    norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(ti * gi) for ti, gi in zip(t, g, strict=True)])
    )
    e = [ti * ti * gi * rho / norm for ti, gi in zip(t, g, strict=True)]
    expected = grads_at([w + ei for w, ei in zip(w0, e, strict=True)])

    sam = SharpnessAware(net, rho, adaptive=adaptive, eta=eta)
    torch.nn.functional.cross_entropy(net(x), y).backward()
    assert sam.ascend()
    for p, w, ei in zip(net.parameters(), w0, e, strict=True):
        torch.testing.assert_close(p.detach(), w + ei)  # at w + e
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    sam.descend()
    for p, w, ge in zip(net.parameters(), w0, expected, strict=True):
        assert torch.equal(p.detach(), w)  # back at w exactly
        torch.testing.assert_close(p.grad, ge)  # holding the gradient taken at w + e
    net.zero_grad()
    assert not sam.ascend()  # no gradient: nothing moves
    torch.nn.functional.cross_entropy(net(x), y).backward()
    assert sam.ascend()
    with pytest.raises(RuntimeError, match="descend"):
        sam.ascend()  # twice without descend() would lose w
    sam.descend()

    # the whole half-step in one call, as fit() and the benchmark use it
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    assert sam.take_perturbed_gradient(lambda: torch.nn.functional.cross_entropy(net(x), y))
    for p, w, ge in zip(net.parameters(), w0, expected, strict=True):
        assert torch.equal(p.detach(), w)
        torch.testing.assert_close(p.grad, ge)


def test_frozen_norm_stats_keeps_running_statistics() -> None:
    bn = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3, momentum=None)).train()
    bn(torch.randn(6, 3))
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    with frozen_norm_stats(bn):
        out = bn(5 + 3 * torch.randn(6, 3))
    torch.testing.assert_close(out.mean(0), torch.zeros(3), atol=1e-5, rtol=0)  # still the batch's stats
    for k, v in bn.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert bn[0].momentum == 0.1
    assert bn[1].momentum is None
    bn(5 + torch.randn(6, 3))  # outside the block the statistics move again
    assert not torch.equal(bn[0].running_mean, before["0.running_mean"])


def test_mixup_mixes_rows_and_labels_in_the_same_proportion() -> None:
    torch.manual_seed(3)
    wave = torch.stack([torch.full((6,), float(i)) for i in range(5)])
    wave[3, 4:] = 0.0  # a padded row
    lengths = torch.tensor([6, 6, 6, 4, 6])
    labels = torch.tensor([0, 1, 0, 1, 1])
    ce = torch.nn.CrossEntropyLoss()
    mixed, mixed_len, loss_of = mixup(wave, lengths, labels, 0.4, ce)
    torch.manual_seed(3)  # replay the draws: one Beta sample, then the permutation
    lam = float(torch.distributions.Beta(0.4, 0.4).sample())
    perm = torch.randperm(5)
    torch.testing.assert_close(mixed, lam * wave + (1 - lam) * wave[perm])
    assert torch.equal(mixed_len, torch.maximum(lengths, lengths[perm]))
    logits = torch.randn(5, 2)
    torch.testing.assert_close(
        loss_of(logits, labels), lam * ce(logits, labels) + (1 - lam) * ce(logits, labels[perm])
    )
    # a mix of a bona fide and a spoof row is trained towards the soft label of its proportions
    soft = torch.stack(
        [
            lam * torch.nn.functional.one_hot(labels, 2),
            (1 - lam) * torch.nn.functional.one_hot(labels[perm], 2),
        ]
    ).sum(0)
    torch.testing.assert_close(
        loss_of(logits, labels), -(soft.float() * logits.log_softmax(-1)).sum(-1).mean()
    )


def test_mixup_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mixup_alpha: expected"):
        _cfg(tmp_path, mixup_alpha=0)
    with pytest.raises(ConfigError, match="soft labels"):
        _cfg(tmp_path, mixup_alpha=0.2, loss="ocsoftmax")


def test_sam_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="radius > 0"):
        _cfg(tmp_path, sam_rho=0.0)
    with pytest.raises(ConfigError, match="grad_accum_steps 1"):
        _cfg(tmp_path, sam_rho=0.05, grad_accum_steps=2)


def test_rng_state_round_trip() -> None:
    import random

    import numpy as np

    set_seed(5)
    state = get_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a  # noqa: NPY002


def _linear_output_dtypes(out: Path, amp: str) -> set[tuple[bool, torch.dtype]]:
    """(training?, dtype) of every nn.Linear output during one epoch of fit() and its dev scoring."""
    model = _model()
    seen: set[tuple[bool, torch.dtype]] = set()

    def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
        seen.add((module.training, output.dtype))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        best = fit(
            model,
            ToyDataset(8, 0),
            ToyDataset(4, 1),
            _cfg(out, epochs=1, amp=amp),
            detector_config=model.config,
            collate_fn=collate_pad,
            out_dir=out,
        )
    finally:
        for h in handles:
            h.remove()
    assert best.is_dir()
    return seen


def test_bf16_autocast_on_cpu_and_fp16_rejected(tmp_path: Path) -> None:
    # bf16 autocast really runs: the linear layers compute in bfloat16 in the training steps and in the
    # dev scoring; with amp off the same hooks see float32 only (an ignored amp="bf16" would look like that)
    assert _linear_output_dtypes(tmp_path / "bf16", "bf16") == {
        (True, torch.bfloat16),
        (False, torch.bfloat16),
    }
    assert _linear_output_dtypes(tmp_path / "off", "off") == {(True, torch.float32), (False, torch.float32)}
    with pytest.raises(ConfigError, match="fp16 autocast needs a CUDA device"):
        _run(tmp_path / "fp16", _cfg(tmp_path / "fp16", epochs=1, amp="fp16"))


def test_logs_and_tensorboard(tmp_path: Path) -> None:
    _run(tmp_path, _cfg(tmp_path, epochs=1, tensorboard=True))
    with (tmp_path / "steps.csv").open() as f:
        steps = list(csv.DictReader(f))
    assert [int(r["step"]) for r in steps] == list(range(1, 7))
    assert all(float(r["loss"]) > 0 for r in steps)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_run_folder_has_a_text_log_and_the_console_stays_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """train.log gets the run's INFO lines (start, epochs, checkpoints) with timestamps even when the
    console shows only warnings; the console gets no INFO line, and the logger is restored afterwards."""
    import logging

    logger = logging.getLogger("spoof_train")
    root = logging.getLogger()
    handler = logging.StreamHandler()  # a console at WARNING, as spoof-train sets it up without -v
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.WARNING)
    try:
        _run(tmp_path, _cfg(tmp_path, epochs=2))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    text = (tmp_path / "train.log").read_text()
    assert "INFO spoof_train: run " in text
    assert "epoch 1: train_loss" in text
    assert "epoch 2: train_loss" in text
    assert "saved checkpoint" in text
    assert text.splitlines()[0][:4].isdigit()  # timestamped
    assert "INFO" not in capsys.readouterr().err
    assert logger.level == logging.NOTSET
    assert logger.propagate
    assert not logger.handlers


def test_empty_splits_are_typed_errors(tmp_path: Path) -> None:
    model = _model()
    with pytest.raises(DataError, match="training split is empty"):
        fit(
            model,
            ToyDataset(0, 0),
            ToyDataset(4, 1),
            _cfg(tmp_path),
            detector_config=model.config,
            collate_fn=collate_pad,
            out_dir=tmp_path,
        )
    with pytest.raises(DataError, match="dev split 'dev' is empty"):
        fit(
            model,
            ToyDataset(4, 0),
            None,
            _cfg(tmp_path),
            detector_config=model.config,
            collate_fn=collate_pad,
            out_dir=tmp_path,
        )
    raw = build_detector(get_preset("rawnet2-small"), seed=0)
    with pytest.raises(ConfigError, match="freeze_backbone"):
        fit(
            raw,
            ToyDataset(4, 0),
            ToyDataset(4, 1),
            _cfg(tmp_path, freeze_backbone_epochs=1, epochs=1),
            detector_config=raw.config,
            collate_fn=collate_pad,
            out_dir=tmp_path / "raw",
        )
