import numpy as np
import pytest

from backend.errors import BackendError, ErrorCode
from pipelines.audio import FrameSlicer, decode_frame
from providers.resample import StreamResampler


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"\x00\x01\x02", "odd byte count"),
        (bytes(16000 * 2 + 2), "exceeds"),
    ],
)
def test_bad_frames_are_invalid_format(data: bytes, fragment: str) -> None:
    with pytest.raises(BackendError) as info:
        decode_frame(data, 16000)
    assert info.value.code is ErrorCode.INVALID_FORMAT
    assert fragment in info.value.message


def test_good_frame_decodes_little_endian() -> None:
    assert decode_frame(b"\x01\x00\xff\xff", 16000).tolist() == [1, -1]


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 44100, 48000])
def test_streaming_resampler_keeps_duration_and_pitch(rate: int) -> None:
    t = np.arange(rate) / rate  # 1 s of a 440 Hz tone, fed in 20 ms pieces
    tone = (np.sin(2 * np.pi * 440 * t) * 10000).astype(np.int16)
    rs = StreamResampler(rate, 16000)
    step = rate // 50
    out = np.concatenate(
        [rs.process(tone[i : i + step]) for i in range(0, rate, step)] + [rs.flush()]
    )
    assert abs(out.size - 16000) <= 16
    spectrum = np.abs(np.fft.rfft(out[:16000].astype(float)))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) <= 2


def test_frame_slicer_carries_remainders() -> None:
    fs = FrameSlicer(512)
    assert fs.push(np.zeros(500, np.int16)) == []
    frames = fs.push(np.arange(600, dtype=np.int16))
    assert [f.size for f in frames] == [512, 512]  # 1100 samples in: 76 left over
    assert fs.push(np.zeros(435, np.int16)) == []
    assert [f.size for f in fs.push(np.zeros(1, np.int16))] == [512]
