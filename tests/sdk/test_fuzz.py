"""Fuzz: random bytes as model files, as audio and as CLI inputs give typed errors, never a crash.

Each campaign runs in a subprocess so that a crash (segfault, abort) in native code fails the test
instead of killing pytest; the child exits 0 only if every failure was a :class:`SpoofError`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sdk_models import requires_native

pytestmark = requires_native
HERE = Path(__file__).resolve().parent


def _run_child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=240, check=False, cwd=HERE,
    )  # fmt: skip


def test_random_model_files(tiny_model: Path, tmp_path: Path) -> None:
    code = """
    import sys
    import numpy as np
    from spoofsdk import Detector
    from spoofsdk.errors import SpoofError
    model, tmp = sys.argv[1], sys.argv[2]
    data = open(model, "rb").read()
    rng = np.random.default_rng(42)
    kinds = {}
    for i in range(150):
        if i % 3 == 0:
            blob = rng.integers(0, 256, int(rng.integers(0, 4000)), dtype=np.uint8).tobytes()
        elif i % 3 == 1:
            blob = data[: int(rng.integers(1, len(data)))]
        else:
            arr = np.frombuffer(data, np.uint8).copy()
            idx = rng.integers(0, arr.size, int(rng.integers(1, 64)))
            arr[idx] = rng.integers(0, 256, idx.size, dtype=np.uint8)
            blob = arr.tobytes()
        suffix = ".onnx" if i % 5 else ".trt"
        path = f"{tmp}/m{i}{suffix}"
        open(path, "wb").write(blob)
        if suffix == ".trt" and i % 2:
            open(path + ".json", "wb").write(blob[:200])
        try:
            det = Detector(path, backend="cpu" if suffix == ".onnx" else "auto", num_threads=1)
            det.score(np.zeros(2000, np.float32), 16000)
            kinds["loaded"] = kinds.get("loaded", 0) + 1
        except SpoofError as exc:
            kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
    print(kinds)
    """
    out = _run_child(code, str(tiny_model), str(tmp_path))
    assert out.returncode == 0, f"child died ({out.returncode}):\n{out.stdout}\n{out.stderr[-3000:]}"
    assert "ModelLoadError" in out.stdout


def test_random_audio_bytes_to_sessions(tiny_model: Path) -> None:
    code = """
    import sys
    import numpy as np
    from spoofsdk import Detector
    from spoofsdk.errors import SpoofError
    det = Detector(sys.argv[1], backend="cpu", num_threads=1)
    rng = np.random.default_rng(7)
    rates = [8000, 11025, 16000, 22050, 44100, 48000]
    outcomes = {}
    for i in range(60):
        enc = ["pcm16", "mulaw", "alaw", "float32"][i % 4]
        sess = det.stream(rates[i % len(rates)], encoding=enc)
        try:
            for _ in range(int(rng.integers(1, 40))):
                n = int(rng.integers(0, 3000))
                if enc == "float32" and i % 8 == 3:
                    blob = rng.standard_normal(n // 4).astype("<f4").tobytes()  # valid floats, odd splits
                else:
                    blob = rng.integers(0, 256, n, dtype=np.uint8).tobytes()  # float32: NaN/Inf likely
                try:
                    sess.push(blob)
                except SpoofError as exc:
                    outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
            try:
                sess.flush()
                outcomes["flushed"] = outcomes.get("flushed", 0) + 1
            except SpoofError as exc:
                outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
        finally:
            sess.close()
    for _ in range(40):
        shape = tuple(int(v) for v in rng.integers(0, 5, int(rng.integers(0, 4))))
        dtype = rng.choice(["int16", "float32", "float64", "int8", "uint16", "object", "bool"])
        try:
            arr = (rng.standard_normal(shape) * float(rng.choice([1e-3, 1.0, 1e6]))).astype(dtype)
            det.score(arr, int(rng.choice([0, 8000, 16000, 999999])))
        except SpoofError as exc:
            outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
    print(outcomes)
    """
    out = _run_child(code, str(tiny_model))
    assert out.returncode == 0, f"child died ({out.returncode}):\n{out.stdout}\n{out.stderr[-3000:]}"
    assert "InvalidAudioError" in out.stdout


def test_random_files_to_the_cli(tiny_model: Path, tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(3)
    for i in range(30):
        suffix = [".wav", ".flac", ".ul", ".raw", ".ogg", ".al"][i % 6]
        blob = rng.integers(0, 256, int(rng.integers(0, 6000)), dtype=np.uint8).tobytes()
        if suffix == ".wav" and i % 2:
            blob = b"RIFF" + blob[:4] + b"WAVEfmt " + blob[8:]
        (tmp_path / f"f{i}{suffix}").write_bytes(blob)
    cli = [
        sys.executable,
        "-m",
        "spoofsdk.cli",
        str(tmp_path),
        "--model",
        str(tiny_model),
        "--format",
        "json",
    ]
    configs = (
        ["--sample-rate", "8000"],  # headerless files (.ul/.raw/.al) need a rate; headers must agree
        ["--stream", "--chunk-ms", "7", "--sample-rate", "8000"],
        ["--encoding", "float32", "--sample-rate", "16000"],  # every file as raw float32 (NaN/Inf likely)
    )
    for extra in configs:
        out = subprocess.run([*cli, *extra], capture_output=True, text=True, timeout=240, check=False)
        assert out.returncode in (0, 1), f"exit {out.returncode}:\n{out.stderr[-3000:]}"
        assert "Traceback" not in out.stderr
        doc = json.loads(out.stdout)
        assert len(doc["results"]) == 30
        for r in doc["results"]:
            assert r["ok"] or r["error_type"] in {
                "InvalidAudioError", "AudioFileError", "SpoofError",
                "InvalidArgumentError", "NativeError", "TypeError", "ValueError",
            }, r  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1])
def test_hypothesis_style_chunking_never_breaks_equivalence(tiny_model: Path, seed: int) -> None:
    """Random chunkings of random valid audio at random rates: streaming == offline (to 1e-5)."""
    import numpy as np

    from spoofsdk import Detector

    det = Detector(tiny_model, backend="cpu", num_threads=1)
    rng = np.random.default_rng(seed)
    for _ in range(4):
        rate = int(rng.choice([8000, 16000, 22050, 44100, 48000]))
        x = (0.3 * rng.standard_normal(int(rng.integers(rate // 10, rate * 3)))).astype(np.float32)
        offline = det.score(x, rate)
        with det.stream(rate, encoding="float32") as sess:
            k = 0
            while k < x.size:
                n = int(rng.integers(1, rate // 5))
                sess.push(x[k : k + n].astype("<f4").tobytes() if rng.random() < 0.5 else x[k : k + n])
                k += n
            final = sess.flush()
        assert [w.start_s for w in final.windows] == [w.start_s for w in offline.windows]
        np.testing.assert_allclose(
            [w.logit for w in final.windows], [w.logit for w in offline.windows], atol=1e-5
        )
