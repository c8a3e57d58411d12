"""Property tests for the audio path: whatever bytes a client sends, at whatever declared rate,
the session answers with a clear error or processes them, and keeps working afterwards."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.errors import BackendError, ErrorCode
from backend.iface import SUPPORTED_SAMPLE_RATES_HZ, SessionRequest
from pipelines.audio import MAX_FRAME_SECONDS, decode_frame
from pipelines.session import SessionRuntime
from pipelines.stt_tts import PipelineSettings
from providers.agents import build_agent
from providers.espeak.tts import EspeakTTS
from providers.pocketsphinx.stt import PocketsphinxSTT
from providers.resample import StreamResampler
from providers.vad.silero import SileroVAD
from tests.pipelines.listener import Listener, frames

rates = st.sampled_from(SUPPORTED_SAMPLE_RATES_HZ)


def frame_is_valid(data: bytes, rate: int) -> bool:
    return 0 < len(data) <= int(rate * MAX_FRAME_SECONDS) * 2 and len(data) % 2 == 0


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200_000), rate=rates)
def test_any_bytes_decode_or_fail_clearly(data: bytes, rate: int) -> None:
    try:
        samples = decode_frame(data, rate)
    except BackendError as err:
        assert err.code is ErrorCode.INVALID_FORMAT and err.message
        assert not frame_is_valid(data, rate)
        return
    assert frame_is_valid(data, rate) and samples.dtype == np.dtype("<i2")
    assert samples.size == len(data) // 2


@settings(max_examples=100, deadline=None)
@given(rate=st.integers(min_value=-(2**40), max_value=2**40))
def test_any_declared_rate_is_accepted_or_named(rate: int) -> None:
    try:
        req = SessionRequest(user_id="u", sample_rate_hz=rate, agent={"type": "echo"})
    except BackendError as err:
        assert err.field == "sample_rate_hz" and rate not in SUPPORTED_SAMPLE_RATES_HZ
        return
    assert req.sample_rate_hz in SUPPORTED_SAMPLE_RATES_HZ


@settings(max_examples=60, deadline=None)
@given(
    rate=rates,
    cuts=st.lists(st.integers(min_value=0, max_value=4000), min_size=1, max_size=20),
)
def test_resampling_does_not_depend_on_how_audio_is_cut(rate: int, cuts: list[int]) -> None:
    signal = (np.sin(np.arange(rate // 2) / 7) * 8000).astype(np.int16)  # 0.5 s
    whole = StreamResampler(rate, 16000)
    expected = np.concatenate([whole.process(signal), whole.flush()])
    pieced = StreamResampler(rate, 16000)
    out, start = [], 0
    for cut in sorted(cuts):
        out.append(pieced.process(signal[start:cut]))
        start = max(start, cut)
    out += [pieced.process(signal[start:]), pieced.flush()]
    got = np.concatenate(out)
    assert abs(got.size - expected.size) <= 2, "the same audio, the same length"


async def test_garbage_frames_never_wedge_a_session(hello_16k: bytes) -> None:
    rt = SessionRuntime(
        session_id="s-fuzz",
        user_id="u-fuzz",
        input_sample_rate_hz=16000,
        settings=PipelineSettings(),
        vad=SileroVAD(),
        stt=PocketsphinxSTT(),
        tts=EspeakTTS(),
        # Noise may make turns; answering them briefly keeps the property test fast.
        agent=build_agent(callback=lambda t: "heard you" if "hello" in t else ""),
    )
    ear = Listener(rt)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.binary(max_size=40_000), max_size=8))
    def push_anything(batch: list[bytes]) -> None:
        errors = rt.push_audio(batch)
        assert len(errors) == sum(not frame_is_valid(f, 16000) for f in batch)
        assert all(e["code"] == "invalid_format" for e in errors)

    push_anything()
    rt.push_audio(frames(b"", silence_s=2.0))  # whatever the garbage started ends here
    await asyncio.sleep(0.5)
    seen = len(ear.events)
    rt.push_audio(frames(hello_16k))
    reply = await ear.until(
        lambda e: e["type"] == "agent_reply" and e["text"] == "heard you", timeout_s=120
    )
    assert ear.events.index(reply) >= seen, "the session still hears and answers"
    assert rt.bad_frames > 0
    ear.stop()
    await rt.aclose()


@pytest.mark.parametrize("rate", SUPPORTED_SAMPLE_RATES_HZ)
def test_every_supported_rate_resamples_to_the_pipeline_rate(rate: int) -> None:
    one_second = np.zeros(rate, dtype=np.int16)
    r = StreamResampler(rate, 16000)
    out = np.concatenate([r.process(one_second), r.flush()])
    assert abs(out.size - 16000) <= 2
