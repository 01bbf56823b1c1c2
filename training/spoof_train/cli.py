"""``spoof-train``: train, evaluate, analyse and explain voice anti-spoofing detectors.

Each sub-command is argparse over one typed function of the package::

    spoof-train train CONFIG [--set KEY=VALUE ...] [--resume]          -> spoof_train.train.train
    spoof-train evaluate CHECKPOINT --manifest M --split S [...]        -> spoof_train.evaluation.evaluate
    spoof-train analyse-layers [CONFIG] [--checkpoint C ...] -o DIR     -> spoof_train.analysis.layers
    spoof-train explain CHECKPOINT AUDIO -o DIR [...]                   -> spoof_train.analysis.explain
    spoof-train init --preset NAME --backend NAME [--pretrained SRC] -o DIR
                                                                        -> spoof_train.presets.init_checkpoint
    spoof-train convert SRC -o HF_DIR                  -> spoof_train.models.whisper_weights.convert_whisper
    spoof-train make-manifest FORMAT --audio-root R [--protocol P] -o M -> spoof_train.data.make_manifest
    spoof-train synth MANIFEST -o OUT --generator NAME [...]            -> spoof_train.synth.synth
    spoof-train distil --teacher T --manifest M -o OUT --layers N [...]  -> spoof_train.distill.distil
    spoof-train qat CHECKPOINT --manifest M -o OUT [...]                 -> spoof_train.qat.qat
    spoof-train ensemble CHECKPOINT... -o OUT [--weights W ...]          -> spoof_train.ensemble

All sub-commands are declared here; ``train``, ``distil`` and ``qat`` train in one loop
(:func:`spoof_train.loop.fit`), so each has resume, AMP, EMA, DDP and a run folder with ``train.log``.

Distributed training: ``torchrun --nproc_per_node=K -m spoof_train.cli train CONFIG`` (also ``distil``,
``qat``).

Exit codes (also in docs/training.md):
  0 success; 1 unexpected internal error (a bug: the traceback is printed); 2 usage error (argparse);
  3 invalid configuration (ConfigError); 4 data problem (DataError: manifest, audio, empty split);
  5 checkpoint problem (CheckpointError: missing, corrupt, mismatched); 6 metric error (MetricError);
  7 other file-system error (OSError); 8 a generator's package is missing (GeneratorUnavailableError);
  130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spoof_train.config import AMP_MODES
from spoof_train.errors import CheckpointError, ConfigError, DataError, MetricError
from spoof_train.qat import INT8_OPS, OBSERVERS, QAT_TARGETS
from spoofsdk._cli_version import PrintVersion

__all__ = ["EXIT_CODES", "build_parser", "main"]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_DATA = 4
EXIT_CHECKPOINT = 5
EXIT_METRIC = 6
EXIT_OS = 7
EXIT_UNAVAILABLE = 8
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "unexpected internal error (bug; traceback printed)",
    EXIT_USAGE: "usage error (bad or missing arguments)",
    EXIT_CONFIG: "invalid configuration (ConfigError)",
    EXIT_DATA: "unusable data: manifest, audio file, empty split (DataError)",
    EXIT_CHECKPOINT: "missing, corrupt or mismatched checkpoint (CheckpointError)",
    EXIT_METRIC: "metric cannot be computed (MetricError)",
    EXIT_OS: "other file-system error (OSError)",
    EXIT_UNAVAILABLE: "a generator's package or library is not installed (GeneratorUnavailableError)",
    EXIT_INTERRUPTED: "interrupted",
}

log = logging.getLogger("spoof_train")

_ERROR_EXITS: tuple[tuple[type[BaseException], int, str], ...] = (
    (ConfigError, EXIT_CONFIG, "config error: "),
    (DataError, EXIT_DATA, "data error: "),
    (CheckpointError, EXIT_CHECKPOINT, "checkpoint error: "),
    (MetricError, EXIT_METRIC, "metric error: "),
    (OSError, EXIT_OS, ""),
)


def _set_threads(args: argparse.Namespace) -> None:
    n = getattr(args, "threads", None)
    if n is not None:
        if n < 1:
            raise ConfigError(f"--threads: expected an integer >= 1, got {n}")
        import torch

        torch.set_num_threads(n)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


# ------------------------------------------------------------------------------------------------------
# sub-commands


def cmd_train(args: argparse.Namespace) -> int:
    from spoof_train.config import load_run_config
    from spoof_train.train import train

    cfg = load_run_config(args.config, args.overrides)
    if args.print_config:
        import yaml

        from spoof_train.config import run_config_to_dict

        print(yaml.safe_dump(run_config_to_dict(cfg), sort_keys=False), end="")
        return EXIT_OK
    best = train(cfg, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        training_json = best / "training.json"
        info = json.loads(training_json.read_text()) if training_json.is_file() else {}
        _print_json(
            {
                "best_checkpoint": str(best),
                "dev_eer": info.get("dev_eer"),
                "best_epoch": info.get("best_epoch"),
                "output_dir": cfg.output_dir,
            }
        )
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from spoof_train.train import evaluate

    _set_threads(args)
    seen = None if args.seen_attacks is None else [a for a in args.seen_attacks.split(",") if a]
    res = evaluate(
        args.checkpoint,
        args.manifest,
        args.split,
        root=args.root,
        out_dir=args.out,
        asv_scores=args.asv_scores,
        seen_attacks=seen,
        chunk_seconds="model" if args.chunk_seconds is None else args.chunk_seconds,
        batch_size=args.batch_size,
        on_error=args.on_error,
        device=args.device,
        progress=not args.quiet,
        limit=args.limit,
    )
    if args.json:
        _print_json(res)
        return EXIT_OK
    print(
        f"split {res['split']}: {res['n_bonafide']} bona fide, {res['n_spoof']} spoof"
        + (f", {res['n_skipped']} skipped" if res["n_skipped"] else "")
    )
    sc = res["scoring"]
    if sc["window_samples"] is None:
        print(f"scoring: each clip whole ({sc['source']})")
    else:
        print(
            f"scoring: {sc['window_s']:g} s windows every {sc['hop_s']:g} s, {sc['aggregate']} per clip, "
            f"short clips {sc['short_clips']} ({sc['source']})"
        )
    print(
        f"EER {100 * res['eer']:.2f} % (threshold {res['eer_threshold']:.4f})  minDCF {res['min_dcf']:.4f}  "
        f"actDCF {res['act_dcf']:.4f}  Cllr {res['cllr']:.4f}"
    )
    for key in ("eer_seen", "eer_unseen"):
        if key in res:
            print(
                f"{key.replace('eer_', 'EER ')} attacks: {100 * res[key]:.2f} % "
                f"({res['n_spoof_' + key[4:]]} spoofs)"
            )
    for key in ("min_tdcf_2019", "min_tdcf_2021"):
        if key in res:
            print(f"{key}: {res[key]:.4f}")
    print("per attack (EER %, spoofs, seen):")
    for name, v in res["per_attack"].items():
        seen_txt = "" if v["seen"] is None else ("seen" if v["seen"] else "unseen")
        print(f"  {name:<20} {100 * v['eer']:6.2f} {v['n_spoof']:6d} {seen_txt}")
    if "outputs" in res:
        print("wrote " + ", ".join(res["outputs"].values()))
    return EXIT_OK


def cmd_analyse_layers(args: argparse.Namespace) -> int:
    from spoof_train.analysis.layers import analyse_layers

    cfg = None
    if args.config is not None:
        from spoof_train.config import load_run_config

        cfg = load_run_config(args.config, args.overrides)
    elif args.overrides:
        raise ConfigError("analyse-layers: --set needs a CONFIG to override")
    rep = analyse_layers(
        cfg, args.out, coverage=args.coverage, checkpoints=args.checkpoint or (), resume=args.resume
    )
    if args.json:
        _print_json(rep)
        return EXIT_OK
    print(
        f"recommended layers N = {rep['recommended_layers']} ({rep['rule']}); knee {rep['knee_layers']}, "
        f"top layer {rep['top_layer']} of {rep['total_layers']}"
    )
    if rep.get("warning"):
        print(f"WARNING: {rep['warning']}")
    print("wrote " + ", ".join(rep["outputs"].values()))
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from spoof_train.analysis.explain import explain_file

    _set_threads(args)
    res = explain_file(
        args.checkpoint,
        args.audio,
        args.out,
        steps=args.steps,
        max_seconds=args.max_seconds,
        target=args.target,
        time_frequency=not args.no_tf,
        batch_size=args.batch_size,
        baseline=args.baseline,
    )
    if args.json:
        _print_json(res)
        return EXIT_OK
    print(
        f"score (logit_bf - logit_spoof) {res['score']:.4f}; IG towards {res['target']}, {res['steps']} steps"
    )
    t = res["time"]
    print(
        f"time view: sum of attributions {t['sum_attributions']:.4f} vs f(x) - f(baseline) "
        f"{t['f_input'] - t['f_baseline']:.4f} (gap {100 * t['relative_delta']:.2f} %)"
    )
    if "time_frequency" in res:
        tf = res["time_frequency"]
        print(
            f"time-frequency view: gap {100 * tf['relative_delta']:.2f} %; by band: "
            + ", ".join(f"{k} {v:+.3f}" for k, v in tf["band_attributions"].items())
        )
    print("wrote " + ", ".join(res["outputs"].values()))
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from spoof_train.presets import init_checkpoint

    kwargs: dict[str, Any] = {"seed": args.seed}
    if args.layers is not None:
        kwargs["layers"] = args.layers
    if args.pretrained is not None:
        kwargs["pretrained"] = args.pretrained
    out = init_checkpoint(args.preset, args.backend, args.out, **kwargs)
    what = f"pretrained ({args.pretrained})" if args.pretrained is not None else "randomly initialised"
    print(f"wrote {what} {args.preset} + {args.backend} checkpoint to {out}")
    return EXIT_OK


def cmd_convert(args: argparse.Namespace) -> int:
    from spoof_train.models.whisper_weights import convert_whisper

    out = convert_whisper(args.source, args.out, overwrite=args.overwrite)
    print(f"wrote the Hugging Face WhisperEncoder layout of {args.source} to {out}")
    return EXIT_OK


def cmd_synth(args: argparse.Namespace) -> int:
    from spoof_train.synth import synth

    summary = synth(
        args.manifest,
        args.out,
        args.generator,
        splits=args.splits,
        seed=args.seed,
        workers=args.workers,
        p_channel=args.p_channel,
        p_8k=args.p_8k,
        limit=args.limit,
        noise_from=args.noise_from,
        progress=not args.no_progress,
    )
    print(summary.line())
    if summary.failed:
        print(f"the failed inputs and why: {Path(args.out) / 'failures.tsv'}")
    return EXIT_OK


def cmd_make_manifest(args: argparse.Namespace) -> int:
    from spoof_train.data.protocols import make_manifest

    protocols: Any = (
        args.protocol[0] if args.protocol and len(args.protocol) == 1 else (args.protocol or None)
    )
    roots: Any = args.audio_root[0] if len(args.audio_root) == 1 else args.audio_root
    phases = None if args.phases == "all" else [p for p in args.phases.split(",") if p]
    out = make_manifest(
        args.format,
        protocols,
        roots,
        args.out,
        split=args.split,
        phases=phases,
        check_files=not args.no_check,
        on_missing=args.on_missing,
    )
    with Path(out).open(encoding="utf-8") as f:
        n = sum(1 for _ in f) - 1
    print(f"wrote {n} rows to {out}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------------
# parser


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value by its dotted key, e.g. --set train.lr=1e-4 (repeatable)",
    )


def _version() -> str:
    """``spoof-train VERSION (torch X)``, read from the installed metadata (torch is not imported)."""
    from importlib.metadata import PackageNotFoundError, version

    def v(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"

    return f"spoof-train {v('spoofsdk')} (torch {v('torch')})"


def _parser_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train a detector from a YAML run config")
    p.add_argument("config", help="YAML run config (see configs/)")
    _add_overrides(p)
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoints/last")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=cmd_train)


def _parser_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="score a manifest split with a checkpoint and report the metrics")
    p.add_argument("checkpoint", help="checkpoint directory (contract A)")
    p.add_argument("--manifest", required=True, help="TSV manifest")
    p.add_argument("--split", required=True, help="split to score (e.g. dev, test, eval)")
    p.add_argument(
        "--root", default=None, help="root for relative audio paths (default: the manifest's folder)"
    )
    p.add_argument("--out", default=None, help="write metrics.json, scores.tsv and det.png here")
    p.add_argument(
        "--asv-scores",
        default=None,
        help="ASV score file (last two columns KEY SCORE, KEY target|nontarget|spoof) for min t-DCF",
    )
    p.add_argument(
        "--seen-attacks",
        default=None,
        help="comma-separated attacks seen in training (default: from the checkpoint's training.json)",
    )
    p.add_argument(
        "--chunk-seconds",
        type=float,
        default=None,
        help="override the scoring window: windows of this many seconds, hop = window, short clips "
        "repeat-padded (default: the checkpoint's window and hop, mean of the windows, as the SDK scores)",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="missing/corrupt audio files: fail (default) or skip and report",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--limit", type=int, default=None, help="score a seeded subset of this many trials")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    p.set_defaults(func=cmd_evaluate)


def _parser_analyse_layers(sub: Any) -> None:
    p = sub.add_parser("analyse-layers", help="learn layer weights over all SSL layers and recommend N")
    p.add_argument(
        "config",
        nargs="?",
        default=None,
        help="YAML run config of an SSL detector to train with a layer-weighted back-end",
    )
    _add_overrides(p)
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        help="already trained layer-weighted checkpoint(s) to include (repeatable)",
    )
    p.add_argument("-o", "--out", required=True, help="output directory for the PNG / markdown / JSON")
    p.add_argument(
        "--coverage", type=float, default=0.9, help="share of weight mass the kept layers must hold"
    )
    p.add_argument("--resume", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_analyse_layers)


def _parser_explain(sub: Any) -> None:
    p = sub.add_parser("explain", help="Integrated Gradients of a checkpoint on one audio file")
    p.add_argument("checkpoint")
    p.add_argument("audio")
    p.add_argument("-o", "--out", required=True, help="output directory for explain.png / explain.json")
    p.add_argument("--steps", type=int, default=64, help="IG path intervals (trapezoid rule)")
    p.add_argument("--max-seconds", type=float, default=6.0, help="explain at most the first N seconds")
    p.add_argument("--target", choices=("bonafide", "spoof"), default="bonafide")
    p.add_argument("--batch-size", type=int, default=4, help="path points per forward/backward pass")
    p.add_argument("--no-tf", action="store_true", help="skip the time-frequency (STFT) view")
    p.add_argument(
        "--baseline",
        choices=("noise", "zeros"),
        default="noise",
        help="IG reference input: white noise 30 dB below the clip RMS (default) or digital silence",
    )
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explain)


def _parser_init(sub: Any) -> None:
    p = sub.add_parser("init", help="write a randomly initialised checkpoint of a named architecture")
    p.add_argument("--preset", required=True, help="e.g. wavlm-base, xlsr-300m, aasist-l, wavlm-tiny")
    p.add_argument(
        "--backend", required=True, help="e.g. ffn, layer-weighted, sls, aasist, mhfa (or the raw kind)"
    )
    p.add_argument("--layers", type=int, default=None, help="keep the first N transformer layers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--pretrained",
        default=None,
        help="backbone weights: a local HF directory, fairseq / openai-whisper .pt, CTranslate2 directory, "
        "or 'pinned' for the preset's pinned registry weights (sha256-checked)",
    )
    p.add_argument("-o", "--out", required=True)
    p.set_defaults(func=cmd_init)


def _parser_convert(sub: Any) -> None:
    p = sub.add_parser(
        "convert", help="write a Whisper encoder (HF dir, openai .pt, CTranslate2 dir) as an HF directory"
    )
    p.add_argument("source", help="HF directory, openai-whisper .pt, CTranslate2 directory or pinned:NAME")
    p.add_argument("-o", "--out", required=True, help="output directory (WhisperEncoder.from_pretrained)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_convert)


def _parser_make_manifest(sub: Any) -> None:
    p = sub.add_parser(
        "make-manifest", help="turn a protocol / key file or bonafide/spoof folders into a manifest"
    )
    p.add_argument(
        "format",
        help="asvspoof2019-la | asvspoof2021-la | asvspoof2021-df | asvspoof5 | in-the-wild | folders",
    )
    p.add_argument("--protocol", action="append", default=[], help="protocol/key file (repeatable)")
    p.add_argument(
        "--audio-root", action="append", required=True, help="audio folder (repeatable, or one for all)"
    )
    p.add_argument("-o", "--out", required=True, help="manifest TSV to write")
    p.add_argument("--split", default=None, help="split name to assign (default: from the file name)")
    p.add_argument("--phases", default="eval", help="ASVspoof 2021 phases, comma-separated, or 'all'")
    p.add_argument("--on-missing", choices=("raise", "skip"), default="raise")
    p.add_argument("--no-check", action="store_true", help="do not check that the audio files exist")
    p.set_defaults(func=cmd_make_manifest)


def _parser_synth(sub: Any) -> None:
    p = sub.add_parser(
        "synth",
        help="make spoofs of a manifest's bona fide clips (re-synthesis) or of a text manifest (TTS)",
        description="Make spoof clips with generator plug-ins, conditioned like corpus-v1, and write "
        "OUT/MANIFEST.tsv with the licence of every clip. Generators: lpcnet, lpcnet-codec, piper, kokoro "
        "(neural); griffinlim, world, lpc, codec2, espeak (classic). A spec may carry options: "
        "NAME:KEY=VALUE,... (list values joined by +), e.g. kokoro:voices=jf_alpha+jm_kumo. A rerun skips "
        "the clips already made.",
    )
    p.add_argument(
        "manifest", help="clip manifest (its bona fide rows) or text manifest (id text language split)"
    )
    p.add_argument(
        "-o", "--out", required=True, help="output folder (audio/, MANIFEST.tsv, failures.tsv, synth.json)"
    )
    p.add_argument(
        "--generator", action="append", required=True, metavar="SPEC", help="generator spec (repeatable)"
    )
    p.add_argument("--splits", nargs="+", default=None, help="only these splits of the input")
    p.add_argument("--seed", type=int, default=20261207)
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--p-channel", type=float, default=0.3, help="share given a G.711/GSM round trip (0.3)")
    p.add_argument("--p-8k", type=float, default=0.65, help="share of TTS clips stored at 8 kHz (0.65)")
    p.add_argument("--limit", type=int, default=None, help="at most N inputs per generator (trials)")
    p.add_argument(
        "--noise-from",
        default=None,
        metavar="MANIFEST",
        help="TTS: lay the recorded room noise of a bona fide clip of the same split from this clip "
        "manifest under every clip (so pauses are not digital silence); its licence joins the clip's",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)


def _add_fit_options(p: argparse.ArgumentParser, what: str) -> None:
    """The flags of :class:`~spoof_train.config.FineTuneConfig`: what the fine-tuning jobs share (they
    train in the same loop as ``train``)."""
    p.add_argument("--train-split", default="train")
    p.add_argument("--max-train-files", type=int, default=None, help="a seeded subset of the split")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop-seconds", type=float, default=2.0, help="random training crops of this length")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help=f"replace an existing {what} and run folder")
    p.add_argument(
        "--run-dir",
        default=None,
        help=f"run folder: train.log, steps.csv, resumable state (default: OUT.run next to the {what})",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last state")
    p.add_argument(
        "--amp", choices=AMP_MODES, default="auto", help="autocast (auto: bf16/fp16 on CUDA, off on CPU)"
    )
    p.add_argument(
        "--ema-decay", type=float, default=None, help="keep an exponential weight average (e.g. 0.999)"
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (torchrun: one GPU per rank)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    p.add_argument("--json", action="store_true", help=f"print the {what}'s training.json")


def _fine_tune(
    args: argparse.Namespace, config_cls: Any, run: Callable[[Any], Path]
) -> dict[str, Any] | None:
    """Run a fine-tuning job from its flags (one per config field); its training.json for rank 0 to
    print, None when there is nothing more to print (another rank, or ``--json`` printed it)."""
    _set_threads(args)
    keys = {f for f in config_cls.__dataclass_fields__ if f != "extra"}
    path = run(config_cls(**{k: v for k, v in vars(args).items() if k in keys}))
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    info: dict[str, Any] = json.loads((path / "training.json").read_text(encoding="utf-8"))
    if args.json:
        _print_json(info)
        return None
    return info


def _parser_distil(sub: Any) -> None:
    p = sub.add_parser("distil", help="distil a trained SSL detector into a student with fewer layers")
    p.add_argument("--teacher", required=True, help="teacher checkpoint directory (contract A)")
    p.add_argument("--manifest", required=True, help="TSV manifest with the training (and dev) split")
    p.add_argument("-o", "--out", dest="out_dir", required=True, help="student checkpoint directory to write")
    p.add_argument(
        "--layers", type=int, required=True, help="student transformer layers (from the teacher's first N)"
    )
    p.add_argument(
        "--hidden-size", type=int, default=None, help="narrower student width (default: teacher's)"
    )
    p.add_argument("--intermediate-size", type=int, default=None)
    p.add_argument("--attention-heads", type=int, default=None)
    p.add_argument("--layer-map", default="uniform", help="uniform | first | pairs like 0:0,3:6,6:12")
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha-ce", type=float, default=1.0)
    p.add_argument("--alpha-kd", type=float, default=1.0)
    p.add_argument("--alpha-hidden", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=5e-5, help="backbone learning rate")
    p.add_argument("--head-lr", type=float, default=1e-3, help="back-end / projection learning rate")
    p.add_argument("--dev-split", default="dev", help="score student and teacher EER here ('' = skip)")
    p.add_argument("--max-dev-files", type=int, default=None)
    _add_fit_options(p, "student")
    p.set_defaults(func=cmd_distil)


def cmd_distil(args: argparse.Namespace) -> int:
    from spoof_train.distill import DistilConfig, distil

    args.dev_split = args.dev_split or None
    info = _fine_tune(args, DistilConfig, distil)
    if info is None:
        return EXIT_OK
    print(
        f"student: {args.out_dir} ({info['student_layers']} layers, {info['steps']} steps, "
        f"{info['seconds']} s)"
    )
    print(f"run folder: {info['run_dir']}")
    dev = info.get("dev", {})
    if dev:
        print(f"dev EER: student {dev['student']['eer']:.4f}  teacher {dev['teacher']['eer']:.4f}")
    return EXIT_OK


def _parser_qat(sub: Any) -> None:
    p = sub.add_parser(
        "qat", help="quantisation-aware fine-tuning of a checkpoint before spoof-export --int8"
    )
    p.add_argument("checkpoint", help="trained checkpoint directory (contract A)")
    p.add_argument("--manifest", required=True, help="TSV manifest with the training split")
    p.add_argument("-o", "--out", dest="out_dir", required=True, help="output checkpoint directory")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-5, help="backbone learning rate")
    p.add_argument("--head-lr", type=float, default=1e-4, help="back-end learning rate")
    p.add_argument("--int8-ops", choices=INT8_OPS, default="matmul-conv", help="as spoof-export --int8-ops")
    p.add_argument("--target", choices=QAT_TARGETS, default="cpu", help="as spoof-export --int8-target")
    p.add_argument("--quantize-first-conv", action="store_true", help="as spoof-export --quantize-first-conv")
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha-ce", type=float, default=1.0)
    p.add_argument("--alpha-kd", type=float, default=1.0)
    p.add_argument("--observer", choices=OBSERVERS, default="minmax")
    p.add_argument("--observer-momentum", type=float, default=0.01)
    p.add_argument("--calib-batches", type=int, default=4, help="FP32 batches that initialise the observers")
    _add_fit_options(p, "output")
    p.set_defaults(func=cmd_qat)


def cmd_qat(args: argparse.Namespace) -> int:
    from spoof_train.qat import QATConfig, qat

    info = _fine_tune(args, QATConfig, qat)
    if info is None:
        return EXIT_OK
    q = info["qat"]
    print(
        f"qat: {args.out_dir} ({info['steps']} steps, {info['seconds']} s, "
        f"{len(q['fake_quantised_modules'])} modules fake-quantised for target {q['target']}); "
        f"final losses {info['final_losses']}"
    )
    print(f"run folder: {info['run_dir']}")
    return EXIT_OK


def _parser_ensemble(sub: Any) -> None:
    p = sub.add_parser(
        "ensemble",
        help="fuse trained checkpoints into one detector (weighted mean of their logits)",
        description=(
            "Write a checkpoint of kind 'ensemble' whose logits are the weighted mean of the members' "
            "logits; spoof-export exports it as one ONNX graph. Members need the same sample rate, window "
            "and hop. The result is uncalibrated."
        ),
    )
    p.add_argument("checkpoints", nargs="+", help="two or more checkpoint directories")
    p.add_argument("-o", "--out", required=True, help="output checkpoint directory")
    p.add_argument("--weights", type=float, nargs="+", default=None, help="one weight per checkpoint")
    p.set_defaults(func=cmd_ensemble)


def cmd_ensemble(args: argparse.Namespace) -> int:
    from spoof_train.ensemble import build_ensemble

    out = build_ensemble(args.checkpoints, args.out, weights=args.weights)
    print(f"wrote ensemble of {len(args.checkpoints)} detectors to {out}")
    return EXIT_OK


#: every sub-command, in the order of ``spoof-train --help``
_PARSERS: tuple[Callable[[Any], None], ...] = (
    _parser_train,
    _parser_evaluate,
    _parser_analyse_layers,
    _parser_explain,
    _parser_init,
    _parser_convert,
    _parser_make_manifest,
    _parser_synth,
    _parser_distil,
    _parser_qat,
    _parser_ensemble,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spoof-train",
        description="Train, evaluate, analyse and explain voice anti-spoofing detectors.",
        epilog="exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()),
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument(
        "--version", action=PrintVersion, help="print the version and exit", version=_version()
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _PARSERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose + 1, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("spoof-train: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ConfigError, DataError, CheckpointError, MetricError, OSError) as exc:
        # most specific first: a CheckpointError is also an OSError
        for kind, code, label in _ERROR_EXITS:
            if isinstance(exc, kind):
                print(f"spoof-train: {label}{exc}", file=sys.stderr)
                return code
        raise  # pragma: no cover - every caught type is in the table
    except Exception as exc:
        from spoof_train.synth.base import GeneratorUnavailableError

        if isinstance(exc, GeneratorUnavailableError):
            print(f"spoof-train: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        traceback.print_exc()
        print("spoof-train: internal error (please report it with the traceback above)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
