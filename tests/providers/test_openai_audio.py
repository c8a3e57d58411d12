"""The `openai` STT and TTS stage providers through the official SDK, against a loopback server
speaking OpenAI's audio endpoints (transcriptions: multipart WAV upload; speech: streamed pcm)
with real speech models behind them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from backend.errors import BackendError, ErrorCode
from pipelines.audio import rms
from pipelines.session import SessionRuntime
from pipelines.stt_tts import PipelineSettings
from providers.agents import build_agent
from providers.registry import STT_PROVIDERS, TTS_PROVIDERS
from providers.retry import RetryPolicy
from providers.vad.silero import SileroVAD
from tests.conftest import free_port
from tests.fakes.openai_api import VALID_KEY, FakeOpenAI, running_fake_openai
from tests.pipelines.listener import Listener, frames


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as f:
        yield f


def options(fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {"api_key": VALID_KEY, "base_url": fake.base_url, "retry_delay": 0.1, **extra}


async def test_stt_uploads_the_utterance_and_gets_its_words(
    fake: FakeOpenAI, hello_16k: bytes
) -> None:
    stt = STT_PROVIDERS.create("openai", **options(fake, language="en"))
    stream = stt.stream()
    for i in range(0, len(hello_16k), 3200):  # pushed while the user speaks
        await stream.push(hello_16k[i : i + 3200])
    assert await stream.finish() == "hello world"
    (sent,) = fake.audio.transcriptions
    assert sent["model"] == "gpt-4o-mini-transcribe" and sent["language"] == "en"
    assert sent["file"] == len(hello_16k) + 44, "one WAV file: header + the whole utterance"
    await stt.aclose()


async def test_tts_streams_the_speech_as_sent(fake: FakeOpenAI) -> None:
    tts = TTS_PROVIDERS.create("openai", **options(fake, voice="coral", speed=1.1))
    assert tts.capabilities.sample_rate_hz == 24000
    chunks = [c async for c in tts.synthesize("hello world")]
    assert len(chunks) > 1 and all(len(c) % 2 == 0 for c in chunks), "streamed, whole samples"
    pcm = b"".join(chunks)
    assert pcm == fake.audio.spoken[0], "every byte the service sent, in order"
    assert 0.5 < len(pcm) / 2 / 24000 < 3.0 and rms(np.frombuffer(pcm, dtype="<i2")) > 300
    (sent,) = fake.audio.speech
    assert sent["response_format"] == "pcm" and sent["voice"] == "coral" and sent["speed"] == 1.1
    await tts.aclose()


async def test_a_voice_turn_on_openai_stt_and_tts(fake: FakeOpenAI, hello_16k: bytes) -> None:
    fake.audio.fail_next = [500]  # the first upload fails: the pipeline's retry covers it
    rt = SessionRuntime(
        session_id="s-oai-audio",
        user_id="u-oai-audio",
        input_sample_rate_hz=16000,
        settings=PipelineSettings(
            output_sample_rate_hz=16000,
            retry=RetryPolicy(timeout_s=10, max_retries=2, retry_delay_s=0.1),
        ),
        agent=build_agent(spec={"type": "echo"}),
        vad=SileroVAD(),
        stt=STT_PROVIDERS.create("openai", **options(fake)),
        tts=TTS_PROVIDERS.create("openai", **options(fake)),
    )
    rt.start()
    ear = Listener(rt)
    rt.push_audio(frames(hello_16k))
    await ear.until(lambda e: e["type"] == "metrics")
    assert [e["text"] for e in ear.events if e["type"] == "transcript"] == ["hello world"]
    assert [e["text"] for e in ear.events if e["type"] == "agent_reply"] == [
        "You said: hello world"
    ]
    assert ear.audio_between(0, len(ear.events)) / 2 / 16000 > 0.5
    assert fake.audio.attempts["transcriptions"] == 2, "failed once, retried once"
    assert not [e for e in ear.events if e["type"] == "error"]
    ear.stop()
    await rt.aclose()


async def test_tts_retries_before_the_first_audio_then_fails_cleanly(fake: FakeOpenAI) -> None:
    tts = TTS_PROVIDERS.create("openai", **options(fake, max_retries=2))
    fake.audio.fail_next = [503, 429]
    assert [c async for c in tts.synthesize("hello world")], "third attempt succeeds"
    fake.audio.fail_next = [500, 500, 500, 500]
    with pytest.raises(BackendError) as info:
        [c async for c in tts.synthesize("hello world")]
    assert info.value.code is ErrorCode.CONNECTION_FAILED and "500" in info.value.message
    assert fake.audio.attempts["speech"] == 3 + 3 and fake.audio.fail_next == [500]
    await tts.aclose()


async def test_an_unreachable_service_is_a_connection_error(hello_16k: bytes) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    tts = TTS_PROVIDERS.create("openai", api_key=VALID_KEY, base_url=dead, max_retries=1)
    with pytest.raises(BackendError) as info:
        [c async for c in tts.synthesize("hello")]
    assert info.value.code is ErrorCode.CONNECTION_FAILED
    stt = STT_PROVIDERS.create("openai", api_key=VALID_KEY, base_url=dead)
    with pytest.raises(BackendError) as info:
        await stt.recognize(hello_16k)
    assert info.value.code is ErrorCode.CONNECTION_FAILED and info.value.retryable


async def test_a_wrong_key_is_an_authentication_error(fake: FakeOpenAI, hello_16k: bytes) -> None:
    stt = STT_PROVIDERS.create("openai", **options(fake, api_key="sk-wrong-123"))
    with pytest.raises(BackendError) as info:
        await stt.recognize(hello_16k)
    assert info.value.code is ErrorCode.AUTHENTICATION_FAILED
    assert "sk-wrong-123" not in str(info.value)


@pytest.mark.parametrize(
    ("opts", "field"),
    [
        ({"voise": "alloy"}, "stage_provider_config.openai.voise"),
        ({"speed": 9}, "stage_provider_config.openai.speed"),
        ({"max_retries": "many"}, "stage_provider_config.openai.max_retries"),
    ],
)
def test_bad_options_are_named(opts: dict[str, Any], field: str) -> None:
    for registry in (STT_PROVIDERS, TTS_PROVIDERS):
        with pytest.raises(BackendError) as info:
            registry.create("openai", api_key="sk-secret-2", **opts)
        assert info.value.code is ErrorCode.INVALID_CONFIG and info.value.field == field
        assert "sk-secret-2" not in str(info.value)
