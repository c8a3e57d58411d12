"""Conversation quality in-process (real VAD, STT, TTS; no Ray): barge-in flushes the reply and
cuts the history where the user stopped hearing it, backchannels don't interrupt, a streaming
agent is spoken before it has finished, and each turn is a trace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipelines.session import SessionRuntime
from pipelines.stt_tts import PipelineSettings
from providers.agents import build_agent
from providers.espeak.tts import EspeakTTS
from providers.pocketsphinx.stt import PocketsphinxSTT
from providers.vad.silero import SileroVAD
from tests.conftest import speak
from tests.pipelines.listener import Listener, frames

LONG_REPLY = (
    "This is the first sentence of a rather long answer. Here comes the second sentence, "
    "which goes on for a while. And a third one, to be sure. Finally the fourth sentence."
)
RATE = 16000


@pytest.fixture(scope="module")
def stt() -> PocketsphinxSTT:
    return PocketsphinxSTT()


def runtime(stt: PocketsphinxSTT, agent: Any, **kwargs: Any) -> SessionRuntime:
    return SessionRuntime(
        session_id="s-conv",
        user_id="u-conv",
        input_sample_rate_hz=RATE,
        settings=PipelineSettings(output_sample_rate_hz=RATE),
        vad=SileroVAD(),
        stt=stt,
        tts=EspeakTTS(),
        agent=agent,
        **kwargs,
    )


async def test_barge_in_flushes_the_reply_and_keeps_only_what_was_heard(
    stt: PocketsphinxSTT, hello_16k: bytes
) -> None:
    rt = runtime(stt, build_agent(callback=lambda t: LONG_REPLY))
    ear = Listener(rt)
    rt.push_audio(frames(hello_16k))
    await ear.until(lambda e: e["type"] == "state" and e["state"] == "speaking")
    await asyncio.sleep(1.2)  # let the user hear a bit of the reply
    rt.push_audio(frames(await speak("stop please")))  # the user talks over the agent
    interrupted = await ear.until(lambda e: e["type"] == "interrupted")
    next_transcript = await ear.until(lambda e: e["type"] == "transcript" and e["turn_id"] == 2)
    i_int = ear.events.index(interrupted)
    i_next = ear.events.index(next_transcript)
    assert ear.audio_between(0, i_int) > 0, "the agent had started speaking"
    assert ear.audio_between(i_int, i_next) == 0, "no reply audio may follow the interruption"
    heard = interrupted["heard_text"]
    words = heard.split()
    assert words and LONG_REPLY.split()[: len(words)] == words, "a prefix of the reply, by words"
    assert len(heard) < len(LONG_REPLY) / 2
    assert 500 < interrupted["played_ms"] < 4000
    assistant = [m["content"] for m in rt.ctx.history if m["role"] == "assistant"]
    assert assistant == [heard], "history keeps only what the user heard"
    (metrics,) = [e for e in ear.events if e["type"] == "metrics" and e["turn_id"] == 1]
    assert metrics["interrupted"] is True
    assert rt.pipeline.interruptions == 1
    ear.stop()
    await rt.aclose()


async def test_a_backchannel_does_not_interrupt(stt: PocketsphinxSTT, hello_16k: bytes) -> None:
    rt = runtime(stt, build_agent(callback=lambda t: LONG_REPLY))
    ear = Listener(rt)
    rt.push_audio(frames(hello_16k))
    await ear.until(lambda e: e["type"] == "state" and e["state"] == "speaking")
    await asyncio.sleep(0.8)
    rt.push_audio(frames(await speak("yeah"), silence_s=0.8))
    await ear.until(lambda e: e["type"] == "metrics", timeout_s=60)
    kinds = [e["type"] for e in ear.events]
    assert "backchannel" in kinds and "interrupted" not in kinds
    assert rt.ctx.history[-1] == {"role": "assistant", "content": LONG_REPLY}
    ear.stop()
    await rt.aclose()


async def test_a_streaming_agent_is_heard_before_it_finishes(
    stt: PocketsphinxSTT, hello_16k: bytes
) -> None:
    async def agent(transcript: str) -> AsyncIterator[str]:
        yield "Let me think about that for a moment. "
        await asyncio.sleep(1.5)  # the rest takes a while to write
        yield "Here is the answer."

    rt = runtime(stt, build_agent(callback=agent))
    ear = Listener(rt)
    rt.push_audio(frames(hello_16k))
    await ear.until(lambda e: e["type"] == "metrics")
    i_reply = ear.index("agent_reply")
    assert ear.audio_between(0, i_reply) > RATE * 2 * 0.5, "speech started before the agent ended"
    texts = [e["text"] for e in ear.events if e["type"] == "agent_text"]
    assert texts == ["Let me think about that for a moment.", "Here is the answer."]
    assert (
        ear.events[i_reply]["text"] == "Let me think about that for a moment. Here is the answer."
    )
    ear.stop()
    await rt.aclose()


async def test_a_turn_is_a_trace_with_a_span_per_stage(
    stt: PocketsphinxSTT, hello_16k: bytes
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    rt = runtime(
        stt,
        build_agent(spec={"type": "echo"}),
        tracer=provider.get_tracer("test"),
        trace_attributes={"stt.provider": "pocketsphinx"},
    )
    ear = Listener(rt)
    rt.push_audio(frames(hello_16k))
    metrics = await ear.until(lambda e: e["type"] == "metrics")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    stages = ["vad_end_of_speech", "stt_final", "agent_first_token", "tts_first_byte"]
    assert set(spans) == {"voice.turn", *stages, "first_audio_out"}
    root = spans["voice.turn"]
    assert root.attributes["session.id"] == "s-conv" and root.attributes["turn.id"] == 1
    for name in [*stages, "first_audio_out"]:
        assert spans[name].parent.span_id == root.context.span_id
        assert spans[name].context.trace_id == root.context.trace_id
        assert spans[name].attributes["stt.provider"] == "pocketsphinx"
    stt_ms = (spans["stt_final"].end_time - spans["stt_final"].start_time) / 1e6
    assert abs(stt_ms - metrics["stt_final_ms"]) < 1.0, "spans and metrics tell the same story"
    ear.stop()
    await rt.aclose()
