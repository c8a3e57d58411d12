"""The STT is asked for its transcript early, while the endpointing delay runs, and asked again
over the whole utterance if the user goes on: a pause between words never splits or truncates
what was said. Real silero VAD and pocketsphinx, no Ray."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.endpointing import EndpointingConfig
from pipelines.session import SessionRuntime
from pipelines.stt_tts import PipelineSettings
from providers.agents import build_agent
from providers.base import STT, SttStream
from providers.espeak.tts import EspeakTTS
from providers.pocketsphinx.stt import PocketsphinxSTT
from providers.vad.silero import SileroVAD
from tests.conftest import speak
from tests.pipelines.listener import RATE, Listener, frames


class RecordingSTT(STT):
    """The real recogniser, with what the pipeline asked of it written down."""

    name = "pocketsphinx"

    def __init__(self, inner: STT) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities
        self.streams = 0
        self.finishes = 0

    def stream(self) -> SttStream:
        self.streams += 1
        return _RecordingStream(self, self.inner.stream())


class _RecordingStream(SttStream):
    def __init__(self, owner: RecordingSTT, inner: SttStream) -> None:
        self.owner, self.inner = owner, inner

    async def push(self, pcm16: bytes) -> None:
        await self.inner.push(pcm16)

    async def finish(self) -> str:
        self.owner.finishes += 1
        return await self.inner.finish()

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(scope="module")
def pocketsphinx() -> PocketsphinxSTT:
    return PocketsphinxSTT()


async def talk(stt: STT, pcm: bytes, **settings: Any) -> list[dict[str, Any]]:
    """`pcm` then a second of silence into a session; its final transcripts."""
    rt = SessionRuntime(
        session_id="s-early",
        user_id="u-early",
        input_sample_rate_hz=RATE,
        settings=PipelineSettings(output_sample_rate_hz=RATE, **settings),
        vad=SileroVAD(),
        stt=stt,
        tts=EspeakTTS(),
        agent=build_agent(spec={"type": "echo"}),
    )
    ear = Listener(rt)
    try:
        rt.push_audio(frames(pcm))
        await ear.until(lambda e: e["type"] in ("metrics", "error"))
        return [e for e in ear.events if e["type"] == "transcript"]
    finally:
        ear.stop()
        await rt.aclose()


async def test_the_early_transcript_answers_a_turn_that_ends(
    pocketsphinx: PocketsphinxSTT, hello_16k: bytes
) -> None:
    stt = RecordingSTT(pocketsphinx)
    transcripts = await talk(stt, hello_16k)
    assert [t["text"] for t in transcripts] == ["hello world"]
    # One stream, finished once: the early finish gave the turn its transcript.
    assert (stt.streams, stt.finishes) == (1, 1)


async def test_a_pause_shorter_than_the_endpointing_delay_keeps_one_utterance(
    pocketsphinx: PocketsphinxSTT,
) -> None:
    pause = bytes(int(RATE * 0.35) * 2)  # past the early finish, short of the endpointing delay
    pcm = await speak("hello") + pause + await speak("world")
    stt = RecordingSTT(pocketsphinx)
    transcripts = await talk(
        stt,
        pcm,
        endpointing=EndpointingConfig(min_silence_s=0.8),
        stt_early_finish_s=0.15,
    )
    assert [t["text"] for t in transcripts] == ["hello world"]
    # The early finish after "hello" was taken back: a second stream heard it all again.
    assert stt.streams == 2 and stt.finishes == 2


async def test_without_early_finish_the_transcript_is_the_same(
    pocketsphinx: PocketsphinxSTT, hello_16k: bytes
) -> None:
    stt = RecordingSTT(pocketsphinx)
    transcripts = await talk(stt, hello_16k, stt_early_finish_s=None)
    assert [t["text"] for t in transcripts] == ["hello world"]
    assert (stt.streams, stt.finishes) == (1, 1)
