"""The one streaming PCM16 mono resampler (soxr, HQ), for the pipelines and the wire codecs alike.

soxr keeps filter state between chunks, so a stream cut into pieces resamples as if whole: no
clicks at the joins. It lives with the providers because wire codecs need it and providers may
not import the pipelines.
"""

from __future__ import annotations

import numpy as np
import soxr


class StreamResampler:
    """One direction of one stream; identity when the rates match. `flush()` ends a stretch of
    audio (returns what the filter still holds, a few ms) and the next chunk starts a fresh one."""

    def __init__(self, in_rate_hz: int, out_rate_hz: int) -> None:
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = out_rate_hz
        self._stream: soxr.ResampleStream | None = None

    def _soxr(self) -> soxr.ResampleStream:
        if self._stream is None:
            self._stream = soxr.ResampleStream(
                self.in_rate_hz, self.out_rate_hz, 1, dtype="int16", quality="HQ"
            )
        return self._stream

    def process(self, samples: np.ndarray) -> np.ndarray:
        if self.in_rate_hz == self.out_rate_hz:
            return samples
        return self._soxr().resample_chunk(samples)

    def flush(self) -> np.ndarray:
        if self.in_rate_hz == self.out_rate_hz or self._stream is None:
            return np.zeros(0, dtype=np.int16)
        out = self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        self._stream = None  # a flushed soxr stream takes no more input
        return out

    def __call__(self, pcm16: bytes, last: bool = False) -> bytes:
        """The same on bytes (little-endian PCM16), as wire codecs hold audio."""
        if self.in_rate_hz == self.out_rate_hz or (not pcm16 and not last):
            return pcm16
        out = self.process(np.frombuffer(pcm16, dtype="<i2")) if pcm16 else np.zeros(0, "<i2")
        if last:
            out = np.concatenate((out, self.flush()))
        return np.asarray(out, dtype="<i2").tobytes()
