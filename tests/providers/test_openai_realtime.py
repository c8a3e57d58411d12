"""The `openai_realtime` s2s provider through the official SDK's websocket client, against a
loopback server speaking the Realtime protocol with a real "model" (Silero VAD, PocketSphinx,
espeak-ng): real speech in, audio and transcripts out, barge-in, errors, lost connections and
the session-length limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backend.errors import BackendError, ErrorCode
from pipelines.session import SessionRuntime
from pipelines.stt_tts import PipelineSettings
from providers.agents import build_agent
from providers.base import S2sOptions
from providers.openai.realtime import OpenAIRealtimeS2S
from providers.registry import S2S_PROVIDERS
from providers.retry import RetryPolicy
from tests.conftest import speak
from tests.fakes.openai_api import VALID_KEY, FakeOpenAI, running_fake_openai
from tests.pipelines.listener import Listener, frames

LONG_REPLY = (
    "This is the first sentence of a rather long answer. Here comes the second sentence, "
    "which goes on for a while. And a third one, to be sure. Finally the fourth sentence."
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as f:
        yield f


def model(fake: FakeOpenAI, **options: Any) -> OpenAIRealtimeS2S:
    return S2S_PROVIDERS.create(
        "openai_realtime",
        api_key=VALID_KEY,
        base_url=fake.base_url,
        model="gpt-realtime",
        **options,
    )


def runtime(
    s2s: OpenAIRealtimeS2S, retry: RetryPolicy | None = None, history: Any = ()
) -> SessionRuntime:
    rt = SessionRuntime(
        session_id="s-oai",
        user_id="u-oai",
        input_sample_rate_hz=16000,
        settings=PipelineSettings(output_sample_rate_hz=16000),
        agent=build_agent(spec={"type": "echo"}),  # unused: the model answers
        s2s=s2s,
        s2s_options=S2sOptions(
            instructions="Be brief.",
            retry=retry or RetryPolicy(timeout_s=10, max_retries=2, retry_delay_s=0.1),
            history=history,
        ),
    )
    rt.start()
    return rt


@pytest.mark.parametrize("turn_detection", ["server_vad", "semantic_vad"])
async def test_a_spoken_turn_through_the_sdk(
    fake: FakeOpenAI, hello_16k: bytes, turn_detection: str
) -> None:
    rt = runtime(model(fake, voice="cedar", turn_detection=turn_detection))
    ear = Listener(rt)
    rt.push_audio(frames(hello_16k))
    metrics = await ear.until(lambda e: e["type"] == "metrics")
    assert [e["text"] for e in ear.events if e["type"] == "transcript"] == ["hello world"]
    assert [e["text"] for e in ear.events if e["type"] == "agent_reply"] == [
        "You said: hello world"
    ]
    assert ear.audio_between(0, len(ear.events)) / 2 / 16000 > 0.5, "the reply was heard"
    assert metrics["interrupted"] is False
    assert rt.ctx.history == [
        {"role": "user", "content": "hello world"},
        {"role": "assistant", "content": "You said: hello world"},
    ]
    # What the service was told: GA session config, pcm16 at 24 kHz, base64 audio.
    (update,) = fake.realtime.events("session.update")
    session = update["session"]
    assert session["type"] == "realtime" and session["instructions"] == "Be brief."
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"] == {
        "format": {"type": "audio/pcm", "rate": 24000},
        "voice": "cedar",
    }
    assert session["audio"]["input"]["turn_detection"]["type"] == turn_detection
    assert fake.realtime.errors == [], "every client event was valid"
    appended = fake.realtime.events("input_audio_buffer.append")
    assert len(appended) > 10 and all(e["audio"] > 0 for e in appended)
    ear.stop()
    await rt.aclose()


async def test_barge_in_cancels_and_truncates_at_what_was_heard(
    fake: FakeOpenAI, hello_16k: bytes
) -> None:
    fake.realtime.reply = lambda transcript: LONG_REPLY
    fake.realtime.pace = 1.5  # still generating when the user talks over it
    rt = runtime(model(fake))
    ear = Listener(rt)
    rt.push_audio(frames(hello_16k))
    await ear.until(lambda e: e["type"] == "state" and e["state"] == "speaking")
    await asyncio.sleep(1.5)  # the user hears a bit of the reply
    rt.push_audio(frames(await speak("stop please")))
    interrupted = await ear.until(lambda e: e["type"] == "interrupted")
    await ear.until(lambda e: e["type"] == "transcript" and e["turn_id"] == 2)

    (cancel,) = fake.realtime.events("response.cancel")
    assert cancel["response_id"].startswith("resp_")
    (truncate,) = fake.realtime.events("conversation.item.truncate")
    assert truncate["content_index"] == 0
    assert abs(truncate["audio_end_ms"] - interrupted["played_ms"]) <= 1
    item = fake.realtime.connections[0].items[truncate["item_id"]]
    assert item["role"] == "assistant" and item["_truncated_ms"] == truncate["audio_end_ms"]
    assert truncate["audio_end_ms"] < item["_audio_ms"], "cut before the end of the reply"
    heard = interrupted["heard_text"].split()
    assert heard and LONG_REPLY.split()[: len(heard)] == heard
    assert not [e for e in ear.events if e["type"] == "error"]
    assert fake.realtime.errors == [], "the cancel found its response, the truncate its audio"
    ear.stop()
    await rt.aclose()


async def test_a_provider_error_event_is_a_clear_session_error(
    fake: FakeOpenAI, hello_16k: bytes
) -> None:
    fake.realtime.inject_error = {
        "type": "invalid_request_error",
        "code": "rate_limit_exceeded",
        "message": "Rate limit reached for gpt-realtime.",
    }
    rt = runtime(model(fake))
    ear = Listener(rt)
    rt.push_audio(frames(hello_16k))
    error = await ear.until(lambda e: e["type"] == "error")
    assert error["code"] == "rate_limit_exceeded"
    assert "Rate limit reached" in error["message"] and VALID_KEY not in error["message"]
    ear.stop()
    await rt.aclose()


async def test_a_wrong_key_fails_the_connect_without_retrying(fake: FakeOpenAI) -> None:
    s2s = S2S_PROVIDERS.create("openai_realtime", api_key="sk-wrong", base_url=fake.base_url)
    with pytest.raises(BackendError) as info:
        await s2s.connect(S2sOptions(retry=RetryPolicy(max_retries=3, retry_delay_s=0.1)))
    assert info.value.code is ErrorCode.AUTHENTICATION_FAILED
    assert "invalid_api_key" in info.value.message and "sk-wrong" not in str(info.value)
    assert fake.realtime.attempts == 1


async def test_a_dropped_connection_is_retried_then_fails_cleanly(
    fake: FakeOpenAI, hello_16k: bytes
) -> None:
    rt = runtime(model(fake), retry=RetryPolicy(timeout_s=5, max_retries=2, retry_delay_s=0.1))
    ear = Listener(rt)
    await ear.until(lambda e: e["type"] == "state")
    while not fake.realtime.connections:
        await asyncio.sleep(0.05)
    fake.realtime.refuse = True  # the service is gone: every reconnect is refused
    await fake.realtime.drop()
    error = await ear.until(lambda e: e["type"] == "error")
    assert error["code"] == "connection_failed"
    assert "not restored after 2 retries" in error["message"]
    assert "503" in error["message"]
    assert fake.realtime.attempts == 1 + 2
    rt.push_audio(frames(hello_16k))  # audio after the failure goes nowhere, quietly
    await asyncio.sleep(0.5)
    assert len([e for e in ear.events if e["type"] == "error"]) == 1
    ear.stop()
    await rt.aclose()


async def test_a_dropped_connection_reconnects_with_the_conversation(
    fake: FakeOpenAI, hello_16k: bytes
) -> None:
    rt = runtime(model(fake))
    ear = Listener(rt)
    rt.push_audio(frames(hello_16k))
    await ear.until(lambda e: e["type"] == "metrics")
    await fake.realtime.drop()
    while len(fake.realtime.connections) < 2:
        await asyncio.sleep(0.05)
    rt.push_audio(frames(hello_16k))
    await ear.until(lambda e: e["type"] == "metrics" and e["turn_id"] == 2)
    second = fake.realtime.connections[1]
    carried = [e["item"] for e in second.received if e["type"] == "conversation.item.create"]
    assert [(i["role"], i["content"][0]["text"]) for i in carried] == [
        ("user", "hello world"),
        ("assistant", "You said: hello world"),
    ]
    assert carried[1]["content"][0]["type"] == "output_text"
    assert not [e for e in ear.events if e["type"] == "error"]
    ear.stop()
    await rt.aclose()


async def test_the_session_is_renewed_before_its_length_limit(
    fake: FakeOpenAI, hello_16k: bytes
) -> None:
    history = (("user", "my name is Ada"), ("assistant", "Hello Ada."))
    rt = runtime(model(fake, max_session_s=3.0), history=history)
    ear = Listener(rt)
    rt.push_audio(frames(hello_16k))
    await ear.until(lambda e: e["type"] == "metrics")
    while len(fake.realtime.connections) < 2:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    first, second = fake.realtime.connections[:2]
    assert first.ws.closed, "the old session is closed once the new one is ready"
    carried = [e["item"] for e in second.received if e["type"] == "conversation.item.create"]
    assert [(i["role"], i["content"][0]["text"]) for i in carried] == [
        *history,
        ("user", "hello world"),
        ("assistant", "You said: hello world"),
    ]
    rt.push_audio(frames(hello_16k))  # the conversation goes on over the new session
    await ear.until(lambda e: e["type"] == "metrics" and e["turn_id"] == 2)
    assert not [e for e in ear.events if e["type"] == "error"]
    ear.stop()
    await rt.aclose()


async def test_the_services_own_expiry_is_survived(fake: FakeOpenAI, hello_16k: bytes) -> None:
    fake.realtime.max_session_s = 2.0  # the service ends the session: error, then close 1001
    rt = runtime(model(fake))
    ear = Listener(rt)
    while not fake.realtime.connections:
        await asyncio.sleep(0.01)
    fake.realtime.max_session_s = 3600.0  # only the first session is that short
    while len(fake.realtime.connections) < 2:
        await asyncio.sleep(0.1)
    rt.push_audio(frames(hello_16k))
    await ear.until(lambda e: e["type"] == "metrics")
    assert not [e for e in ear.events if e["type"] == "error"], "expiry is not an error"
    ear.stop()
    await rt.aclose()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"voise": "marin"}, "stage_provider_config.openai_realtime.voise"),
        ({"max_session_s": "soon"}, "stage_provider_config.openai_realtime.max_session_s"),
        ({"turn_detection": "push"}, "stage_provider_config.openai_realtime.turn_detection"),
    ],
)
def test_bad_options_are_named(options: dict[str, Any], field: str) -> None:
    with pytest.raises(BackendError) as info:
        S2S_PROVIDERS.create("openai_realtime", api_key="sk-secret-1", **options)
    assert info.value.code is ErrorCode.INVALID_CONFIG and info.value.field == field
    assert "sk-secret-1" not in str(info.value)
