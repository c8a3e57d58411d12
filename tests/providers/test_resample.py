"""The one streaming resampler serves both currencies: samples (pipelines) and bytes (codecs)."""

from __future__ import annotations

import numpy as np

from providers.resample import StreamResampler


def tone(rate: int, seconds: float = 0.2) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def test_bytes_and_samples_give_the_same_audio() -> None:
    pcm = tone(48000)
    a, b = StreamResampler(48000, 16000), StreamResampler(48000, 16000)
    by_samples = np.concatenate((a.process(pcm), a.flush())).astype("<i2").tobytes()
    by_bytes = b(pcm.tobytes()[:4800]) + b(pcm.tobytes()[4800:], last=True)
    x, y = np.frombuffer(by_bytes, "<i2"), np.frombuffer(by_samples, "<i2")
    assert x.size == y.size and np.abs(x.astype(int) - y).max() <= 4  # soxr rounds per chunk
    assert abs(len(by_bytes) // 2 - pcm.size // 3) <= 2


def test_a_flushed_stream_takes_the_next_stretch_afresh() -> None:
    rs = StreamResampler(24000, 16000)
    first = np.concatenate((rs.process(tone(24000)), rs.flush()))
    second = np.concatenate((rs.process(tone(24000)), rs.flush()))
    assert np.array_equal(first, second)
    assert rs.flush().size == 0


def test_matching_rates_are_passed_through() -> None:
    pcm = tone(16000)
    rs = StreamResampler(16000, 16000)
    assert rs.process(pcm) is pcm and rs.flush().size == 0
    assert rs(pcm.tobytes(), last=True) == pcm.tobytes()
