"""The C ABI of the installed libspoof through cffi in ABI mode: the whole lifecycle,
status codes and messages, NULL arguments, per-thread spoof_last_error, struct_size."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

OK, INVALID_ARGUMENT, INVALID_AUDIO, OVERFLOW, BUFFER_TOO_SMALL, STATE = 0, 1, 2, 3, 4, 5


def _err(ffi: Any, lib: Any) -> str:
    return str(ffi.string(lib.spoof_last_error()).decode())


def test_exports_and_library_info(ffi_lib: tuple[Any, Any]) -> None:
    ffi, lib = ffi_lib
    assert lib.spoof_abi_version() == 1
    assert ffi.string(lib.spoof_status_name(lib.SPOOF_ERR_STATE)) == b"SPOOF_ERR_STATE"
    assert ffi.string(lib.spoof_status_name(1234)) == b"SPOOF_ERR_UNKNOWN"


def test_version_script_exports_only_spoof_symbols() -> None:
    import subprocess

    import spoofsdk

    nm = subprocess.run(
        ["nm", "-D", "--defined-only", str(spoofsdk.native_library_path())],
        capture_output=True,
        text=True,
        check=False,
    )
    if nm.returncode != 0:
        pytest.skip(f"nm unavailable: {nm.stderr.strip()}")
    names = [line.split()[-1].split("@")[0] for line in nm.stdout.splitlines() if line.strip()]
    exported = [n for n in names if n != "SPOOF_1"]
    assert exported
    assert all(n.startswith("spoof_") for n in exported), [n for n in exported if not n.startswith("spoof_")]


def test_whole_lifecycle(ffi_lib: tuple[Any, Any]) -> None:
    ffi, lib = ffi_lib
    opts = ffi.new("spoof_frontend_options*")
    lib.spoof_frontend_options_init(opts)
    assert opts.struct_size == ffi.sizeof("spoof_frontend_options")
    opts.input_sample_rate = 8000
    opts.window_samples = 16000
    opts.hop_samples = 8000
    opts.encoding = lib.SPOOF_ENCODING_MULAW
    fe_p = ffi.new("spoof_frontend**")
    assert lib.spoof_frontend_create(opts, fe_p) == OK
    fe = fe_p[0]
    data = bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8))
    buf = ffi.from_buffer(data)
    for i in range(0, len(data), 160):
        assert lib.spoof_frontend_push(fe, buf + i, min(160, len(data) - i), 0) == OK
    out = ffi.new("float[]", 16000)
    info = ffi.new("spoof_window_info*")
    has = ffi.new("int32_t*")
    starts = []
    while True:
        assert lib.spoof_frontend_next_window(fe, out, 16000, info, has) == OK
        if not has[0]:
            break
        starts.append((info.start_index, info.n_samples, info.is_final))
    assert lib.spoof_frontend_flush(fe) == OK
    while True:
        assert lib.spoof_frontend_next_window(fe, out, 16000, info, has) == OK
        if not has[0]:
            break
        starts.append((info.start_index, info.n_samples, info.is_final))
    # 20000 mu-law samples -> 40000 at 16 kHz: windows at 0, 8000, 16000, 24000; final none
    assert starts == [(0, 16000, 0), (8000, 16000, 0), (16000, 16000, 0), (24000, 16000, 0)]
    stats = ffi.new("spoof_frontend_stats*")
    stats.struct_size = ffi.sizeof("spoof_frontend_stats")
    assert lib.spoof_frontend_get_stats(fe, stats) == OK
    assert (stats.samples_in, stats.samples_out, stats.windows_emitted) == (20000, 40000, 4)
    assert lib.spoof_frontend_push(fe, buf, 10, 0) == STATE
    assert "push after flush" in _err(ffi, lib)
    assert lib.spoof_frontend_reset(fe) == OK
    assert lib.spoof_frontend_push(fe, buf, 10, 0) == OK
    lib.spoof_frontend_destroy(fe)
    lib.spoof_frontend_destroy(ffi.NULL)


def test_null_arguments(ffi_lib: tuple[Any, Any]) -> None:
    ffi, lib = ffi_lib
    NULL = ffi.NULL
    opts = ffi.new("spoof_frontend_options*")
    lib.spoof_frontend_options_init(opts)
    lib.spoof_frontend_options_init(NULL)  # no crash
    fe_p = ffi.new("spoof_frontend**")
    assert lib.spoof_frontend_create(NULL, fe_p) == INVALID_ARGUMENT
    assert "opts must not be NULL" in _err(ffi, lib)
    assert lib.spoof_frontend_create(opts, NULL) == INVALID_ARGUMENT
    assert lib.spoof_frontend_create(opts, fe_p) == OK
    fe = fe_p[0]
    out = ffi.new("float[]", 64000)
    info = ffi.new("spoof_window_info*")
    has = ffi.new("int32_t*")
    calls = {
        "spoof_frontend_push(NULL fe)": lambda: lib.spoof_frontend_push(NULL, b"ab", 2, 0),
        "spoof_frontend_push(NULL data)": lambda: lib.spoof_frontend_push(fe, NULL, 2, 0),
        "spoof_frontend_push_float(NULL)": lambda: lib.spoof_frontend_push_float(fe, NULL, 2),
        "next_window(NULL out)": lambda: lib.spoof_frontend_next_window(fe, NULL, 64000, info, has),
        "next_window(NULL info)": lambda: lib.spoof_frontend_next_window(fe, out, 64000, NULL, has),
        "next_window(NULL has)": lambda: lib.spoof_frontend_next_window(fe, out, 64000, info, NULL),
        "next_window(NULL fe)": lambda: lib.spoof_frontend_next_window(NULL, out, 64000, info, has),
        "flush(NULL)": lambda: lib.spoof_frontend_flush(NULL),
        "reset(NULL)": lambda: lib.spoof_frontend_reset(NULL),
        "get_stats(NULL stats)": lambda: lib.spoof_frontend_get_stats(fe, NULL),
        "decode(NULL data)": lambda: lib.spoof_decode(NULL, 4, 1, out, 4, ffi.new("size_t*")),
        "decode(NULL n_out)": lambda: lib.spoof_decode(b"abcd", 4, 1, out, 4, NULL),
        "resample(NULL in)": lambda: lib.spoof_resample(NULL, 4, 8000, 16000, out, 8, ffi.new("int64_t*")),
        "resample_output_length(NULL)": lambda: lib.spoof_resample_output_length(4, 8000, 16000, NULL),
        "ring_create(NULL)": lambda: lib.spoof_ring_create(4, 0, NULL),
        "ring_push(NULL)": lambda: lib.spoof_ring_push(NULL, out, 1),
        "ring_read(NULL)": lambda: lib.spoof_ring_read(NULL, 0, out, 1),
        "ring_consume(NULL)": lambda: lib.spoof_ring_consume(NULL, 0),
        "ring_pop(NULL)": lambda: lib.spoof_ring_pop(NULL, out, 1, ffi.new("int64_t*"), ffi.new("int64_t*")),
    }
    for name, call in calls.items():
        assert call() == INVALID_ARGUMENT, name
        assert "must not be NULL" in _err(ffi, lib), name
    assert lib.spoof_frontend_push(fe, NULL, 0, 0) == OK  # zero bytes: a no-op
    assert lib.spoof_frontend_next_window(fe, out, 63999, info, has) == BUFFER_TOO_SMALL
    assert "must hold window_samples = 64000 floats; got 63999" in _err(ffi, lib)
    assert lib.spoof_ring_head(NULL) == -1
    lib.spoof_ring_destroy(NULL)
    lib.spoof_frontend_destroy(fe)


def test_bad_sizes_rates_and_huge_pushes(ffi_lib: tuple[Any, Any]) -> None:
    ffi, lib = ffi_lib
    fe_p = ffi.new("spoof_frontend**")
    for field, value, needle in [
        ("input_sample_rate", 0, "input_sample_rate must be in [1000, 384000] Hz; got 0"),
        ("input_sample_rate", -1, "got -1"),
        ("input_sample_rate", 10**9, "got 1000000000"),
        ("model_sample_rate", 0, "model_sample_rate must be in"),
        ("window_samples", 0, "window_samples must be in [1,"),
        ("window_samples", -64000, "got -64000"),
        ("hop_samples", 0, "hop_samples must be in [1, window_samples = 64000]; got 0"),
        ("hop_samples", 64001, "got 64001"),
        (
            "capacity_samples",
            64000,
            "capacity_samples must be 0 (default) or in [window_samples + hop_samples",
        ),
        ("capacity_samples", -1, "got -1"),
        ("overflow_policy", 2, "overflow_policy must be"),
        ("encoding", 9, "encoding must be one of"),
    ]:
        opts = ffi.new("spoof_frontend_options*")
        lib.spoof_frontend_options_init(opts)
        setattr(opts, field, value)
        fe_p[0] = ffi.NULL
        assert lib.spoof_frontend_create(opts, fe_p) == INVALID_ARGUMENT, field
        assert needle in _err(ffi, lib), (field, _err(ffi, lib))
        assert fe_p[0] == ffi.NULL
    opts = ffi.new("spoof_frontend_options*")
    lib.spoof_frontend_options_init(opts)
    assert lib.spoof_frontend_create(opts, fe_p) == OK
    fe = fe_p[0]
    small = ffi.new("char[]", 16)
    # The size is checked before the data is touched: a huge push is a typed error, not a crash.
    assert lib.spoof_frontend_push(fe, small, 2**40, 0) == INVALID_ARGUMENT
    assert "at most 67108864 bytes (SPOOF_MAX_PUSH_BYTES); got 1099511627776" in _err(ffi, lib)
    assert lib.spoof_frontend_push_float(fe, ffi.cast("float*", small), 2**30) == INVALID_ARGUMENT
    assert "SPOOF_MAX_PUSH_SAMPLES" in _err(ffi, lib)
    assert lib.spoof_frontend_push(fe, small, 4, 77) == INVALID_ARGUMENT
    assert lib.spoof_frontend_push(fe, small, 3, lib.SPOOF_ENCODING_PCM16) == OK  # 1 byte pending
    stats = ffi.new("spoof_frontend_stats*")
    stats.struct_size = 16  # an old caller knowing only samples_in
    stats.samples_out = -7
    assert lib.spoof_frontend_get_stats(fe, stats) == OK
    assert (stats.struct_size, stats.samples_in, stats.samples_out) == (16, 1, -7)
    nan = np.array([0.0, np.nan], "<f4").tobytes()
    lib.spoof_frontend_reset(fe)
    assert lib.spoof_frontend_push(fe, nan, len(nan), lib.SPOOF_ENCODING_FLOAT32) == INVALID_AUDIO
    assert "float32 audio must be finite; sample 1 is NaN" in _err(ffi, lib)
    lib.spoof_frontend_destroy(fe)
    n_out = ffi.new("int64_t*")
    for rate in (0, -1, 10**9):
        assert lib.spoof_resample_output_length(10, rate, 16000, n_out) == INVALID_ARGUMENT
    assert lib.spoof_resample_output_length(-5, 8000, 16000, n_out) == INVALID_ARGUMENT
    ring = ffi.new("spoof_ring**")
    for cap in (0, -3):
        assert lib.spoof_ring_create(cap, 0, ring) == INVALID_ARGUMENT
        assert "capacity must be in [1, 268435456] samples" in _err(ffi, lib)


def test_older_struct_size_uses_defaults(ffi_lib: tuple[Any, Any]) -> None:
    ffi, lib = ffi_lib
    opts = ffi.new("spoof_frontend_options*")
    lib.spoof_frontend_options_init(opts)
    opts.struct_size = ffi.offsetof("spoof_frontend_options", "window_samples")  # knows only the rates
    opts.input_sample_rate = 8000
    opts.window_samples = -1  # beyond struct_size: ignored
    fe_p = ffi.new("spoof_frontend**")
    assert lib.spoof_frontend_create(opts, fe_p) == OK
    out = ffi.new("float[]", 63999)
    info, has = ffi.new("spoof_window_info*"), ffi.new("int32_t*")
    assert lib.spoof_frontend_next_window(fe_p[0], out, 63999, info, has) == BUFFER_TOO_SMALL  # default 64000
    lib.spoof_frontend_destroy(fe_p[0])
    opts.struct_size = 0
    assert lib.spoof_frontend_create(opts, fe_p) == INVALID_ARGUMENT
    assert "struct_size must be set" in _err(ffi, lib)


def test_last_error_is_per_thread(ffi_lib: tuple[Any, Any]) -> None:
    ffi, lib = ffi_lib
    barrier = threading.Barrier(3)
    seen: dict[str, str] = {}

    def worker(name: str, rate: int) -> None:
        opts = ffi.new("spoof_frontend_options*")
        lib.spoof_frontend_options_init(opts)
        opts.input_sample_rate = rate
        fe_p = ffi.new("spoof_frontend**")
        if rate:
            assert lib.spoof_frontend_create(opts, fe_p) == INVALID_ARGUMENT
        barrier.wait()  # both threads have failed before either reads its message
        seen[name] = _err(ffi, lib)
        barrier.wait()

    threads = [
        threading.Thread(target=worker, args=("a", -1)),
        threading.Thread(target=worker, args=("b", 10**9)),
        threading.Thread(target=worker, args=("clean", 0)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["a"].endswith("got -1")
    assert seen["b"].endswith("got 1000000000")
    assert seen["clean"] == ""


def test_ring_lifecycle(ffi_lib: tuple[Any, Any]) -> None:
    ffi, lib = ffi_lib
    ring_p = ffi.new("spoof_ring**")
    assert lib.spoof_ring_create(8, lib.SPOOF_OVERFLOW_DROP_OLDEST, ring_p) == OK
    ring = ring_p[0]
    x = ffi.new("float[]", list(range(12)))
    assert lib.spoof_ring_push(ring, x, 12) == OK
    assert (lib.spoof_ring_head(ring), lib.spoof_ring_tail(ring), lib.spoof_ring_dropped(ring)) == (4, 12, 4)
    out = ffi.new("float[]", 8)
    start, n = ffi.new("int64_t*"), ffi.new("int64_t*")
    assert lib.spoof_ring_pop(ring, out, 8, start, n) == OK
    assert (start[0], n[0], list(out)) == (4, 8, [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0])
    assert lib.spoof_ring_read(ring, 3, out, 1) == INVALID_ARGUMENT
    assert "must lie within [head, tail) = [12, 12)" in _err(ffi, lib)
    lib.spoof_ring_destroy(ring)
