"""The default detector shipped inside the package (sdk/spoofsdk/models/default.onnx, docs/model-card.md).

Loads through ``Detector()`` and ``spoof-score`` with no model path, carries a complete calibrated manifest,
calls espeak-ng speech generated here a spoof and real recordings bona fide, and (``corpus`` lane) keeps
its corpus-v1 test EERs within regression bounds of the measured figures.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from spoofsdk import Detector
from spoofsdk.cli import main as spoof_score
from spoofsdk.errors import InvalidAudioError

REPO = Path(__file__).resolve().parents[1]
REAL_DIR = REPO / "examples" / "audio" / "real"
MAX_MODEL_BYTES = 10 * 1024 * 1024
# Attacks of the licensed corpus-v1 train rows the shipped model was trained on (docs/model-card.md).
SEEN_ATTACKS = {"espeak", "festival_kal", "flite_awb", "flite_kal", "flite_rms", "griffinlim", "world"}


@pytest.fixture(scope="module")
def default_path() -> Path:
    return Path(str(resources.files("spoofsdk").joinpath("models/default.onnx")))


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(num_threads=1)


def test_bundled_file_is_present_small_and_licensed(default_path: Path) -> None:
    assert default_path.is_file(), f"the default detector must ship at {default_path}"
    assert default_path.stat().st_size <= MAX_MODEL_BYTES
    note = default_path.parent / "LICENSE.md"
    assert note.is_file()
    text = note.read_text()
    assert "no licence stated" in text  # says which corpus rows were excluded from training


def test_bundled_file_passes_the_offline_tensorrt_check(default_path: Path) -> None:
    """``Detector()`` loads the bundled file on every backend (``auto`` tries TensorRT first on a GPU box or
    Jetson), so it must be a graph TensorRT's ONNX parser builds: a CPU-target int8 export (uint8 zero
    points, int32 bias DequantizeLinear) is not."""
    onnx = pytest.importorskip("onnx")
    trt_check = pytest.importorskip("spoof_export.tensorrt")

    report = trt_check.check_tensorrt_compatibility(onnx.load(str(default_path)), strict=False)
    assert report["ok"], report["blockers"]


def test_loads_without_a_path_and_reports_load_time(
    default_path: Path, record_property: pytest.RecordProperty
) -> None:
    t0 = time.perf_counter()
    det = Detector(num_threads=1)
    load_s = time.perf_counter() - t0
    record_property("default_detector_load_s", round(load_s, 4))  # measured, not asserted (shared CPU)
    assert det.path.resolve() == default_path.resolve()
    assert det.backend == "cpu"


def test_manifest_is_complete_and_calibrated(detector: Detector) -> None:
    m = detector.manifest
    assert m.sample_rate == 16000
    assert (detector.window_samples, detector.hop_samples) == (32000, 16000)
    assert m.label_order == ("bonafide", "spoof")
    assert m.spoof_index == 1
    # Calibrated on dev: not the identity map, a positive slope, a threshold strictly inside (0, 1).
    assert m.calibration.scale > 0
    assert math.isfinite(m.calibration.bias)
    assert (m.calibration.scale, m.calibration.bias) != (1.0, 0.0)
    assert 0.0 < m.threshold < 1.0
    assert m.precision in ("fp32", "int8")
    assert m.exporter == "spoof_export"
    assert len(m.source_sha256) == 64
    # Clips much shorter than a window are scored (corpus-v1's median clip is 0.56 s).
    assert detector.min_samples <= 0.25 * m.sample_rate


def test_too_short_audio_is_a_typed_error(detector: Detector) -> None:
    with pytest.raises(InvalidAudioError, match="too short"):
        detector.score(np.zeros(100, dtype=np.float32), sample_rate=16000)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_espeak_speech_generated_here_is_a_spoof(detector: Detector, tmp_path: Path) -> None:
    wav = tmp_path / "espeak.wav"
    text = "Hello, this is the fraud department of your bank, please read me the code we just sent you."
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True, capture_output=True)
    pcm, sr = sf.read(wav, dtype="float32")
    score = detector.score(pcm, sample_rate=sr)
    assert score.is_spoof, f"espeak-ng speech scored bona fide: p_spoof={score.spoof_prob:.3f}"
    assert score.spoof_prob > detector.threshold


# Both Carlo prompts: an unseen test-split speaker (the previous magnitude-only model flagged
# agent-incorrect at p_spoof 0.447 > 0.353; the shipped model gives 0.036 and 0.083 with threshold 0.451).
@pytest.mark.parametrize("name", ["it-carlo-agent-incorrect.wav", "it-carlo-demo-thanks.wav"])
def test_real_recording_is_bona_fide(detector: Detector, name: str) -> None:
    path = REAL_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} is not in this checkout")
    pcm, sr = sf.read(path, dtype="int16")
    score = detector.score(pcm, sample_rate=sr)
    assert not score.is_spoof, f"{name} (real, unseen speaker) scored spoof: p_spoof={score.spoof_prob:.3f}"


def test_spoof_score_uses_the_bundled_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = next(iter(sorted(REAL_DIR.glob("*.wav"))), None)
    if src is None:
        pytest.skip("no committed real recording")
    out = tmp_path / "scores.json"
    rc = spoof_score([str(src), "--format", "json", "--threads", "1", "--no-progress", "-o", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["model"] == "(bundled)"
    assert doc["results"][0]["ok"]
    assert 0.0 <= doc["results"][0]["spoof_prob"] <= 1.0


# Regression bounds on CI data (corpus-v1 test, every window scored as the model card's figures): the shipped
# file measured 6.03 % on the attacks seen in training and 23.10 % over all rows (docs/model-card.md); the
# bounds leave 0.5 and 1.5 points for scoring differences between runs (the file is deterministic; the
# margin is for onnxruntime versions). The 5 % seen-attack target of issue 6 is retired (issue 20).
SEEN_EER_BOUND = 0.065
ALL_EER_BOUND = 0.246


@pytest.mark.corpus
@pytest.mark.slow
def test_corpus_v1_test_eer_stays_within_its_regression_bounds(corpus_dir: Path) -> None:
    from spoof_train.data import read_manifest
    from spoof_train.metrics import compute_eer

    det = Detector(num_threads=1, speech_gate=False)
    rows = [r for r in read_manifest(corpus_dir / "MANIFEST.tsv") if r.split == "test"]
    bona, seen, spoof = [], [], []
    for r in rows:
        pcm, sr = sf.read(r.path, dtype="float32")
        score = -det.score(pcm, sample_rate=sr).logit  # higher = more bona fide
        if r.label == "bonafide":
            bona.append(score)
        else:
            spoof.append(score)
            if r.attack in SEEN_ATTACKS:
                seen.append(score)
    assert len(bona) > 250
    assert len(seen) > 250
    seen_eer, _ = compute_eer(np.array(bona), np.array(seen))
    all_eer, _ = compute_eer(np.array(bona), np.array(spoof))
    assert seen_eer <= SEEN_EER_BOUND, f"corpus-v1 test EER, seen attacks {100 * seen_eer:.2f} % (was 6.03 %)"
    assert all_eer <= ALL_EER_BOUND, f"corpus-v1 test EER over all rows {100 * all_eer:.2f} % (was 23.10 %)"


# ---- the pieces of the recipe: licence filter and the spectral model kind -------------------------------


def _utt(path: str, licence: str | None, split: str = "train") -> object:
    from spoof_train.data import Utterance

    extra = {} if licence is None else {"licence": licence}
    return Utterance(path=path, label="bonafide", attack="-", speaker="s", split=split, extra=extra)


def test_licence_filter_drops_unlicensed_and_derivative_rows() -> None:
    from spoof_train.licence import filter_by_licence, is_licensed, licence_report

    rows = [
        _utt("a.flac", "CC BY 4.0"),
        _utt("b.flac", "no licence stated"),
        _utt("c.flac", " Derivative of no licence  stated"),
        _utt("d.flac", "derivative of CC BY-SA 3.0", split="dev"),
    ]
    kept, dropped = filter_by_licence(rows)
    assert [r.path for r in kept] == ["a.flac", "d.flac"]  # type: ignore[attr-defined]
    assert [r.path for r in dropped] == ["b.flac", "c.flac"]  # type: ignore[attr-defined]
    report = licence_report(kept, dropped)
    assert report["kept_per_split"] == {"dev/bonafide": 1, "train/bonafide": 1}
    assert is_licensed("CC BY 4.0")
    assert not is_licensed(" Derivative of no licence  stated")
    assert is_licensed("no licence stated", exclude=["GPL-2"])


def test_licence_filter_refuses_rows_without_a_licence() -> None:
    from spoof_train.errors import DataError
    from spoof_train.licence import filter_by_licence

    with pytest.raises(DataError, match="has no 'licence' value"):
        filter_by_licence([_utt("a.flac", "CC BY 4.0"), _utt("x.flac", None)])
    with pytest.raises(DataError, match="has no 'licence' value"):
        filter_by_licence([_utt("y.flac", "-")])


@pytest.mark.parametrize(
    ("script", "env", "args", "message"),
    [
        ("v1/train.sh", {"EXTRA": "all"}, [], "EXTRA must be debian or none, got 'all'"),
        ("v1/train.sh", {}, ["--fast"], "unknown argument: --fast"),
        ("v1/train.sh", {"CORPUS": "/nonexistent"}, [], "corpus-v1 not found at /nonexistent"),
        ("train.sh", {}, ["--fast"], "unknown argument: --fast"),
        ("train.sh", {"CORPUS_V1": "/nonexistent"}, [], "corpus-v1 not found at /nonexistent"),
        ("train.sh", {"CORPUS_V2": "/nonexistent"}, [], "corpus-v2 not found at /nonexistent"),
        ("package.sh", {}, ["--fast"], "unknown argument: --fast (expected --judge-only / --ship)"),
        ("package.sh", {"V1": "/nonexistent.onnx"}, [], "missing input: /nonexistent.onnx"),
    ],
)
def test_recipes_refuse_bad_options_before_doing_anything(
    tmp_path: Path, script: str, env: dict[str, str], args: list[str], message: str
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "MANIFEST.tsv").write_text("path\tlabel\tattack\tspeaker\tsplit\n")
    run = subprocess.run(
        ["bash", str(REPO / "recipes" / "default-detector" / script), *args],
        env={
            "PATH": "/usr/bin:/bin",
            "CORPUS": str(corpus),
            "CORPUS_V1": str(corpus),
            "CORPUS_V2": str(corpus),
            "OUT": str(tmp_path / "out"),
            **env,
        },
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert message in run.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "front",
    [
        {},
        {"phase": True},
        {"excitation": True},
        {"phase": True, "excitation": True},
        {"band_norm": True},
        {"phase": True, "excitation": True, "band_norm": True},
        {"phase": True, "excitation": True, "excitation_bands": [1000, 2000, 4000]},
        {"phase": True, "excitation": True, "normalize_embedding": True},
    ],
)
def test_spectral_model_pads_exactly_is_gain_invariant_and_scores_short_input(
    front: dict[str, object],
) -> None:
    torch = pytest.importorskip("torch")
    from spoof_train.errors import DataError
    from spoof_train.models import DetectorConfig, build_detector

    cfg = DetectorConfig(
        kind="spectral",
        backend={
            "name": "spectral",
            "config": {"channels": [8, 8], "stem_channels": 4, "embed_dim": 8, **front},
        },
    )
    model = build_detector(cfg, seed=0).eval()
    gen = torch.Generator().manual_seed(0)
    short = 0.05 * torch.randn(1, model.min_samples, generator=gen)
    long = 0.05 * torch.randn(1, 20000, generator=gen)
    batch = torch.zeros(2, 20000)
    batch[0, : short.shape[1]] = short[0]
    batch[1] = long[0]
    with torch.no_grad():
        alone = model(short)
        padded = model(batch, torch.tensor([short.shape[1], 20000]))
        louder = model(10.0 * long)
        quiet = model(long)
    torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(padded[1], quiet[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(louder, quiet, atol=1e-4, rtol=0)  # level does not change the logits
    with pytest.raises(DataError, match="at least"):
        model(torch.zeros(1, model.min_samples - 1))


def test_normalized_embedding_makes_the_contract_score_the_oc_cosine(tmp_path: Path) -> None:
    """With ``normalize_embedding`` the exported score ``logit_bf - logit_spoof`` is ``|w| cos + b``: an
    affine, increasing map of the cosine OC-Softmax trains, so ranking and EER are the OC decision's; the
    exported graph computes the same and passes the offline TensorRT check."""
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    trt_check = pytest.importorskip("spoof_export.tensorrt")
    from spoof_train.models import DetectorConfig, build_detector
    from spoof_train.train import OCSoftmaxLoss

    def scores_and_cosines(normalize: bool) -> tuple[Any, Any, Any, Any]:
        cfg = DetectorConfig(
            kind="spectral",
            backend={
                "name": "spectral",
                "config": {
                    "channels": [8, 8],
                    "stem_channels": 4,
                    "embed_dim": 8,
                    "normalize_embedding": normalize,
                },
            },
        )
        model = build_detector(cfg, seed=0).eval()
        loss = OCSoftmaxLoss(model)
        gen = torch.Generator().manual_seed(1)
        # Different levels of structure (tone + noise mixtures) so the embeddings' norms differ.
        t = torch.arange(8000) / 16000
        wave = torch.stack(
            [
                a * torch.sin(2 * torch.pi * f * t) + n * torch.randn(8000, generator=gen)
                for a, f, n in [
                    (1, 200, 0.01),
                    (0.1, 900, 0.5),
                    (0.5, 3000, 0.05),
                    (0, 1, 1.0),
                    (1, 120, 0.2),
                ]
            ]
        )
        with torch.no_grad():
            logits = model(wave)
            cos = loss.cosine_scores()
        fc = loss.layer
        w = fc.weight[0] - fc.weight[1]
        b = fc.bias[0] - fc.bias[1]
        return (logits[:, 0] - logits[:, 1] - b) / w.norm(), cos, model, wave

    score, cos, model, wave = scores_and_cosines(True)
    torch.testing.assert_close(score, cos, atol=1e-5, rtol=0)
    run_onnx = _onnx_run(model, tmp_path / "normalized.onnx")
    with torch.no_grad():
        np.testing.assert_allclose(run_onnx(wave.numpy()), model(wave).numpy(), atol=1e-5)
    report = trt_check.check_tensorrt_compatibility(
        onnx.load(str(tmp_path / "normalized.onnx")), strict=False
    )
    assert report["ok"], report["blockers"]
    score, cos, _, _ = scores_and_cosines(False)  # unnormalised: the score scales with |x|, not the cosine
    assert not torch.allclose(score, cos, atol=1e-3)


def test_band_norm_cancels_a_stationary_channel_colouration() -> None:
    """A fixed filter (here a +-10 dB shelf pair, like a different microphone) multiplies each band's energy
    by a constant; with ``band_norm`` the log-energy map barely moves, without it it shifts by dBs."""
    torch = pytest.importorskip("torch")
    from scipy import signal

    from spoof_train.augment.channel import shelf_biquad
    from spoof_train.models.spectral import SpectralFrontEnd

    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (180.0, 700.0, 2500.0, 5200.0))
    x = x * (1.2 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.normal(size=t.size)
    sos = np.stack([shelf_biquad("low", 400.0, -10.0, 16000), shelf_biquad("high", 3000.0, 10.0, 16000)])
    y = signal.sosfilt(sos, x)
    wave = torch.tensor(np.stack([x, y]) * 0.1, dtype=torch.float32)
    lens = torch.tensor([32000, 32000])
    shift = {}
    for norm in (False, True):
        front = SpectralFrontEnd(n_fft=320, win_length=320, hop_length=160, band_norm=norm)
        maps, _ = front(wave, lens)
        loud = maps[:, :40, 5:]  # the bands below 6 kHz where the tones are, past the filter's onset
        shift[norm] = float((loud[0] - loud[1]).abs().mean())
    assert shift[False] > 0.5  # nats (~3.4 dB on average over the bands: -10 dB low, +10 dB high)
    assert shift[True] < 0.15 * shift[False]  # what is left: the noise floor and the relative floor


def _onnx_run(model: Any, path: Path) -> Any:
    """``model`` exported as spoof-export does (``spoof_export.onnx_export.export_onnx``: TorchScript-based,
    opset 17, dynamic batch and samples) and run in an ONNX Runtime CPU session: ``run(wave) -> logits``."""
    import onnxruntime as ort

    onnx_export = pytest.importorskip("spoof_export.onnx_export")
    onnx_export.export_onnx(model, path, opset=17, example_samples=16000)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda wave: sess.run(None, {onnx_export.INPUT_NAME: wave})[0]


def test_spectral_model_repeats_short_input_to_the_training_crop_length(tmp_path: Path) -> None:
    """``repeat_seconds``: an input shorter than it is scored as the tiled copy (what training's
    repeat-padding shows the model), in eager torch, in a ragged batch and in the exported ONNX graph."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from spoof_train.models.spectral import SpectralCNN

    torch.manual_seed(0)
    model = SpectralCNN(channels=[8, 8], stem_channels=4, embed_dim=8, excitation=True, repeat_seconds=0.5)
    model.eval()
    plain = SpectralCNN(channels=[8, 8], stem_channels=4, embed_dim=8, excitation=True)  # repeat off
    plain.load_state_dict(model.state_dict())
    plain.eval()
    gen = torch.Generator().manual_seed(1)
    run_onnx = _onnx_run(model, tmp_path / "m.onnx")
    for n in (1600, 3000, 8000, 12000):
        x = 0.05 * torch.randn(2, n, generator=gen)
        tiled = x.repeat(1, -(-8000 // n))[:, : max(n, 8000)]
        with torch.no_grad():
            got, want = model(x), plain(tiled)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)  # longer inputs: tiled == x, unchanged
        np.testing.assert_allclose(run_onnx(x.numpy()), got.numpy(), atol=1e-4)
    # Ragged batch: each row is tiled by its own length.
    batch = 0.05 * torch.randn(3, 12000, generator=gen)
    lens = torch.tensor([12000, 3000, 1600])
    with torch.no_grad():
        rows = model(batch, lens)
        for i, n in enumerate(lens.tolist()):
            torch.testing.assert_close(rows[i], model(batch[i : i + 1, :n])[0], atol=1e-5, rtol=0)
    # Off by default: a short input is then scored at its own length (a different result).
    x = 0.05 * torch.randn(1, 3000, generator=gen)
    with torch.no_grad():
        assert not torch.allclose(plain(x), model(x), atol=1e-4)


def _pulses_and_phase(n: int, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 120 Hz pulse train (glottal-like excitation), its spectrum's bin frequencies, and a random phase."""
    pulses = np.zeros(n)
    pulses[:: sr // 120] = 1.0
    rng = np.random.default_rng(0)
    spec = np.fft.rfft(pulses)
    phase = np.exp(1j * rng.uniform(0, 2 * np.pi, spec.shape))
    phase[0] = phase[-1] = 1.0
    return spec, np.fft.rfftfreq(n, 1 / sr), phase


def test_excitation_map_sees_pulses_that_a_phase_randomised_copy_lacks() -> None:
    """A 120 Hz pulse train (glottal-like excitation) and the same magnitude spectrum with random phase
    (smeared phase, as Griffin-Lim-style re-synthesis leaves): the same long-term magnitude spectrum, and the
    excitation map scores the pulse train peakier in every frame."""
    torch = pytest.importorskip("torch")
    from spoof_train.models.spectral import SpectralFrontEnd

    sr, n = 16000, 16000
    spec, _, phase = _pulses_and_phase(n, sr)
    pulses = np.fft.irfft(spec, n)
    smeared = np.fft.irfft(np.abs(spec) * phase, n)
    front = SpectralFrontEnd(n_fft=320, win_length=320, hop_length=160, excitation=True)
    maps = []
    for x in (pulses, smeared):
        wave = torch.tensor(x / np.abs(x).max(), dtype=torch.float32)[None]
        with torch.no_grad():
            feats, _ = front(wave, torch.tensor([n]), False)
        assert feats.shape[1] == front.channels == 2
        maps.append(feats[0, 1, 0].numpy())
    assert (maps[0] > maps[1]).all(), (maps[0].min(), maps[1].max())


def test_band_excitation_map_locates_smeared_phase_by_frequency_region(tmp_path: Path) -> None:
    """``excitation_bands``: a pulse train whose phase is smeared above 2 kHz only (a re-synthesis that keeps
    the low band's pulses) reads as peaky as the intact pulses in the region below 2 kHz and as flat as the
    fully smeared copy above it; a region with no energy reads ~0; the map is gain-invariant and the exported
    ONNX graph computes the same."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from spoof_train.models.spectral import SpectralCNN, SpectralFrontEnd

    sr, n = 16000, 16000
    spec, freqs, phase = _pulses_and_phase(n, sr)
    clips = {
        "pulses": np.fft.irfft(spec, n),
        "smeared": np.fft.irfft(spec * phase, n),
        "smeared above 2 kHz": np.fft.irfft(spec * np.where(freqs < 2000, 1.0, phase), n),
        "low-passed at 2.5 kHz": np.fft.irfft(np.where(freqs < 2500, spec, 0), n),
    }
    front = SpectralFrontEnd(
        n_fft=320, win_length=320, hop_length=160, excitation=True, excitation_bands=[2000, 4000]
    )
    assert front.exc_ranges == [(0, 40), (40, 80), (80, 161)]  # 50 Hz bins: [0, 2k), [2k, 4k), [4k, 8k]
    low, mid, high = 0, 40, 63  # band rows (filter centres) under each region
    maps = {}
    for name, x in clips.items():
        wave = torch.tensor(x / np.abs(x).max(), dtype=torch.float32)[None]
        with torch.no_grad():
            feats, _ = front(wave, torch.tensor([n]), False)
            louder, _ = front(8.0 * wave, torch.tensor([n]), False)
        assert feats.shape[1] == front.channels == 2
        torch.testing.assert_close(louder, feats, atol=1e-3, rtol=0)
        maps[name] = feats[0, 1].numpy()  # [bands, frames]
    pulses, smeared, mixed = maps["pulses"], maps["smeared"], maps["smeared above 2 kHz"]
    for row in (low, mid, high):  # each region sees the intact pulses peakier than the smeared copy
        assert (pulses[row] > smeared[row]).all()
    np.testing.assert_allclose(mixed[low], pulses[low], atol=0.05)
    assert (mixed[mid] < pulses[mid].min()).all()
    assert (mixed[high] < pulses[high].min()).all()
    assert np.abs(maps["low-passed at 2.5 kHz"][high]).max() < 0.5  # empty region: ~log(1), not leakage
    assert maps["low-passed at 2.5 kHz"][low].min() > 3.0

    torch.manual_seed(0)
    model = SpectralCNN(
        channels=[8, 8], stem_channels=4, embed_dim=8, excitation=True, excitation_bands=[1000, 4000]
    )
    model.eval()
    run_onnx = _onnx_run(model, tmp_path / "bands.onnx")
    x = torch.tensor(np.stack([clips["pulses"], clips["smeared"]]) * 0.1, dtype=torch.float32)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(run_onnx(x.numpy()), want, atol=1e-4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"excitation_bands": [2000]}, "excitation_bands needs excitation: true"),
        ({"excitation": True, "excitation_bands": [4000, 2000]}, "must increase strictly"),
        ({"excitation": True, "excitation_bands": [2000, 2000]}, "must increase strictly"),
        ({"excitation": True, "excitation_bands": [8000]}, "must increase strictly within \\(0, 8000\\)"),
        ({"excitation": True, "excitation_bands": [0]}, "must increase strictly"),
        ({"excitation": True, "excitation_bands": ["low"]}, "must be numbers"),
        ({"excitation": True, "excitation_bands": "2000"}, "list of split frequencies"),
        ({"excitation": True, "excitation_bands": [2010, 2040]}, "band 1 of .* holds no FFT bin"),
    ],
)
def test_band_excitation_options_are_checked(options: dict[str, object], message: str) -> None:
    pytest.importorskip("torch")
    from spoof_train.errors import ConfigError
    from spoof_train.models import DetectorConfig, build_detector

    cfg = DetectorConfig(
        kind="spectral",
        backend={
            "name": "spectral",
            "config": {"channels": [8, 8], "stem_channels": 4, "embed_dim": 8, **options},
        },
    )
    with pytest.raises(ConfigError, match=message):
        build_detector(cfg, seed=0)


def _recipe_helpers() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "default_detector", REPO / "scripts" / "default_detector.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_duration_aware_calibration_aligns_short_and_long_clips() -> None:
    """Short clips whose log-odds sit 4 nats higher than long ones in both classes (a duration shift): one
    pooled threshold mixes them up; the duration-aware map, fitted on the same clips, takes most of that
    pooled error away and leaves clips of a window or more where a plain affine map puts them."""
    pytest.importorskip("scipy")
    from spoof_train.metrics import compute_eer

    helpers = _recipe_helpers()
    rng = np.random.default_rng(0)
    n = 400
    spoof = np.tile([False, True], n)
    seconds = np.where(np.arange(2 * n) % 4 < 2, 0.4, 3.0)
    logit = np.where(spoof, 2.0, -2.0) + np.where(seconds < 1, 4.0, 0.0) + rng.normal(0, 1, 2 * n)
    weights = helpers.fit_duration_calibration(logit, seconds, spoof)
    aligned = helpers.apply_duration_calibration(weights, logit, seconds)
    before = compute_eer(-logit[~spoof], -logit[spoof])[0]
    after = compute_eer(-aligned[~spoof], -aligned[spoof])[0]
    assert before > 0.2
    assert after < 0.05  # about the within-duration EER (classes 4 sd apart: ~2 %)
    long = seconds >= 2.0  # g = 0: only w_logit and the bias act
    np.testing.assert_allclose(aligned[long], weights[0] * logit[long] + weights[3])
    with pytest.raises(ValueError, match="bona fide and spoof"):
        helpers.fit_duration_calibration(logit[spoof], seconds[spoof], spoof[spoof])


def test_short_clips_refuses_a_shift_count_below_one(capsys: pytest.CaptureFixture[str]) -> None:
    helpers = _recipe_helpers()
    with pytest.raises(SystemExit) as exc:
        helpers.main(["short-clips", "m.onnx", "--scores-dir", "s", "--seen-from", "c", "--shifts", "0"])
    assert exc.value.code == 2
    assert "--shifts must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["evaluate", "short-clips"])
def test_seen_attacks_come_from_the_flag_or_the_checkpoint(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both commands that split seen / unseen attacks take ``--seen-attacks`` (a file whose checkpoint is
    gone, e.g. the shipped v1 file) or ``--seen-from CHECKPOINT``, exactly one of them."""
    import argparse

    helpers = _recipe_helpers()
    (tmp_path / "training.json").write_text(json.dumps({"train_attacks": ["world", "espeak"]}))
    given = {"evaluate": ["--manifest", "m.tsv"], "short-clips": ["--scores-dir", "s"]}[command]
    parsed: list[argparse.Namespace] = []
    real_parse = argparse.ArgumentParser.parse_args

    def capture(self: argparse.ArgumentParser, *a: Any, **kw: Any) -> argparse.Namespace:
        parsed.append(real_parse(self, *a, **kw))
        raise SystemExit(0)  # stop before the command runs: only the arguments are under test

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", capture)
        for seen in (["--seen-attacks", "espeak,griffinlim"], ["--seen-from", str(tmp_path)]):
            with pytest.raises(SystemExit):
                helpers.main([command, "m.onnx", *given, *seen])
    assert helpers._seen_attacks(parsed[0]) == {"espeak", "griffinlim"}
    assert helpers._seen_attacks(parsed[1]) == {"world", "espeak"}
    with pytest.raises(SystemExit) as exc:  # both at once: a usage error
        helpers.main([command, "m.onnx", *given, "--seen-attacks", "x", "--seen-from", str(tmp_path)])
    assert exc.value.code == 2
