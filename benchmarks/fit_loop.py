"""The cost of the one training loop for distillation and QAT (issue 22 item 4): end-to-end wall time of
``distil()`` and ``qat()`` for the same number of steps, in this tree and in an older tree whose jobs had
their own loops, interleaved (old, new, old, new, ...) so that the load of a shared machine hits both alike.

    python benchmarks/fit_loop.py                       # this tree only
    python benchmarks/fit_loop.py --old /tmp/oldtree    # a git worktree of the commit to compare with

Each measurement runs in its own process (``--one KIND``) on one torch thread; tiny models (the test suite's
WavLM-tiny, synthetic 1.1 s clips, ``FIT_LOOP_TRAIN_CLIPS`` (16) for training + 8 dev, crops of 0.5 s,
batch 4: 4 steps an epoch by default; 160 clips make the 40 steps one epoch). Prints one JSON line per
measurement and a summary with the median ratio new/old.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = 40
CLIPS = int(os.environ.get("FIT_LOOP_TRAIN_CLIPS", "16"))  # training clips: 4 per step


def _use_tree(tree: str | None) -> None:
    """Import spoof_train from ``tree`` (the editable install's redirecting finder is taken out)."""
    if tree is None:
        return
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "ScikitBuildRedirectingFinder"]
    for sub in ("training", "export", "sdk"):
        sys.path.insert(0, str(Path(tree) / sub))


def _fixture(root: Path) -> tuple[Path, Path]:
    import numpy as np
    import soundfile as sf
    import torch

    from spoof_train.checkpoint import save_checkpoint
    from spoof_train.models import build_detector
    from spoof_train.presets import get_preset

    rng = np.random.default_rng(3)
    (root / "audio").mkdir(parents=True)
    lines = ["path\tlabel\tattack\tspeaker\tsplit"]
    for i in range(CLIPS + 8):
        t = np.arange(int(1.1 * 16000)) / 16000
        x = 0.3 * np.sin(2 * np.pi * (150 + 20 * i) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(root / "audio" / f"c{i}.wav", x.astype(np.float32), 16000)
        label, attack = ("bonafide", "-") if i % 2 == 0 else ("spoof", "A01")
        split = "train" if i < CLIPS else "dev"
        lines.append(f"audio/c{i}.wav\t{label}\t{attack}\tspk{i % 3}\t{split}")
    (root / "MANIFEST.tsv").write_text("\n".join(lines) + "\n")
    config = get_preset("wavlm-tiny")
    model = build_detector(config, seed=0)
    with torch.no_grad():
        last = model.backend.mlp[-1]
        last.weight.copy_(torch.randn(last.weight.shape, generator=torch.Generator().manual_seed(1)))
    return save_checkpoint(
        root / "teacher", model, config, {"origin": "benchmarks/fit_loop.py"}
    ), root / "MANIFEST.tsv"


def one(kind: str, tree: str | None) -> dict[str, object]:
    _use_tree(tree)
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch

    torch.set_num_threads(1)
    import spoof_train

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher, manifest = _fixture(root / "data")
        t0 = time.perf_counter()
        if kind == "distil":
            from spoof_train.distill import DistilConfig, distil

            distil(
                DistilConfig(
                    teacher=str(teacher),
                    manifest=str(manifest),
                    out_dir=str(root / "s"),
                    layers=1,
                    hidden_size=16,
                    epochs=100,
                    max_steps=STEPS,
                    batch_size=4,
                    crop_seconds=0.5,
                    dev_split=None,
                )
            )
        else:
            from spoof_train.qat import QATConfig, qat

            qat(
                QATConfig(
                    checkpoint=str(teacher),
                    manifest=str(manifest),
                    out_dir=str(root / "q"),
                    steps=STEPS,
                    batch_size=4,
                    crop_seconds=0.5,
                )
            )
        seconds = time.perf_counter() - t0
    return {
        "kind": kind,
        "tree": tree or "this",
        "steps": STEPS,
        "seconds": round(seconds, 3),
        "ms_per_step": round(1000 * seconds / STEPS, 1),
        "package": str(Path(spoof_train.__file__).parent),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", default=None, help="a checkout of the commit to compare with")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--one", choices=("distil", "qat"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tree", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.tree)))
        return
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    print(json.dumps({"cpu": cpu, "cores": os.cpu_count(), "train_clips": CLIPS, "steps": STEPS}))
    results: dict[tuple[str, str], list[float]] = {}
    trees = [None] if args.old is None else [args.old, None]
    for _ in range(args.repeats):
        for kind in ("distil", "qat"):
            for tree in trees:
                cmd = [sys.executable, __file__, "--one", kind] + ([] if tree is None else ["--tree", tree])
                env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
                out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
                row = json.loads(out.strip().splitlines()[-1])
                print(json.dumps(row))
                results.setdefault((kind, row["tree"]), []).append(float(row["seconds"]))
    for kind in ("distil", "qat"):
        new = statistics.median(results[(kind, "this")])
        line = {"kind": kind, "new_median_s": new}
        if args.old is not None:
            old = statistics.median(results[(kind, args.old)])
            line.update({"old_median_s": old, "ratio_new_over_old": round(new / old, 2)})
        print(json.dumps(line))


if __name__ == "__main__":
    main()
