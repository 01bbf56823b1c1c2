"""A supplementary, licensed training set built from recorded speech in Debian packages (a data recipe
of default detector v1, not part of the wheel; its conditioning and re-syntheses are
:mod:`spoof_train.synth.classic`).

corpus-v1 has few bona fide talkers on short clips, so a detector learns the microphones of its training
talkers: its worst test errors are the digits of one new talker recorded on another microphone (called
spoofs) and Griffin-Lim / WORLD re-syntheses under 1 s (called bona fide). This module adds talkers, each
with their own microphone and room, **and the re-syntheses of their own clips**, so that a microphone is
never a label cue: every bona fide clip gets a Griffin-Lim and a WORLD copy, conditioned the same way.

Sources (:data:`SOURCES`; every clip's licence is checked against the package's ``copyright`` file):

* ``ktuberling-data``: the spoken object names of KTuberling, one volunteer per language, GPL-2+. Languages
  whose KLettres talker sits in corpus-v1 dev or test (de, it, da, es, nds; nn with nb) are left out, in
  case the same volunteer recorded both; the four Serbian folders hold one recording set (content hashes
  dedupe them).
* ``asterisk-prompt-fr-armelle``: French IVR prompts, voice Armelle Desjardins, BSD-style licence (Michel
  Gutierrez, 2006); ``asterisk-prompt-es-co``: Colombian Spanish IVR prompts (Avatar Ltda.), GPL-2. Both
  8 kHz GSM, talkers not in corpus-v1. Beeps are left out.

Every clip goes to the ``train`` split (the corpus' dev and test stay the yardstick). Conditioning follows the
corpus-v1 README's rules (:func:`condition`), so level, silence, noise floor and telephony channel carry no
label information; with probability ``p_8k`` a wide-band source is first brought to 8 kHz (the corpus is two
thirds 8 kHz), before the re-syntheses are made, so pairs share the rate.

Command line (reads the packages where installed, else fetches them with ``apt-get download`` into
``--cache``: no root, nothing installed; ``packages.json`` in the output records the versions used)::

    python recipes/default-detector/v1/debian_speech.py -o runs/extra/debian-speech --cache runs/extra/debs
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from spoof_train.errors import DataError
from spoof_train.synth.classic import condition, griffin_lim_resynthesis, trim_silence, world_resynthesis

__all__ = [
    "SOURCES",
    "Source",
    "build",
    "condition",
    "fetch_packages",
    "griffin_lim_resynthesis",
    "list_clips",
    "main",
    "package_versions",
    "trim_silence",
    "world_resynthesis",
]

log = logging.getLogger("spoof_train")


@dataclass(frozen=True)
class Source:
    """One Debian package of recorded speech.

    ``audio_dir`` is relative to the unpacked package; ``speaker_of(relative_path)`` names the talker of a
    file (``None`` leaves the file out); ``licence`` is written to the manifest; ``licence_marker`` must occur
    in the package's copyright file, else the build stops (a changed licence is not silently inherited).
    """

    package: str
    audio_dir: str
    patterns: tuple[str, ...]
    licence: str
    licence_marker: str
    speaker_of: Callable[[str], str | None]
    per_speaker: int


#: KTuberling languages left out: their KLettres talker is in corpus-v1 dev (de, it, nb) or test (da, es,
#: nds).
KTUBERLING_EXCLUDED = frozenset({"de", "it", "nn", "da", "es", "nds"})


def _ktuberling_speaker(rel: str) -> str | None:
    parts = rel.split("/")
    if len(parts) != 2:
        return None
    lang = parts[0].split("@")[0]
    return None if lang in KTUBERLING_EXCLUDED else f"ktuberling-{lang}"


def _asterisk_speaker(name: str) -> Callable[[str], str | None]:
    def speaker(rel: str) -> str | None:
        return None if Path(rel).stem.startswith("beep") else name

    return speaker


SOURCES: tuple[Source, ...] = (
    Source(
        "ktuberling-data",
        "usr/share/ktuberling/sounds",
        ("*/*.ogg", "*/*.wav"),
        "GPL-2+",
        "License: GPL-2+",
        _ktuberling_speaker,
        30,
    ),
    Source(
        "asterisk-prompt-fr-armelle",
        "usr/share/asterisk/sounds/fr",
        ("*.gsm", "*/*.gsm"),
        "BSD-style (asterisk-prompt-fr-armelle)",
        "Redistribution and use, with or without modification, are permitted",
        _asterisk_speaker("asterisk-armelle"),
        60,
    ),
    Source(
        "asterisk-prompt-es-co",
        "usr/share/asterisk/sounds/es",
        ("*.gsm", "*/*.gsm"),
        "GPL-2",
        "GNU General Public License",
        _asterisk_speaker("asterisk-es-co"),
        60,
    ),
)


# --------------------------------------------------------------------------------------------- fetching


def _installed_version(package: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    run = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}\t${Version}", package], check=False, capture_output=True, text=True
    )
    status, _, version = run.stdout.partition("\t")
    return version if run.returncode == 0 and status == "install ok installed" else None


def fetch_packages(
    packages: Iterable[str], cache: str | Path, *, use_installed: bool = True
) -> dict[str, Path]:
    """Find or fetch each package: an installed one is read in place (root ``/``) when ``use_installed``;
    otherwise it is downloaded (``apt-get download``, no root needed) and unpacked (``dpkg-deb -x``) under
    ``cache``, where a second build finds it again (offline). Returns package -> root of its files; the
    version used is in ``<cache>/<package>/.unpacked`` or, for an installed package, :func:`package_versions`.
    """
    cache = Path(cache)
    roots: dict[str, Path] = {}
    for pkg in packages:
        root = cache / pkg
        if (root / ".unpacked").exists():
            roots[pkg] = root
            continue
        if use_installed and _installed_version(pkg) is not None:
            roots[pkg] = Path("/")
            continue
        for tool in ("apt-get", "dpkg-deb"):
            if shutil.which(tool) is None:
                raise DataError(f"fetching {pkg}: {tool!r} is not on PATH (a Debian/Ubuntu system is needed)")
        cache.mkdir(parents=True, exist_ok=True)
        debs = sorted(cache.glob(f"{pkg}_*.deb"))
        if not debs:
            run = subprocess.run(
                ["apt-get", "download", pkg], cwd=cache, check=False, capture_output=True, text=True
            )
            debs = sorted(cache.glob(f"{pkg}_*.deb"))
            if run.returncode != 0 or not debs:
                raise DataError(
                    f"apt-get download {pkg} failed ({run.returncode}): {run.stderr.strip()[-400:]}; "
                    f"refresh the package lists (sudo apt-get update) or install it "
                    f"(sudo apt-get install {pkg})"
                )
        if root.exists():
            shutil.rmtree(root)
        run = subprocess.run(
            ["dpkg-deb", "-x", str(debs[-1]), str(root)], check=False, capture_output=True, text=True
        )
        if run.returncode != 0:
            raise DataError(f"dpkg-deb -x {debs[-1].name} failed: {run.stderr.strip()[-500:]}")
        (root / ".unpacked").write_text(debs[-1].name + "\n")
        roots[pkg] = root
    return roots


def package_versions(roots: dict[str, Path]) -> dict[str, str]:
    """What :func:`fetch_packages` found: the unpacked ``.deb`` file name, or ``installed <version>``."""
    out = {}
    for pkg, root in roots.items():
        marker = root / ".unpacked"
        out[pkg] = marker.read_text().strip() if marker.exists() else f"installed {_installed_version(pkg)}"
    return out


def _copyright(root: Path, package: str) -> Path:
    path = root / "usr/share/doc" / package / "copyright"
    if not path.is_file():
        raise DataError(f"{package}: no copyright file at {path}")
    return path


def list_clips(source: Source, root: str | Path, *, seed: int = 0) -> list[tuple[str, Path]]:
    """``(speaker, path)`` of the clips of ``source`` unpacked at ``root``: licence checked, duplicates (same
    bytes) removed, at most ``per_speaker`` per talker drawn at random with ``seed`` (sorted output)."""
    root = Path(root)
    text = _copyright(root, source.package).read_text(errors="replace")
    if source.licence_marker not in text:
        raise DataError(
            f"{source.package}: its copyright file no longer contains {source.licence_marker!r}; "
            f"check the licence before training on it"
        )
    base = root / source.audio_dir
    if not base.is_dir():
        raise DataError(f"{source.package}: no audio folder {base}")
    seen: set[str] = set()
    by_speaker: dict[str, list[Path]] = {}
    files = sorted(
        {p for pat in source.patterns for p in base.glob(pat) if p.is_file() and not p.is_symlink()}
    )
    for path in files:
        speaker = source.speaker_of(path.relative_to(base).as_posix())
        if speaker is None:
            continue
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        by_speaker.setdefault(speaker, []).append(path)
    rng = np.random.default_rng(seed)
    out: list[tuple[str, Path]] = []
    for speaker in sorted(by_speaker):
        paths = by_speaker[speaker]
        if len(paths) > source.per_speaker:
            idx = rng.choice(len(paths), size=source.per_speaker, replace=False)
            paths = [paths[i] for i in sorted(idx)]
        out.extend((speaker, p) for p in paths)
    return out


def _read(path: Path) -> tuple[NDArray[np.float64], int]:
    import soundfile as sf

    try:
        if path.suffix == ".gsm":  # Asterisk's headerless GSM 06.10 frames, 8 kHz
            x, sr = sf.read(str(path), format="RAW", subtype="GSM610", samplerate=8000, channels=1)
        else:
            x, sr = sf.read(str(path), always_2d=True)
            x = x.mean(axis=1)
    except Exception as exc:  # libsndfile's errors are RuntimeError / LibsndfileError
        raise DataError(f"cannot decode {path}: {exc}") from exc
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise DataError(f"{path}: non-finite samples")
    return x, int(sr)


# --------------------------------------------------------------------------------------------------- build


def build(
    out_dir: str | Path,
    roots: dict[str, Path],
    *,
    sources: Sequence[Source] = SOURCES,
    seed: int = 20261203,
    p_8k: float = 0.5,
    split: str = "train",
    per_speaker: int | None = None,
) -> Path:
    """Write FLAC clips and ``MANIFEST.tsv`` (corpus-v1 columns) under ``out_dir``: every selected bona fide
    clip, its ``griffinlim`` and its ``world`` re-synthesis. ``roots`` maps package -> unpacked folder;
    ``per_speaker`` replaces every source's cap on clips per talker."""
    import soundfile as sf

    from spoof_train.data.audio import resample
    from spoof_train.data.manifest import Utterance, write_manifest

    out = Path(out_dir)
    rows: list[Utterance] = []
    if per_speaker is not None:
        if per_speaker < 1:
            raise DataError(f"per_speaker must be >= 1, got {per_speaker}")
        sources = [dataclasses.replace(s, per_speaker=per_speaker) for s in sources]
    for source in sources:
        if source.package not in roots:
            raise DataError(f"no unpacked folder given for {source.package}")
        clips = list_clips(source, roots[source.package], seed=seed)
        if not clips:
            raise DataError(f"{source.package}: no clip selected")
        for k, (speaker, path) in enumerate(clips):
            rng = np.random.default_rng([seed, _crc(source.package), k])
            x, sr = _read(path)
            stored = 16000 if sr > 8000 else 8000  # corpus-v1's two stored rates
            if sr != stored:
                x, sr = np.asarray(resample(x, sr, stored), dtype=np.float64), stored
            if sr > 8000 and rng.random() < p_8k:
                x, sr = np.asarray(resample(x, sr, 8000), dtype=np.float64), 8000
            if len(x) < 0.15 * sr:  # too short to keep after trimming anyway
                log.warning("%s: %.3f s, left out", path, len(x) / sr)
                continue
            stem = f"{speaker}__{path.stem}"
            versions = {
                "-": x,
                "griffinlim": griffin_lim_resynthesis(x, sr, rng),
                "world": world_resynthesis(x, sr),
            }
            for attack, wave in versions.items():
                done = condition(wave, sr, rng)
                if done is None:
                    continue
                audio, channel = done
                label = "bonafide" if attack == "-" else "spoof"
                name = stem if attack == "-" else f"{attack}__{stem}"
                rel = Path("audio") / split / source.package / f"{name}.flac"
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(out / rel), audio, sr, subtype="PCM_16", format="FLAC")
                licence = source.licence if attack == "-" else f"derivative of {source.licence}"
                rows.append(
                    Utterance(
                        str((out / rel).resolve()),
                        label,
                        attack,
                        speaker,
                        split,
                        {
                            "source": source.package if attack == "-" else "offline_resynth",
                            "sample_rate": str(sr),
                            "seconds": f"{len(audio) / sr:.3f}",
                            "channel": channel,
                            "licence": licence,
                        },
                    )
                )
        log.info("%s: %d clips", source.package, len(clips))
    return write_manifest(out / "MANIFEST.tsv", rows)


def _crc(text: str) -> int:
    """A stable per-source seed component (Python's ``hash`` of a string changes between runs)."""
    import zlib

    return zlib.crc32(text.encode())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python recipes/default-detector/v1/debian_speech.py",
        description="Build the supplementary licensed training set from Debian speech packages "
        "(bona fide clips + their Griffin-Lim and WORLD re-syntheses).",
    )
    p.add_argument("-o", "--output", required=True, help="output folder (audio/ and MANIFEST.tsv)")
    p.add_argument("--cache", required=True, help="where the .deb files are downloaded and unpacked")
    p.add_argument("--seed", type=int, default=20261203)
    p.add_argument("--p-8k", type=float, default=0.5, help="share of wide-band clips brought to 8 kHz")
    p.add_argument(
        "--per-speaker",
        type=int,
        default=None,
        help="cap on clips per talker for every source (default: 30 per KTuberling language, 60 per "
        "Asterisk voice)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if not 0.0 <= args.p_8k <= 1.0:
            raise DataError(f"--p-8k must be in [0, 1], got {args.p_8k}")
        roots = fetch_packages([s.package for s in SOURCES], args.cache)
        manifest = build(args.output, roots, seed=args.seed, p_8k=args.p_8k, per_speaker=args.per_speaker)
        versions = {
            "packages": package_versions(roots),
            "seed": args.seed,
            "p_8k": args.p_8k,
            "per_speaker": args.per_speaker,
        }
        (Path(args.output) / "packages.json").write_text(
            json.dumps(versions, indent=2, sort_keys=True) + "\n"
        )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
