"""Does the data loader keep the model busy? Loader throughput vs a model's training step, on corpus-v1.

Measures, in one run on the same machine:

1. loader-only throughput (clips/s) over the training split: decode (FLAC, 8 kHz files resampled to 16 kHz),
   random 4 s crop / repeat-pad, optional augmentation, collate; with 0, 1 and 2 worker processes, from the
   audio files and from a decoded float16 cache (``AudioCache``); the page cache is warmed first;
2. the model's training step (forward + backward + Adam step) on one fixed batch: the baseline;
3. the real loop (load + step) per worker setting: its time per step against the model-only step time gives
   the share of time the model waits for data (stall). The loop configurations, the baseline included, run
   in interleaved rounds and medians are reported, because the machine is shared with other jobs;
4. contention-robust CPU costs: the loader's CPU ms per clip (in-process) and the model step's CPU seconds,
   whose ratio is the share of the machine data preparation takes when it runs in workers beside the model
   (run with ``--threads 1`` so that no spinning OpenMP thread inflates the model's CPU time).

    .venv/bin/python benchmarks/dataloader.py --model wavlm-tiny --batch-size 8 --batches 10 --steps 3

Prints a table and one JSON line. Figures go into docs/benchmarks.md ("### Data loading").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = Path(os.environ.get("SPOOF_CORPUS_DIR", REPO.parent / "shared" / "data" / "corpus-v1"))


def loader_throughput(ds: Any, batch_size: int, workers: int, batches: int, seed: int) -> dict[str, float]:
    from spoof_train.data import make_loader

    loader = make_loader(
        ds, batch_size=batch_size, shuffle=True, num_workers=workers, seed=seed, drop_last=True
    )
    it = iter(loader)
    t0 = time.perf_counter()
    first = next(it)  # includes worker start-up
    t_first = time.perf_counter() - t0
    n = 0
    t1, c1 = time.perf_counter(), time.process_time()
    for _ in range(batches - 1):
        n += next(it)["wave"].shape[0]
    dt, cpu = time.perf_counter() - t1, time.process_time() - c1
    del it, loader, first
    out = {"clips_per_s": n / dt, "first_batch_s": t_first}
    if workers == 0:  # all work in this process: its CPU time is the loader's cost, whatever the contention
        out["cpu_ms_per_clip"] = 1e3 * cpu / n
    return out


def train_loop_time(
    model: Any, ds: Any | None, batch: dict[str, Any], batch_size: int, workers: int, steps: int, seed: int
) -> tuple[float, float]:
    """Wall and main-process CPU seconds per training step: forward, backward and an Adam step, loading each
    next batch from ``ds`` (or reusing ``batch`` when ``ds`` is None: the model-only baseline)."""
    import torch

    from spoof_train.data import make_loader

    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    it = None
    if ds is not None:
        loader = make_loader(
            ds, batch_size=batch_size, shuffle=True, num_workers=workers, seed=seed, drop_last=True
        )
        it = iter(loader)
        batch = next(it)  # start-up excluded, as a long run amortises it
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(batch["wave"], batch["lengths"]), batch["label"]).backward()
        opt.step()
        if it is not None:
            batch = next(it)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    del it
    return dt / steps, cpu / steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument(
        "--model", default="wavlm-tiny", help="spoof_train preset whose training step is the baseline"
    )
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop-seconds", type=float, default=4.0)
    ap.add_argument("--batches", type=int, default=10, help="batches per loader measurement")
    ap.add_argument("--steps", type=int, default=3, help="training steps per loop measurement")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the loop measurement")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--augment", default="rawboost", choices=["none", "rawboost", "codec"])
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the main process")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    manifest = args.corpus / "MANIFEST.tsv"
    if not manifest.is_file():
        print(f"corpus-v1 not found at {args.corpus} (set SPOOF_CORPUS_DIR)", file=sys.stderr)
        return 2
    import torch

    from spoof_train.augment import build_augmentation
    from spoof_train.data import AudioCache, AudioDataset, collate_pad, read_manifest, resampler_backend
    from spoof_train.models import build_detector
    from spoof_train.presets import get_preset

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rows = [r for r in read_manifest(manifest) if r.split == "train"]
    crop = round(args.crop_seconds * 16000)
    aug_cfg = {
        "none": [],
        "rawboost": [{"name": "rawboost", "algo": 5}],
        "codec": [{"name": "codec", "codecs": ["mulaw", "alaw", "gsm"]}],
    }[args.augment]
    augment = build_augmentation(aug_cfg) if aug_cfg else None
    results: dict[str, Any] = {
        "model": args.model,
        "batch_size": args.batch_size,
        "crop_seconds": args.crop_seconds,
        "augment": args.augment,
        "resampler": resampler_backend(),
        "torch_threads": args.threads,
        "cpus": os.cpu_count(),
        "load_avg_start": os.getloadavg()[0],
        "loader": {},
    }
    for r in rows:  # warm the page cache so the first configuration is not penalised by disk reads
        Path(r.path).read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cache = AudioCache.build(rows, Path(tmp) / "cache")
        results["cache_build_s"] = time.perf_counter() - t0
        results["cache_mb"] = cache.total_samples * 2 / 1e6
        sources: dict[str, Any] = {"files": None, "cache": cache}
        variants: list[tuple[str, Any]] = [("no-aug", None)] + ([(args.augment, augment)] if augment else [])
        for src_name, src in sources.items():
            for aug_name, aug in variants:
                ds = AudioDataset(rows, crop_samples=crop, train=True, augment=aug, seed=args.seed, cache=src)
                for w in args.workers:
                    key = f"{src_name}/{aug_name}/w{w}"
                    results["loader"][key] = loader_throughput(
                        ds, args.batch_size, w, args.batches, args.seed
                    )
                    print(
                        f"loader {key:28s} {results['loader'][key]['clips_per_s']:8.1f} clips/s", flush=True
                    )

        model = build_detector(get_preset(args.model))
        model.train()
        n_params = sum(p.numel() for p in model.parameters())
        ds_cache = AudioDataset(
            rows, crop_samples=crop, train=True, augment=augment, seed=args.seed, cache=cache
        )
        fixed = collate_pad([ds_cache[i] for i in range(args.batch_size)])
        train_loop_time(model, None, fixed, args.batch_size, 0, 1, args.seed)  # warm-up
        loop_cfgs: dict[str, tuple[Any, int]] = {"model only": (None, 0)}
        ds_files = AudioDataset(rows, crop_samples=crop, train=True, augment=augment, seed=args.seed)
        for w in args.workers:
            loop_cfgs[f"files/{args.augment}/w{w}"] = (ds_files, w)
        loop_cfgs[f"cache/{args.augment}/w{max(args.workers)}"] = (ds_cache, max(args.workers))
        times: dict[str, list[float]] = {k: [] for k in loop_cfgs}
        model_cpu: list[float] = []
        for rnd in range(args.rounds):
            for key, (ds, w) in loop_cfgs.items():
                t, cpu = train_loop_time(model, ds, fixed, args.batch_size, w, args.steps, args.seed + rnd)
                times[key].append(t)
                if ds is None:
                    model_cpu.append(cpu)
                print(f"round {rnd} {key}: {t * 1e3:.0f} ms/step ({cpu * 1e3:.0f} ms CPU)", flush=True)
    step = statistics.median(times["model only"])
    results["model_params"] = n_params
    results["model_step_s"] = step
    results["model_step_all_s"] = times["model only"]
    results["model_clips_per_s"] = args.batch_size / step
    results["loop"] = {}
    for key, ts in times.items():
        if key != "model only":
            per_step = statistics.median(ts)
            results["loop"][key] = {"step_s": per_step, "stall": max(0.0, 1.0 - step / per_step), "all_s": ts}
    results["load_avg_end"] = os.getloadavg()[0]
    # Contention-free view: CPU seconds. The model step's CPU time (all its threads) against the loader's CPU
    # time per batch (measured in-process, num_workers=0) = the share of the machine that data preparation
    # takes when it runs in workers beside the model; on a dedicated box that is the slowdown it can cause.
    results["model_cpu_s_per_step"] = statistics.median(model_cpu)
    results["data_cpu_share"] = {}
    for key, r in results["loader"].items():
        if "cpu_ms_per_clip" in r:
            batch_cpu = r["cpu_ms_per_clip"] * args.batch_size / 1e3
            results["data_cpu_share"][key.rsplit("/", 1)[0]] = batch_cpu / (
                batch_cpu + results["model_cpu_s_per_step"]
            )

    print()
    print(
        f"model {args.model} ({n_params / 1e3:.0f}k params), batch {args.batch_size} x {args.crop_seconds}s: "
        f"{step * 1e3:.0f} ms/step = {args.batch_size / step:.1f} clips/s"
    )
    print()
    print("| source / augmentation / workers | loader clips/s | x model clips/s |")
    print("|---|---|---|")
    for key, r in results["loader"].items():
        print(f"| {key} | {r['clips_per_s']:.1f} | {r['clips_per_s'] / results['model_clips_per_s']:.1f} |")
    print()
    print("| loop (load + step) | ms/step (median) | model waits |")
    print("|---|---|---|")
    print(f"| model only (fixed batch) | {step * 1e3:.0f} | - |")
    for key, r in results["loop"].items():
        print(f"| {key} | {r['step_s'] * 1e3:.0f} | {100 * r['stall']:.0f} % |")
    print()
    print(f"model step: {results['model_cpu_s_per_step'] * 1e3:.0f} ms CPU")
    print("| source / augmentation | loader CPU ms per clip | data share of CPU per step |")
    print("|---|---|---|")
    for key, share in results["data_cpu_share"].items():
        print(f"| {key} | {results['loader'][key + '/w0']['cpu_ms_per_clip']:.1f} | {100 * share:.1f} % |")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
