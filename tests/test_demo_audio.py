"""scripts/make-demo-audio.py: the demo audio is made on the machine, and each file is what its name says."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def _module() -> Any:  # a script, loaded by path
    spec = importlib.util.spec_from_file_location("make_demo_audio", REPO / "scripts" / "make-demo-audio.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_demo_audio_is_made_here_with_the_lpcnet_copy_of_a_real_prompt(tmp_path: Path) -> None:
    mod = _module()
    src = mod.ALLISON / f"{mod.ALLISON_PROMPTS[0]}.wav"
    assert mod.main([str(tmp_path)]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"spoof-espeak-en-us-bank.wav", "spoof-espeak-en-us-bank-mulaw8k.wav"} <= names
    assert {"nospeech-hold-music.wav", "nospeech-muted-line.wav"} <= names
    copy = tmp_path / f"spoof-lpcnet-allison-{mod.ALLISON_PROMPTS[0]}.wav"
    if not src.is_file():
        assert not copy.exists()
        pytest.skip(f"{src} not installed (asterisk-core-sounds-en-wav): no LPCNet copy to check")
    try:
        import spoof_train.synth  # noqa: F401
        from spoof_train.synth.base import GeneratorUnavailableError, make_generator

        make_generator("lpcnet").check()
    except (ImportError, GeneratorUnavailableError) as exc:
        assert not copy.exists()
        pytest.skip(f"no LPCNet here: {exc}")
    x, sr = sf.read(src, dtype="float32")
    y, sr_y = sf.read(copy, dtype="float32")
    assert sr_y == sr
    assert len(y) == len(x)  # the same prompt, re-synthesised sample-aligned
    assert not np.allclose(x, y, atol=1e-3)  # not a copy of the samples
    hop = sr // 100
    ex = [np.sqrt(np.mean(x[i : i + hop] ** 2)) for i in range(0, len(x) - hop, hop)]
    ey = [np.sqrt(np.mean(y[i : i + hop] ** 2)) for i in range(0, len(y) - hop, hop)]
    assert np.corrcoef(ex, ey)[0, 1] > 0.8  # the same speech, at the same times
