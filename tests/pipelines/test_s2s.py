"""The s2s pipeline in-process with the embedded local speech-to-speech model: a round trip of
real speech, and a barge-in decided by the model's own turn detection, truncated where heard."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pipelines.s2s_local import LocalS2S
from pipelines.session import SessionRuntime
from pipelines.stt_tts import PipelineSettings
from providers.agents import build_agent
from tests.conftest import speak
from tests.pipelines.listener import Listener, frames

LONG_REPLY = (
    "This is the first sentence of a rather long answer. Here comes the second sentence, "
    "which goes on for a while. And a third one, to be sure. Finally the fourth sentence."
)


@pytest.fixture(scope="module")
def model() -> LocalS2S:
    return LocalS2S()


def runtime(model: LocalS2S, agent: Any, out_rate: int = 24000) -> SessionRuntime:
    rt = SessionRuntime(
        session_id="s-s2s",
        user_id="u-s2s",
        input_sample_rate_hz=16000,
        settings=PipelineSettings(output_sample_rate_hz=out_rate),
        agent=agent,
        s2s=model,
    )
    rt.start()
    return rt


async def test_s2s_round_trip_with_real_speech(model: LocalS2S, hello_16k: bytes) -> None:
    rt = runtime(model, build_agent(spec={"type": "echo"}))
    ear = Listener(rt)
    rt.push_audio(frames(hello_16k))
    metrics = await ear.until(lambda e: e["type"] == "metrics")
    transcripts = [e["text"] for e in ear.events if e["type"] == "transcript"]
    replies = [e["text"] for e in ear.events if e["type"] == "agent_reply"]
    assert transcripts == ["hello world"] and replies == ["You said: hello world"]
    states = [e["state"] for e in ear.events if e["type"] == "state"]
    assert states == ["idle", "listening", "processing", "speaking", "listening"]
    audio = ear.audio_between(0, len(ear.events))
    assert audio / 2 / 24000 > 0.3
    assert metrics["response_ms"] > 0 and metrics["interrupted"] is False
    assert rt.ctx.history == [
        {"role": "user", "content": "hello world"},
        {"role": "assistant", "content": "You said: hello world"},
    ]
    ear.stop()
    await rt.aclose()


async def test_s2s_barge_in_stops_the_reply_and_truncates_it(
    model: LocalS2S, hello_16k: bytes
) -> None:
    rt = runtime(model, build_agent(callback=lambda t: LONG_REPLY), out_rate=16000)
    ear = Listener(rt)
    rt.push_audio(frames(hello_16k))
    await ear.until(lambda e: e["type"] == "state" and e["state"] == "speaking")
    await asyncio.sleep(1.2)  # let the user hear a bit of the reply
    rt.push_audio(frames(await speak("stop please")))
    interrupted = await ear.until(lambda e: e["type"] == "interrupted")
    nxt = await ear.until(lambda e: e["type"] == "transcript" and e["turn_id"] == 2)
    i_int, i_next = ear.events.index(interrupted), ear.events.index(nxt)
    assert ear.audio_between(0, i_int) > 0
    assert ear.audio_between(i_int, i_next) == 0, "no reply audio after the interruption"
    heard = interrupted["heard_text"].split()
    assert heard and LONG_REPLY.split()[: len(heard)] == heard and len(heard) < 12
    assert {"role": "assistant", "content": interrupted["heard_text"]} in rt.ctx.history
    assert {"role": "assistant", "content": LONG_REPLY} not in rt.ctx.history
    ear.stop()
    await rt.aclose()
