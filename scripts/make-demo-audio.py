"""Make the demo audio of ``scripts/demo.sh`` in one folder (default ``out/demo-audio``).

* real speech: the recordings committed in ``examples/audio/real/`` (Asterisk it-IT prompts, voice Carlo,
  CC BY 3.0; see examples/audio/ATTRIBUTION.md) and, when the Debian package ``asterisk-core-sounds-en-wav``
  is installed (scripts/setup.sh installs it), two en-US prompts by Allison Smith (CC BY-SA 3.0) copied from
  ``/usr/share/asterisk/sounds/en_US_f_Allison``;
* spoofed speech generated here, offline, with espeak-ng (two English voices reading call-centre fraud
  lines), plus one of them sent through G.711 mu-law at 8 kHz the way it would arrive over a phone line;
* a neural deepfake made here: the first Allison prompt re-synthesised by the LPCNet neural vocoder in
  Debian's ``libcodec2-1.0`` (``spoof-train synth``'s ``lpcnet`` generator; weights LGPL-2.1, the clip a
  derivative of the CC BY-SA 3.0 prompt); skipped with a note when libcodec2 or the prompt is missing;
* audio without speech generated here (tests/sdk/gating_cases.py): hold music and a muted line with comfort
  noise, which the detector's speech gate calls ``undetermined`` instead of judging.

Nothing is downloaded. Exit code 2 when espeak-ng is missing (the spoofed half of the demo needs it).

    .venv/bin/python scripts/make-demo-audio.py [OUT_DIR]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
REAL_DIR = ROOT / "examples" / "audio" / "real"
ALLISON = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
# en-US prompts that are NOT in corpus-v1 (the Allison voice itself is in the corpus-v1 train split).
ALLISON_PROMPTS = ("vm-review", "dir-intro")
SPOOF_LINES = {
    "espeak-en-us-bank": (
        "en-us",
        "Hello, this is your bank's security team. We have detected unusual activity "
        "on your account and need you to confirm your one time passcode.",
    ),
    "espeak-en-gb-grandson": (
        "en-gb",
        "Hi Grandpa, it's me. I've had a small accident and I need you to send "
        "some money for the repairs today, please don't tell Mum.",
    ),
}


def espeak(voice: str, text: str, out: Path) -> None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FileNotFoundError(
            "espeak-ng is not installed (apt-get install espeak-ng; scripts/setup.sh does it)"
        )
    subprocess.run([exe, "-v", voice, "-s", "155", "-w", str(out), text], check=True, capture_output=True)


def to_mulaw_8k(src: Path, out: Path) -> None:
    """Resample to 8 kHz and write G.711 mu-law WAV (what a phone line carries)."""
    from spoofsdk.audio import resample  # native polyphase resampler of the SDK

    x, sr = sf.read(src, dtype="float32")
    y = resample(np.ascontiguousarray(x), sr, 8000) if sr != 8000 else x
    sf.write(out, np.clip(y, -1.0, 1.0), 8000, subtype="ULAW")


def lpcnet_copy(out: Path) -> Path | None:
    """The first Allison prompt re-synthesised by LPCNet (a neural vocoder): a voice clone of a real
    recording, the kind of spoof the v1 detector missed. None (with a note) when it cannot be made."""
    src = ALLISON / f"{ALLISON_PROMPTS[0]}.wav"
    try:
        import spoof_train.synth  # noqa: F401 - registers the generators
        from spoof_train.synth.base import GeneratorUnavailableError, make_generator
    except ImportError:
        print("note: spoof_train is not installed; no LPCNet example")
        return None
    if not src.is_file():
        print(f"note: {src} not found; no LPCNet example")
        return None
    try:
        gen = make_generator("lpcnet")
        gen.check()
    except GeneratorUnavailableError as exc:
        print(f"note: no LPCNet example: {exc}")
        return None
    x, sr = sf.read(src, dtype="float32")
    y = gen.resynthesize(x, sr, np.random.default_rng(0))
    dst = out / f"spoof-lpcnet-allison-{ALLISON_PROMPTS[0]}.wav"
    sf.write(dst, np.clip(y, -1.0, 1.0), sr, subtype="PCM_16")
    return dst


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "out" / "demo-audio"
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    for f in sorted(REAL_DIR.glob("*.wav")):
        dst = out / f"real-{f.name}"
        shutil.copyfile(f, dst)
        made.append(dst)
    if ALLISON.is_dir():
        for name in ALLISON_PROMPTS:
            src = ALLISON / f"{name}.wav"
            if src.is_file():
                dst = out / f"real-en-allison-{name}.wav"
                shutil.copyfile(src, dst)
                made.append(dst)
    else:
        print(f"note: {ALLISON} not found (asterisk-core-sounds-en-wav); using the committed prompts only")
    try:
        for name, (voice, text) in SPOOF_LINES.items():
            dst = out / f"spoof-{name}.wav"
            espeak(voice, text, dst)
            made.append(dst)
        tel = out / "spoof-espeak-en-us-bank-mulaw8k.wav"
        to_mulaw_8k(out / "spoof-espeak-en-us-bank.wav", tel)
        made.append(tel)
        lpcnet = lpcnet_copy(out)
        if lpcnet is not None:
            made.append(lpcnet)
        sys.path.insert(0, str(ROOT / "tests" / "sdk"))
        from gating_cases import non_speech

        cases = non_speech(6.0)
        for name, case in (
            ("hold-music", "hold music (-20 dBFS)"),
            ("muted-line", "comfort noise (pink, -55 dBFS)"),
        ):
            dst = out / f"nospeech-{name}.wav"
            sf.write(dst, cases[case], 16000, subtype="PCM_16")
            made.append(dst)
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        print(f"error: cannot generate the spoofed examples: {exc}", file=sys.stderr)
        return 2
    for p in made:
        info = sf.info(p)
        print(f"{p.relative_to(out.parent) if p.is_relative_to(out.parent) else p}: "
              f"{info.duration:.2f} s, {info.samplerate} Hz, {info.subtype}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
