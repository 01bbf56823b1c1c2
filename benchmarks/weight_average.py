"""Cost of the weight average (``train.ema_decay``), of sharpness-aware minimisation (``train.sam_rho``)
and of the ``microphone`` augmentation against the training step they ride on.

Builds the default detector's member from its config (random weights: cost does not depend on them) and
times, on ``--threads`` torch threads, in the same run and interleaved over ``--rounds``: one training step
(forward + backward + AdamW on a batch of ``--batch-size`` random 1 s crops), the same step with SAM (a
second forward + backward at the perturbed weights, batch norm statistics frozen), one
``WeightAverage.update`` and the ``Microphone`` augmentation of the same batch (numpy, per crop). Reports
medians and the ratios to the step.

    .venv/bin/python benchmarks/weight_average.py \
        --config recipes/default-detector/v1/member-a.yaml --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="recipes/default-detector/v1/member-a.yaml")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--crop-seconds", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--updates", type=int, default=50, help="average updates timed per round")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch
    import yaml

    from spoof_train.augment import Microphone
    from spoof_train.config import run_config_from_dict
    from spoof_train.train import SharpnessAware, WeightAverage, build_detector_from_run

    torch.set_num_threads(args.threads)
    cfg = run_config_from_dict(yaml.safe_load(Path(args.config).read_text()))
    model, det = build_detector_from_run(cfg)
    sr = int(det.sample_rate)
    n = round(args.crop_seconds * sr)
    rng = np.random.default_rng(0)
    crops = (0.1 * rng.standard_normal((args.batch_size, n))).astype(np.float32)
    wave = torch.from_numpy(crops)
    labels = torch.arange(args.batch_size) % 2
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    avg = WeightAverage(model, 0.998)
    mic = Microphone()
    sam = SharpnessAware(model, 0.05)
    model.train()

    def step(with_sam: bool = False) -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(wave), labels).backward()
        if with_sam:
            sam.take_perturbed_gradient(lambda: torch.nn.functional.cross_entropy(model(wave), labels))
        opt.step()

    step()  # warm-up
    step(with_sam=True)
    times: dict[str, list[float]] = {
        "step_ms": [],
        "sam_step_ms": [],
        "average_update_ms": [],
        "microphone_batch_ms": [],
    }
    for r in range(args.rounds):
        t = time.perf_counter()
        step()
        times["step_ms"].append(1e3 * (time.perf_counter() - t))
        t = time.perf_counter()
        step(with_sam=True)
        times["sam_step_ms"].append(1e3 * (time.perf_counter() - t))
        t = time.perf_counter()
        for i in range(args.updates):
            avg.update(model, r * args.updates + i)
        times["average_update_ms"].append(1e3 * (time.perf_counter() - t) / args.updates)
        t = time.process_time()
        for row in crops:
            mic(row, sr, rng)
        times["microphone_batch_ms"].append(1e3 * (time.process_time() - t))
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "config": args.config,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": f"{args.batch_size} x {args.crop_seconds:g} s",
        "threads": args.threads,
        **{k: round(v, 3) for k, v in med.items()},
        "sam_step_ratio": round(med["sam_step_ms"] / med["step_ms"], 3),
        "average_share_of_step": round(med["average_update_ms"] / med["step_ms"], 4),
        "microphone_share_of_step": round(med["microphone_batch_ms"] / med["step_ms"], 4),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
