"""PCM16 frames: validation of what clients send, fixed framing (resampling: providers.resample)."""

from __future__ import annotations

import numpy as np

from backend.errors import BackendError, ErrorCode

PIPELINE_RATE_HZ = 16000  # STT and VAD rate; everything inbound is resampled to it
MAX_FRAME_SECONDS = 1.0  # one frame may carry at most this much audio


def decode_frame(
    data: bytes, sample_rate_hz: int, max_seconds: float = MAX_FRAME_SECONDS
) -> np.ndarray:
    """Bytes from a client → int16 samples, or `invalid_format` naming what is wrong."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BackendError("audio.decode", ErrorCode.INVALID_FORMAT, "audio frame must be bytes")
    n = len(data)
    if n == 0:
        raise BackendError("audio.decode", ErrorCode.INVALID_FORMAT, "empty audio frame")
    if n % 2:
        raise BackendError(
            "audio.decode",
            ErrorCode.INVALID_FORMAT,
            f"audio frame has an odd byte count ({n}); PCM16 needs 2 bytes per sample",
        )
    limit = int(sample_rate_hz * max_seconds) * 2
    if n > limit:
        raise BackendError(
            "audio.decode",
            ErrorCode.INVALID_FORMAT,
            f"audio frame of {n} bytes exceeds {limit} bytes ({max_seconds:g} s at "
            f"{sample_rate_hz} Hz); send smaller frames",
        )
    return np.frombuffer(bytes(data), dtype="<i2")


class FrameSlicer:
    """Cuts a sample stream into frames of exactly `frame_samples` (what a VAD model accepts)."""

    def __init__(self, frame_samples: int) -> None:
        self.frame_samples = frame_samples
        self._buf = np.zeros(0, dtype=np.int16)

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        buf = np.concatenate((self._buf, samples)) if self._buf.size else samples
        n = buf.size // self.frame_samples
        frames = [buf[i * self.frame_samples : (i + 1) * self.frame_samples] for i in range(n)]
        self._buf = buf[n * self.frame_samples :].copy()
        return frames


def duration_s(samples: int, sample_rate_hz: int) -> float:
    return samples / float(sample_rate_hz)


def rms(samples: np.ndarray) -> float:
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
