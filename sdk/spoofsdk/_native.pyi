"""Typed stub of the pybind11 module ``spoofsdk._native`` (native/python/module.cc).

Every call that does work releases the GIL. Errors are raised as the exceptions of
:mod:`spoofsdk.errors` (the module maps native status codes on import): a caller mistake
raises an ``InvalidAudioError``/``InvalidArgumentError`` (both ``ValueError``), a full ring
buffer under the ``"error"`` policy raises ``BufferOverflowError``, a call in the wrong state
raises ``NativeStateError``. Each carries ``.code`` (the C ``spoof_status``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__version__: str
ABI_VERSION: int
ENCODINGS: tuple[str, ...]  # ("pcm16", "float32", "mulaw", "alaw")
MAX_PUSH_BYTES: int  # SPOOF_MAX_PUSH_BYTES: larger pushes raise InvalidArgumentError
MAX_PUSH_SAMPLES: int  # SPOOF_MAX_PUSH_SAMPLES (push_float)
MIN_SAMPLE_RATE: int  # 1000
MAX_SAMPLE_RATE: int  # 384000

def abi_version() -> int: ...
def version_string() -> str: ...
def decode(data: bytes | bytearray | memoryview, encoding: str) -> npt.NDArray[np.float32]: ...
def resample(x: npt.NDArray[np.float32], orig_sr: int, target_sr: int) -> npt.NDArray[np.float32]: ...
def resample_output_length(n_in: int, orig_sr: int, target_sr: int) -> int: ...

class Window:
    @property
    def start_index(self) -> int: ...  # absolute index at the model rate
    @property
    def samples(self) -> npt.NDArray[np.float32]: ...  # 1-D float32, owned copy
    @property
    def is_final(self) -> bool: ...

class FrontendStats:
    samples_in: int
    samples_out: int
    samples_dropped: int
    windows_emitted: int
    pending_bytes: int
    buffered_samples: int
    discarded_bytes: int  # bytes of an incomplete final sample dropped by flush

class Frontend:
    def __init__(
        self,
        input_sample_rate: int,
        *,
        model_sample_rate: int = 16000,
        window_samples: int = 64000,
        hop_samples: int = 32000,
        capacity_samples: int = 0,
        overflow: str = "error",  # or "drop_oldest"
        encoding: str = "pcm16",
    ) -> None: ...
    @property
    def input_sample_rate(self) -> int: ...
    @property
    def model_sample_rate(self) -> int: ...
    @property
    def window_samples(self) -> int: ...
    @property
    def hop_samples(self) -> int: ...
    @property
    def capacity_samples(self) -> int: ...  # resolved (0 -> default)
    @property
    def overflow(self) -> str: ...
    @property
    def encoding(self) -> str: ...
    @property
    def flushed(self) -> bool: ...
    def push(self, data: bytes | bytearray | memoryview, encoding: str | None = None) -> int:
        """Push encoded bytes (default: the frontend's encoding). Returns model-rate samples added."""
    def push_float(self, samples: npt.NDArray[np.float32]) -> int:
        """Push float32 samples at the input rate (1-D; other float dtypes are converted)."""
    def next_window(self) -> Window | None: ...
    def windows(self) -> list[Window]:
        """Drain every ready window."""
    def flush(self) -> None: ...
    def reset(self) -> None: ...
    def stats(self) -> FrontendStats: ...

class RingBuffer:
    def __init__(self, capacity: int, overflow: str = "error") -> None: ...
    def push(self, samples: npt.NDArray[np.float32]) -> None: ...
    def read(self, start: int, n: int) -> npt.NDArray[np.float32]: ...
    def consume(self, new_head: int) -> None: ...
    def pop(self, max_n: int) -> tuple[int, npt.NDArray[np.float32]]:
        """Copy and release up to max_n oldest samples: (start_index, samples)."""
    @property
    def head(self) -> int: ...
    @property
    def tail(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def capacity(self) -> int: ...
