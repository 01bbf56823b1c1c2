"""spoofsdk.audio.read_file: every file it cannot read is an AudioFileError naming the file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spoofsdk import AudioFileError, InvalidAudioError, SpoofError
from spoofsdk.audio import check_file, read_file

SR = 16000


@pytest.fixture
def good_wav(tmp_path: Path) -> Path:
    path = tmp_path / "good.wav"
    sf.write(path, np.linspace(-0.5, 0.5, 1600, dtype=np.float32), SR, subtype="PCM_16")
    return path


def test_a_good_file_reads_as_frames_by_channels(good_wav: Path) -> None:
    x, sr = read_file(good_wav)
    assert (x.dtype, x.shape, sr) == (np.float32, (1600, 1), SR)
    assert check_file(good_wav) == good_wav.stat().st_size


def _bad_file(tmp_path: Path, case: str, good: bytes) -> tuple[Path, str, type[BaseException] | None]:
    """(path, expected end of the message, expected type of __cause__) for each unreadable case."""
    path = tmp_path / f"{case}.wav"
    if case == "corrupt":
        path.write_bytes(bytes(range(256)) * 4)
        return path, "cannot read audio: Format not recognised.", sf.LibsndfileError
    if case == "riff_junk":
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
        return path, "cannot read audio: Error in WAV file. No 'data' chunk marker.", sf.LibsndfileError
    if case == "empty":
        path.write_bytes(b"")
        return path, "empty file (0 bytes)", None
    if case == "truncated_header":
        path.write_bytes(good[:30])
        return path, "cannot read audio: Error in WAV file. No 'data' chunk marker.", sf.LibsndfileError
    if case == "missing":
        return path, "no such file", FileNotFoundError
    assert case == "directory"
    path.mkdir()
    return path, "expected an audio file, given a directory", None


@pytest.mark.parametrize(
    "case", ["corrupt", "riff_junk", "empty", "truncated_header", "missing", "directory"]
)
def test_unreadable_files_raise_audio_file_error_with_the_name(
    tmp_path: Path, good_wav: Path, case: str
) -> None:
    path, why, cause = _bad_file(tmp_path, case, good_wav.read_bytes())
    with pytest.raises(AudioFileError) as info:
        read_file(path)
    err = info.value
    assert str(err) == f"{path}: {why}"
    assert isinstance(err, InvalidAudioError | SpoofError | ValueError | OSError)
    assert err.code == 2  # SPOOF_ERR_INVALID_AUDIO, like the other input errors
    if cause is None:
        assert err.__cause__ is None
    else:
        assert isinstance(err.__cause__, cause)
    # str and PathLike both work, and name the file as given
    with pytest.raises(AudioFileError, match=str(path).replace("\\", "\\\\")):
        read_file(str(path))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs file permissions (not root)")
def test_an_unopenable_file_is_an_audio_file_error(good_wav: Path) -> None:
    good_wav.chmod(0)
    try:
        with pytest.raises(AudioFileError, match=r"good\.wav: cannot open: Permission denied") as info:
            read_file(good_wav)
        assert isinstance(info.value.__cause__, PermissionError)
    finally:
        good_wav.chmod(0o644)


def test_a_header_without_frames_is_read_empty(tmp_path: Path) -> None:
    path = tmp_path / "noframes.wav"
    sf.write(path, np.zeros(0, np.float32), SR)
    x, sr = read_file(path)
    assert (x.shape, sr) == ((0, 1), SR)  # Detector.score then says "too short"
