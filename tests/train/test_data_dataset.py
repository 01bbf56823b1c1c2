"""Audio loading, datasets, batching, chunked evaluation and the decoded-audio cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from spoof_train.data import (
    AudioCache,
    AudioDataset,
    BucketBatchSampler,
    ChunkedEvalDataset,
    Utterance,
    aggregate_windows,
    collate_pad,
    collate_windows,
    crop_or_pad,
    load_audio,
    make_loader,
    utterance_lengths,
    window_starts,
)
from spoof_train.errors import DataError


def _tone(n: int, sr: int = 16000, f: float = 440.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * f * np.arange(n) / sr)).astype(np.float32)


@pytest.fixture
def clips(tmp_path: Path) -> list[Utterance]:
    rows = []
    for i, n in enumerate([8000, 20000, 3000, 40000]):
        p = tmp_path / f"c{i}.wav"
        sf.write(p, _tone(n, f=200.0 + 50 * i), 16000, subtype="FLOAT")
        rows.append(Utterance(str(p), "bonafide" if i % 2 == 0 else "spoof", "-" if i % 2 == 0 else f"A{i}"))
    return rows


def test_load_audio_resamples_and_mixes_down(tmp_path: Path) -> None:
    p = tmp_path / "st.wav"
    stereo = np.stack([_tone(8000, 8000, 300.0), _tone(8000, 8000, 300.0)], axis=1)
    sf.write(p, stereo, 8000, subtype="PCM_16")
    wave = load_audio(p, sample_rate=16000)
    assert wave.dtype == np.float32
    assert abs(wave.shape[0] - 16000) <= 2
    spec = np.abs(np.fft.rfft(wave[2000:14000]))
    assert abs(np.argmax(spec) * 16000 / 12000 - 300.0) < 3.0  # the tone survives resampling


def test_load_audio_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="audio file not found"):
        load_audio(tmp_path / "none.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(DataError, match=r"cannot decode audio file .*bad.wav"):
        load_audio(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(DataError, match="has 0 samples"):
        load_audio(empty)


def test_crop_or_pad() -> None:
    x = np.arange(5, dtype=np.float32)
    assert crop_or_pad(x, 12).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert crop_or_pad(x, 3).tolist() == [0, 1, 2]
    starts = {int(crop_or_pad(x, 3, rng=np.random.default_rng(s))[0]) for s in range(40)}
    assert starts == {0, 1, 2}


def test_training_items_are_seeded_per_epoch_and_index(clips: list[Utterance]) -> None:
    def aug(w: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        return w + rng.normal(0, 0.01, w.shape).astype(np.float32)

    a = AudioDataset(clips, crop_samples=4000, train=True, augment=aug, seed=7)
    b = AudioDataset(clips, crop_samples=4000, train=True, augment=aug, seed=7)
    assert torch.equal(a[3]["wave"], b[3]["wave"])
    assert a[3]["wave"].shape == (4000,)
    a.set_epoch(1)
    assert not torch.equal(a[3]["wave"], b[3]["wave"])
    c = AudioDataset(clips, crop_samples=4000, train=True, augment=aug, seed=8)
    assert not torch.equal(c[3]["wave"], b[3]["wave"])
    assert a[2]["wave"].shape == (4000,)  # 3000-sample clip repeat-padded
    ev = AudioDataset(clips, crop_samples=4000, train=False, augment=aug)
    assert torch.equal(
        ev[3]["wave"], torch.from_numpy(load_audio(clips[3].path)[:4000])
    )  # no aug, first crop
    item = ev[1]
    assert (item["label"], item["id"], item["attack"]) == (1, "c1", "A1")


def test_clip_augment_runs_on_the_whole_clip_before_the_crop(clips: list[Utterance]) -> None:
    seen: list[int] = []

    def stretch(w: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        seen.append(w.shape[0])
        return np.repeat(w, 2)  # twice as long: the crop must still be crop_samples

    full = load_audio(clips[3].path)
    ds = AudioDataset(clips, crop_samples=4000, train=True, clip_augment=stretch, seed=7)
    wave = ds[3]["wave"].numpy()
    assert seen == [full.shape[0]]
    assert wave.shape == (4000,)
    # the crop is a piece of the stretched clip: every sample appears twice in a row (up to the crop's phase)
    start = 0 if wave[0] == wave[1] else 1
    assert np.array_equal(wave[start:-1:2], wave[start + 1 :: 2])
    assert torch.equal(
        ds[3]["wave"],
        AudioDataset(clips, crop_samples=4000, train=True, clip_augment=stretch, seed=7)[3]["wave"],
    )
    # evaluation items never see it
    ev = AudioDataset(clips, crop_samples=4000, train=False, clip_augment=stretch)
    seen.clear()
    assert torch.equal(ev[3]["wave"], torch.from_numpy(full[:4000]))
    assert seen == []


def test_collate_pad(clips: list[Utterance]) -> None:
    ds = AudioDataset(clips)
    batch = collate_pad([ds[0], None, ds[2]])
    assert batch["wave"].shape == (2, 8000)
    assert batch["lengths"].tolist() == [8000, 3000]
    assert batch["wave"][1, 3000:].abs().sum() == 0
    assert batch["label"].tolist() == [0, 0]
    assert batch["id"] == ["c0", "c2"]
    assert collate_pad([None])["wave"].shape == (0, 0)


def test_missing_and_corrupt_files(clips: list[Utterance], tmp_path: Path) -> None:
    gone = Utterance(str(tmp_path / "gone.wav"), "spoof", "A9")
    with pytest.raises(DataError, match=r"1 of 5 audio files are missing \(first: .*gone.wav\)"):
        AudioDataset([*clips, gone])
    assert len(AudioDataset([*clips, gone], on_error="skip")) == 4
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"fLaC" + b"\x00" * 64)
    rows = [clips[0], Utterance(str(bad), "spoof", "A9"), clips[1]]
    with pytest.raises(DataError, match=r"cannot decode audio file .*bad.flac"):
        AudioDataset(rows)[1]
    ev = AudioDataset(rows, on_error="skip")
    assert ev[1] is None  # evaluation drops it
    assert len(ev.errors) == 1
    assert "bad.flac" in ev.errors[0]
    tr = AudioDataset(rows, on_error="skip", train=True, crop_samples=1000)
    assert tr[1]["id"] == "c1"  # training substitutes the next decodable clip
    loader = make_loader(ev, batch_size=3)
    (batch,) = list(loader)
    assert batch["id"] == ["c0", "c1"]
    with pytest.raises(DataError, match="on_error: expected 'raise' or 'skip'"):
        AudioDataset(clips, on_error="ignore")
    with pytest.raises(DataError, match="no rows"):
        AudioDataset([])


def test_window_starts() -> None:
    assert window_starts(100, 100, 50) == [0]
    assert window_starts(30, 100, 50) == [0]
    assert window_starts(200, 100, 50) == [0, 50, 100]
    assert window_starts(230, 100, 100) == [0, 100, 130]  # last window aligned to the end
    with pytest.raises(DataError, match="must be positive"):
        window_starts(10, 0, 5)


def test_chunked_eval_and_aggregation(clips: list[Utterance]) -> None:
    ds = ChunkedEvalDataset(clips, window_samples=16000, hop_samples=8000)
    items = [ds[i] for i in range(4)]
    assert [it["windows"].shape[0] for it in items] == [1, 2, 1, 4]  # 8000, 20000, 3000, 40000 samples
    full = load_audio(clips[1].path)
    assert torch.equal(items[1]["windows"][1], torch.from_numpy(full[4000:20000]))
    assert items[2]["lengths"].tolist() == [16000]  # repeat-padded
    zero = ChunkedEvalDataset(clips, window_samples=16000, hop_samples=8000, short="zero")[2]
    assert zero["lengths"].tolist() == [3000]
    assert zero["windows"][0, 3000:].abs().sum() == 0
    own = ChunkedEvalDataset(clips, window_samples=16000, hop_samples=8000, short="none")
    assert own[2]["windows"].shape == (1, 3000)
    mixed = collate_windows([own[2], own[0]])
    assert mixed["wave"].shape == (2, 8000)
    assert mixed["lengths"].tolist() == [3000, 8000]
    assert mixed["wave"][0, 3000:].abs().sum() == 0
    batch = collate_windows(items)
    assert batch["wave"].shape == (8, 16000)
    assert batch["owner"].tolist() == [0, 1, 1, 2, 3, 3, 3, 3]
    scores = torch.arange(8, dtype=torch.float32)
    assert aggregate_windows(scores, batch["owner"], 4).tolist() == [0.0, 1.5, 3.0, 5.5]
    assert aggregate_windows(scores, batch["owner"], 4, method="max").tolist() == [0.0, 2.0, 3.0, 7.0]
    two = torch.stack([scores, -scores], dim=1)
    assert aggregate_windows(two, batch["owner"], 4, method="min")[:, 1].tolist() == [0.0, -2.0, -3.0, -7.0]
    loader = make_loader(ds, batch_size=2)
    assert [b["wave"].shape[0] for b in loader] == [3, 5]


def test_bucket_sampler_groups_lengths_and_is_seeded() -> None:
    lengths = [5, 100, 6, 99, 7, 98, 8, 97]
    s = BucketBatchSampler(lengths, 2, seed=1)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(8))
    for b in batches:
        assert max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 2
    assert batches == list(BucketBatchSampler(lengths, 2, seed=1))
    s.set_epoch(1)
    assert len(s) == 4


def test_utterance_lengths(clips: list[Utterance]) -> None:
    assert utterance_lengths(clips) == [8000, 20000, 3000, 40000]
    with_seconds = Utterance(clips[0].path, "bonafide", extra={"seconds": "0.25"})
    assert utterance_lengths([with_seconds], 8000) == [2000]


def test_audio_cache_roundtrip(clips: list[Utterance], tmp_path: Path) -> None:
    cache = AudioCache.build(clips, tmp_path / "cache")
    assert len(cache) == 4
    ref = load_audio(clips[1].path)
    got = cache.get(clips[1].path)
    assert got is not None
    assert np.max(np.abs(got - ref)) < 2e-4  # float16 storage
    ds = AudioDataset(clips, cache=cache)
    assert torch.allclose(ds[1]["wave"], torch.from_numpy(ref), atol=2e-4)
    assert AudioCache.build(clips[:2], tmp_path / "cache").total_samples == cache.total_samples  # reused
    (tmp_path / "cache" / "audio.f16").write_bytes(b"\x00" * 10)
    with pytest.raises(DataError, match="the cache is corrupt"):
        AudioCache(tmp_path / "cache")
    mem = AudioDataset(clips, cache=True)
    first, second = mem[1]["wave"], mem[1]["wave"]
    assert torch.equal(first, second)  # the float16 copy is served from the first load on


def test_loader_workers_give_identical_batches(clips: list[Utterance]) -> None:
    ds = AudioDataset(clips, crop_samples=2000, train=True, seed=3)
    a = [b["wave"] for b in make_loader(ds, batch_size=2, shuffle=True, seed=5)]
    b = [b["wave"] for b in make_loader(ds, batch_size=2, shuffle=True, seed=5, num_workers=2)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_native_front_end_is_used_when_built() -> None:
    from spoof_train.augment import g711_decode
    from spoof_train.data.audio import decode_g711, g711_decoder_backend, resample, resampler_backend

    try:
        import spoofsdk.audio  # noqa: F401
    except ImportError:
        pytest.skip("spoofsdk native module not built")
    assert resampler_backend() == "spoofsdk.audio.resample"
    assert g711_decoder_backend() == "spoofsdk.audio.decode"
    codes = bytes(range(256))
    for law in ("mulaw", "alaw"):  # the SDK's decoder and the G.711 formulas agree bit for bit
        assert np.array_equal(decode_g711(codes, law), g711_decode(np.frombuffer(codes, np.uint8), law))
    import soxr

    x = _tone(8000, 8000, 440.0)
    ours, ref = resample(x, 8000, 16000), soxr.resample(x, 8000, 16000, quality="VHQ")
    assert ours.shape == ref.shape
    assert np.max(np.abs(ours[200:-200] - ref[200:-200])) < 1e-2  # two good resamplers agree in-band


def test_corpus_clips_load_at_16k_and_chunk(corpus_dir: Path) -> None:
    from spoof_train.data import read_manifest

    rows = read_manifest(corpus_dir / "MANIFEST.tsv", splits=["dev"])
    picked = [next(r for r in rows if r.extra["sample_rate"] == sr) for sr in ("8000", "16000")]
    picked.append(max(rows, key=lambda r: float(r.extra["seconds"])))
    ds = AudioDataset(picked)
    for i, r in enumerate(picked):
        n = ds[i]["wave"].shape[0]
        assert abs(n - float(r.extra["seconds"]) * 16000) <= 16, (
            r.path,
            n,
        )  # 8 kHz files resampled to 16 kHz
    assert utterance_lengths(picked) == [round(float(r.extra["seconds"]) * 16000) for r in picked]
    chunked = ChunkedEvalDataset(picked, window_samples=64000, hop_samples=32000)
    longest = chunked[2]
    assert longest["windows"].shape[0] == len(window_starts(ds[2]["wave"].shape[0], 64000, 32000)) > 1


def test_run_config_wires_clip_augment_and_rejects_it_in_augment(
    tmp_path: Path, clips: list[Utterance]
) -> None:
    import dataclasses

    from spoof_train.config import run_config_from_dict
    from spoof_train.data import write_manifest
    from spoof_train.errors import ConfigError
    from spoof_train.train import build_datasets

    rows = [dataclasses.replace(u, split="train") for u in clips]
    manifest = write_manifest(tmp_path / "m.tsv", rows)

    def config(**data: object) -> object:
        return run_config_from_dict(
            {
                "model": {"preset": "wavlm-tiny"},
                "output_dir": str(tmp_path / "run"),
                "data": {"manifest": str(manifest), "dev_split": None, "crop_seconds": 0.25, **data},
                "train": {"early_stopping": {"monitor": "none"}},
            }
        )

    speed = [{"name": "speed", "p": 1.0, "factors": [1.25, 1.25]}]
    train_set, _, facts = build_datasets(config(clip_augment=speed), 16000)
    assert facts["data"]["clip_augment"] == speed
    assert train_set[3]["wave"].shape == (4000,)
    full = load_audio(clips[3].path)
    assert len(train_set.clip_augment(full, 16000, np.random.default_rng(0))) == round(len(full) / 1.25)
    bad, _, _ = build_datasets(config(augment=speed), 16000)
    with pytest.raises(ConfigError, match=r"a length-changing step goes in data\.clip_augment"):
        bad[0]
    with pytest.raises(ConfigError, match=r"data\.clip_augment\[0\]: unknown augmentation 'tempo'"):
        build_datasets(config(clip_augment=[{"name": "tempo"}]), 16000)
