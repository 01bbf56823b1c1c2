"""The Debian speech supplement (recipes/default-detector/v1/debian_speech.py; its conditioning and
re-syntheses are spoof_train.synth.classic): conditioning, re-synthesis, clip selection
with its licence check, the build on a fake package tree, and the licence filter over merged manifests.
Everything runs offline on synthetic audio; the real packages are only fetched by the recipe."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")
pytest.importorskip("scipy")

from recipe_modules import load_recipe  # noqa: E402

ds = load_recipe("default-detector/v1/debian_speech.py")
from spoof_train.errors import DataError  # noqa: E402


def _vowel(seconds: float, sr: int, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A voiced, vowel-like signal: a glottal pulse train through two resonances, with a syllable envelope."""
    from scipy import signal

    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    pulses = np.zeros(n)
    pulses[:: int(sr / f0)] = 1.0
    x = pulses
    for fc, bw in ((700.0, 120.0), (1200.0, 150.0)):
        r = np.exp(-np.pi * bw / sr)
        x = signal.lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * fc / sr), r * r], x)
    env = np.sin(np.pi * np.arange(n) / n) ** 2
    return 0.3 * x / np.max(np.abs(x)) * env + 1e-4 * rng.standard_normal(n)


def _with_silence(x: np.ndarray, sr: int, lead: float, trail: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    pad = lambda s: 1e-4 * rng.standard_normal(int(s * sr))  # noqa: E731
    return np.concatenate([pad(lead), x, pad(trail)])


def test_trim_silence_keeps_the_active_part_with_fades() -> None:
    sr = 16000
    speech = 0.3 * np.sin(2 * np.pi * 200 * np.arange(8000) / sr)
    y = ds.trim_silence(_with_silence(speech, sr, 0.4, 0.6), sr)
    assert abs(len(y) - len(speech)) <= 0.03 * sr  # within 20 ms frames + 10 ms hop
    assert abs(y[0]) < 0.01
    assert abs(y[-1]) < 0.01
    assert np.max(np.abs(y)) == pytest.approx(0.3, abs=0.01)


def test_condition_sets_level_floor_and_peak_and_drops_too_short_clips() -> None:
    sr = 8000
    x = _with_silence(_vowel(0.8, sr), sr, 0.2, 0.2)
    levels = []
    for seed in range(20):
        out = ds.condition(x, sr, np.random.default_rng(seed))
        assert out is not None
        y, channel = out
        assert y.dtype == np.float32
        assert channel in ("clean", "mulaw", "alaw", "gsm")
        rms_db = 20 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
        levels.append(rms_db)
        assert -32.5 <= rms_db <= -19.5
        assert np.max(np.abs(y)) <= 0.999 + 1e-6
        zero = np.concatenate([[0], (y == 0).astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(zero))
        longest_zero_run = int(np.max(edges[1::2] - edges[::2], initial=0))
        assert (
            longest_zero_run < 16
        )  # the noise floor: no digital silence (G.711 may round single samples to 0)
    assert np.ptp(levels) > 3.0  # the level is drawn, not fixed
    a = ds.condition(x, sr, np.random.default_rng(7))
    b = ds.condition(x, sr, np.random.default_rng(7))
    assert a is not None
    assert b is not None
    assert np.array_equal(a[0], b[0])
    forced = ds.condition(x, sr, np.random.default_rng(0), p_channel=1.0)
    assert forced is not None
    assert forced[1] != "clean"
    assert ds.condition(0.3 * np.sin(np.arange(800) / 3.0), sr, np.random.default_rng(0)) is None  # 0.1 s


def test_condition_caps_long_clips_at_twelve_seconds() -> None:
    sr = 8000
    x = np.concatenate([_vowel(1.0, sr, seed=i) for i in range(15)])
    out = ds.condition(x, sr, np.random.default_rng(0))
    assert out is not None
    assert 6.0 * sr <= len(out[0]) <= 12.0 * sr


def test_griffin_lim_keeps_the_magnitude_and_loses_the_phase() -> None:
    from scipy.signal import stft

    sr = 16000
    x = _vowel(0.7, sr)
    y = ds.griffin_lim_resynthesis(x, sr, np.random.default_rng(0))
    assert y.shape == x.shape
    assert np.all(np.isfinite(y))
    mx = np.abs(stft(x, sr, nperseg=512, noverlap=384)[2])
    my = np.abs(stft(y, sr, nperseg=512, noverlap=384)[2])
    convergence = np.linalg.norm(mx - my) / np.linalg.norm(mx)
    assert convergence < 0.35  # the magnitude is rebuilt ...
    assert abs(np.corrcoef(x, y)[0, 1]) < 0.9  # ... the waveform is not
    again = ds.griffin_lim_resynthesis(x, sr, np.random.default_rng(0))
    assert np.array_equal(y, again)


def test_world_resynthesis_keeps_length_and_energy() -> None:
    pytest.importorskip("pyworld")
    for sr in (8000, 16000):
        x = _vowel(0.6, sr)
        y = ds.world_resynthesis(x, sr)
        assert y.shape == x.shape
        assert np.all(np.isfinite(y))
        ratio = np.sqrt(np.mean(y**2) / np.mean(x**2))
        assert 0.3 < ratio < 3.0


def _fake_package(root: Path, marker: str = "License: GPL-2+") -> Path:
    """A ktuberling-data-like tree: three languages (one excluded), a duplicated folder, 4 clips each."""
    base = root / "usr/share/ktuberling/sounds"
    for lang, rate in (("en", 44100), ("fr", 22050), ("de", 44100), ("sr", 8000)):
        (base / lang).mkdir(parents=True)
        for k in range(4):
            sf.write(base / lang / f"w{k}.wav", _vowel(0.5, rate, f0=110 + 20 * k, seed=k), rate)
    (base / "sr@latin").mkdir()
    for k in range(4):  # the same recordings again, as the Serbian folders are
        (base / "sr@latin" / f"w{k}.wav").write_bytes((base / "sr" / f"w{k}.wav").read_bytes())
    doc = root / "usr/share/doc/ktuberling-data"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(f"Files: *\nCopyright: someone\n{marker}\n")
    return root


def _source(per_speaker: int = 3) -> ds.Source:
    return dataclasses.replace(ds.SOURCES[0], per_speaker=per_speaker)  # ktuberling-data


def test_list_clips_checks_the_licence_dedupes_excludes_and_caps(tmp_path: Path) -> None:
    root = _fake_package(tmp_path / "pkg")
    clips = ds.list_clips(_source(3), root, seed=0)
    speakers = [s for s, _ in clips]
    assert sorted(set(speakers)) == ["ktuberling-en", "ktuberling-fr", "ktuberling-sr"]  # de left out
    assert all(speakers.count(s) == 3 for s in set(speakers))  # capped at per_speaker
    assert len({p.read_bytes() for _, p in clips}) == len(clips)  # the sr@latin copies are gone
    assert ds.list_clips(_source(3), root, seed=0) == clips  # the draw is seeded

    bad = _fake_package(tmp_path / "bad", marker="License: proprietary")
    with pytest.raises(DataError, match="no longer contains 'License: GPL-2\\+'"):
        ds.list_clips(_source(), bad)
    (bad / "usr/share/doc/ktuberling-data/copyright").unlink()
    with pytest.raises(DataError, match="no copyright file"):
        ds.list_clips(_source(), bad)


def test_asterisk_sources_leave_out_beeps() -> None:
    speaker_of = ds.SOURCES[2].speaker_of
    assert speaker_of("digits/1.gsm") == "asterisk-es-co"
    assert speaker_of("beep.gsm") is None
    assert speaker_of("beeperr.gsm") is None


def test_build_writes_matched_bonafide_and_resynthesis_rows(tmp_path: Path) -> None:
    pytest.importorskip("pyworld")
    from spoof_train.data import read_manifest
    from spoof_train.licence import filter_by_licence

    root = _fake_package(tmp_path / "pkg")
    src = _source(2)
    manifest = ds.build(tmp_path / "out", {src.package: root}, sources=[src], seed=1, p_8k=0.5)
    rows = read_manifest(manifest)
    assert len(rows) == 3 * 3 * 2  # 3 talkers x 2 clips x (bona fide, griffinlim, world)
    assert {r.split for r in rows} == {"train"}
    bona = [r for r in rows if r.label == "bonafide"]
    for b in bona:
        pair = {r.attack for r in rows if r.speaker == b.speaker and r.id.endswith(b.id)}
        assert pair == {"-", "griffinlim", "world"}
        assert b.extra["licence"] == "GPL-2+"
    assert {r.extra["licence"] for r in rows if r.label == "spoof"} == {"derivative of GPL-2+"}
    for r in rows:
        info = sf.info(r.path)
        assert info.samplerate == int(r.extra["sample_rate"]) in (8000, 16000)
        assert info.duration == pytest.approx(float(r.extra["seconds"]), abs=1e-3)
    rates = {(r.speaker, r.id.split("__")[-1]): r.extra["sample_rate"] for r in rows}
    for r in rows:  # a re-synthesis has the rate of its bona fide clip
        assert rates[(r.speaker, r.id.split("__")[-1])] == r.extra["sample_rate"]
    kept, dropped = filter_by_licence(rows)
    assert len(kept) == len(rows)
    assert not dropped
    again = ds.build(tmp_path / "out2", {src.package: root}, sources=[src], seed=1, p_8k=0.5)
    # Reproducible from the seed, except WORLD's aperiodic noise: pyworld draws it from a generator that
    # cannot be seeded, so the `world` clips of two builds differ.
    first = {Path(r.path).name: Path(r.path).read_bytes() for r in rows if r.attack != "world"}
    second = {
        Path(r.path).name: Path(r.path).read_bytes() for r in read_manifest(again) if r.attack != "world"
    }
    assert first == second


def test_build_per_speaker_overrides_every_cap(tmp_path: Path) -> None:
    pytest.importorskip("pyworld")
    from spoof_train.data import read_manifest

    root = _fake_package(tmp_path / "pkg")
    src = _source(3)
    rows = read_manifest(ds.build(tmp_path / "one", {src.package: root}, sources=[src], per_speaker=1))
    assert sorted(r.speaker for r in rows if r.label == "bonafide") == [
        "ktuberling-en",
        "ktuberling-fr",
        "ktuberling-sr",
    ]
    with pytest.raises(DataError, match="per_speaker must be >= 1"):
        ds.build(tmp_path / "zero", {src.package: root}, sources=[src], per_speaker=0)
    with pytest.raises(DataError, match="no unpacked folder given for ktuberling-data"):
        ds.build(tmp_path / "none", {}, sources=[src])


def test_build_stores_8_or_16_khz_and_leaves_out_too_short_clips(tmp_path: Path) -> None:
    pytest.importorskip("pyworld")
    from spoof_train.data import read_manifest

    root = tmp_path / "pkg"
    base = root / "usr/share/ktuberling/sounds/en"
    base.mkdir(parents=True)
    sf.write(base / "odd.wav", _vowel(0.5, 11025), 11025)
    sf.write(base / "low.wav", _vowel(0.5, 6000, seed=1), 6000)
    sf.write(base / "blip.wav", _vowel(0.05, 16000, seed=2), 16000)
    doc = root / "usr/share/doc/ktuberling-data"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("License: GPL-2+\n")
    src = _source(10)
    rows = read_manifest(ds.build(tmp_path / "out", {src.package: root}, sources=[src], p_8k=0.0))
    rates = {r.id.split("__")[-1]: r.extra["sample_rate"] for r in rows if r.label == "bonafide"}
    assert rates == {"odd": "16000", "low": "8000"}  # the 0.05 s clip is left out


def test_fetch_reuses_unpacked_packages_and_explains_missing_tools(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "debs"
    (cache / "ktuberling-data").mkdir(parents=True)
    (cache / "ktuberling-data" / ".unpacked").write_text("x.deb\n")
    monkeypatch.setattr("shutil.which", lambda tool: None)
    assert ds.fetch_packages(["ktuberling-data"], cache) == {"ktuberling-data": cache / "ktuberling-data"}
    with pytest.raises(DataError, match="'apt-get' is not on PATH"):
        ds.fetch_packages(["asterisk-prompt-es-co"], cache)
    monkeypatch.setattr(
        ds, "_installed_version", lambda pkg: "1:2.3-4" if pkg == "asterisk-prompt-es-co" else None
    )
    roots = ds.fetch_packages(["ktuberling-data", "asterisk-prompt-es-co"], cache)
    assert roots["asterisk-prompt-es-co"] == Path("/")  # an installed package is read in place
    assert ds.package_versions(roots) == {
        "ktuberling-data": "x.deb",
        "asterisk-prompt-es-co": "installed 1:2.3-4",
    }
    with pytest.raises(DataError, match="'apt-get' is not on PATH"):
        ds.fetch_packages(["asterisk-prompt-es-co"], cache, use_installed=False)


def test_cli_rejects_a_bad_rate_share(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert ds.main(["-o", str(tmp_path / "o"), "--cache", str(tmp_path / "c"), "--p-8k", "2"]) == 2
    assert "--p-8k must be in [0, 1]" in capsys.readouterr().err


def _manifest(path: Path, names: list[str], licence: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["path\tlabel\tattack\tspeaker\tsplit\tlicence"]
    lines += [f"{n}\tbonafide\t-\ts\ttrain\t{licence}" for n in names]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_licence_filter_merges_manifests_and_refuses_shared_rows(tmp_path: Path) -> None:
    from spoof_train.data import read_manifest
    from spoof_train.licence import main, write_licensed_manifest

    a = _manifest(tmp_path / "a" / "MANIFEST.tsv", ["x.flac", "y.flac"], "CC BY 4.0")
    b = _manifest(tmp_path / "b" / "MANIFEST.tsv", ["x.flac"], "GPL-2+")  # same name, other folder
    out = tmp_path / "merged.tsv"
    report = write_licensed_manifest([a, b], out, splits=["train"])
    assert report["kept"] == 3
    assert isinstance(report["manifest"], list)
    assert sorted(r.extra["licence"] for r in read_manifest(out)) == ["CC BY 4.0", "CC BY 4.0", "GPL-2+"]
    with pytest.raises(DataError, match="in more than one of the manifests"):
        write_licensed_manifest([a, a], out)
    assert main([str(a), str(b), "-o", str(tmp_path / "cli.tsv"), "--splits", "train"]) == 0
    assert len(read_manifest(tmp_path / "cli.tsv")) == 3
    assert main([str(a), str(b), "-o", str(tmp_path / "cli.tsv"), "--splits", "dev"]) == 2
