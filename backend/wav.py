"""WAV in and out (files for the CLI and tests, in-memory for providers): 16-bit PCM only,
mixed down to mono."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np

from backend.errors import BackendError, ErrorCode


def read_wav(path: Path | str) -> tuple[np.ndarray, int]:
    """Samples (int16, mono) and the sample rate of a 16-bit PCM WAV file."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise BackendError(
                    "read_wav",
                    ErrorCode.INVALID_FORMAT,
                    f"{path}: {8 * w.getsampwidth()}-bit audio; only 16-bit PCM WAV is supported",
                )
            channels, rate = w.getnchannels(), w.getframerate()
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    except (wave.Error, EOFError, OSError) as exc:
        raise BackendError("read_wav", ErrorCode.INVALID_FORMAT, f"{path}: {exc}") from exc
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return data, rate


def write_wav(path: Path | str | io.BytesIO, pcm16: bytes, sample_rate_hz: int) -> None:
    with wave.open(path if isinstance(path, io.BytesIO) else str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate_hz)
        w.writeframes(pcm16)


def wav_bytes(pcm16: bytes, sample_rate_hz: int) -> bytes:
    """Mono PCM16 as a complete WAV file in memory."""
    buf = io.BytesIO()
    write_wav(buf, pcm16, sample_rate_hz)
    return buf.getvalue()
