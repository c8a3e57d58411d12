"""Cartesia STT + TTS through the official SDK against a loopback server speaking Cartesia's
websocket protocols (tests/fakes/cartesia.py: real espeak-ng speech, pocketsphinx recognition).
Whole sessions run in-process (SessionRuntime, real VAD, no Ray)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backend.errors import BackendError
from pipelines.session import SessionRuntime
from pipelines.stt_tts import PipelineSettings
from providers.agents import build_agent
from providers.cartesia.backend import CartesiaBackendProvider
from providers.cartesia.stt import CartesiaSTT
from providers.cartesia.tts import CartesiaTTS
from providers.retry import RetryPolicy
from providers.vad.silero import SileroVAD
from tests.conftest import speak
from tests.fakes.cartesia import VALID_KEY, FakeCartesia, running_fake_cartesia
from tests.pipelines.listener import Listener, frames

RATE = 16000
WAIT_S = 120  # generous: the shared 2-core machine may be very busy
LONG_REPLY = (
    "This is the first sentence of a rather long answer. Here comes the second sentence, "
    "which goes on for a while. And a third one, to be sure. Finally the fourth sentence."
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeCartesia]:
    async with running_fake_cartesia() as server:
        yield server


async def session(fake: FakeCartesia, reply: Any, max_retries: int = 3) -> SessionRuntime:
    options = {"api_key": VALID_KEY, "api_url": fake.base_url, "version": "2025-04-16"}
    stt, tts = CartesiaSTT(**options), CartesiaTTS(**options)
    await asyncio.gather(stt.connect(), tts.connect())  # as the stage actors do at start
    retry = RetryPolicy(timeout_s=60, max_retries=max_retries, retry_delay_s=0.1)
    return SessionRuntime(
        session_id="s-cartesia",
        user_id="u-cartesia",
        input_sample_rate_hz=RATE,
        settings=PipelineSettings(output_sample_rate_hz=RATE, retry=retry),
        vad=SileroVAD(),
        stt=stt,
        tts=tts,
        agent=build_agent(callback=reply),
    )


async def close(rt: SessionRuntime, ear: Listener) -> None:
    ear.stop()
    await rt.aclose()
    await rt.pipeline.stt.aclose()
    await rt.pipeline.tts.aclose()


async def test_a_spoken_turn_goes_through_cartesia_stt_and_tts(
    fake: FakeCartesia, hello_16k: bytes
) -> None:
    rt = await session(fake, lambda t: f"You said: {t}. Anything else?")
    ear = Listener(rt)
    rt.push_audio(frames(hello_16k))
    transcript = await ear.until(lambda e: e["type"] == "transcript", timeout_s=WAIT_S)
    await ear.until(lambda e: e["type"] == "metrics", timeout_s=WAIT_S)
    await close(rt, ear)
    assert transcript["text"] == "hello world"
    replies = [e["text"] for e in ear.events if e["type"] == "agent_reply"]
    assert replies == ["You said: hello world. Anything else?"]
    assert ear.audio_between(0, len(ear.events)) > RATE * 2 * 1.0, "over 1 s of reply audio"
    # Both stages spoke Cartesia's protocol with the configured version, one socket each.
    assert sorted(h["path"] for h in fake.handshakes) == ["/stt/websocket", "/tts/websocket"]
    assert {h["version"] for h in fake.handshakes} == {"2025-04-16"}
    query = fake.stt_queries[0]
    assert query["encoding"] == "pcm_s16le" and query["sample_rate"] == "16000"
    # One context for the turn: each sentence flushed with `continue`, then `continue: false`.
    reqs = fake.tts_requests
    assert len({r["context_id"] for r in reqs}) == 1
    assert [(r["transcript"], r["continue"], r.get("flush")) for r in reqs] == [
        ("You said: hello world. ", True, True),
        ("Anything else? ", True, True),
        ("", False, None),
    ]
    fmt = reqs[0]["output_format"]
    assert fmt == {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000}
    assert fake.finished_contexts == [reqs[0]["context_id"]] and not fake.cancels


async def test_barge_in_cancels_the_cartesia_context(fake: FakeCartesia, hello_16k: bytes) -> None:
    rt = await session(fake, lambda t: LONG_REPLY)
    ear = Listener(rt)
    rt.push_audio(frames(hello_16k))
    await ear.until(lambda e: e["type"] == "state" and e["state"] == "speaking", timeout_s=WAIT_S)
    await asyncio.sleep(0.8)
    rt.push_audio(frames(await speak("stop please")))  # the user talks over the agent
    interrupted = await ear.until(lambda e: e["type"] == "interrupted", timeout_s=WAIT_S)
    await ear.until(lambda e: e["type"] == "transcript" and e["turn_id"] == 2, timeout_s=WAIT_S)
    await close(rt, ear)
    requested = {r["context_id"] for r in fake.tts_requests}
    assert fake.cancels and set(fake.cancels) <= requested, "cancel sent for a live context"
    assert interrupted["heard_text"] and len(interrupted["heard_text"]) < len(LONG_REPLY)


@pytest.mark.parametrize("stage", ["tts", "stt"])
async def test_a_cartesia_error_message_becomes_a_session_error_event(
    fake: FakeCartesia, hello_16k: bytes, stage: str
) -> None:
    error_message = {"status_code": 400, "title": "Bad input", "message": f"{stage} said no"}
    setattr(fake, f"fail_{stage}", error_message)
    rt = await session(fake, lambda t: "You said: " + t)
    ear = Listener(rt)
    rt.push_audio(frames(hello_16k))
    error = await ear.until(lambda e: e["type"] == "error", timeout_s=WAIT_S)
    await close(rt, ear)
    assert error["code"] == "pipeline_error"
    assert error["message"] == f"cartesia Bad input: {stage} said no"


@pytest.mark.parametrize("endpoint", ["tts", "stt"])
async def test_a_dropped_connection_is_retried_then_fails_cleanly(
    fake: FakeCartesia, hello_16k: bytes, endpoint: str
) -> None:
    rt = await session(fake, lambda t: "You said: " + t, max_retries=2)
    fake.drop.add(endpoint)  # after both stages connected
    ear = Listener(rt)
    rt.push_audio(frames(hello_16k))
    error = await ear.until(lambda e: e["type"] == "error", timeout_s=WAIT_S)
    await close(rt, ear)
    assert error["code"] == "connection_failed" and "cartesia" in error["message"]
    if endpoint == "tts":  # the first attempt plus max_retries, each on a fresh connection
        assert fake.dropped["tts"] == 3
        assert rt.pipeline.tts.connections_opened == 3
    else:
        assert fake.dropped["stt"] >= 3 and not fake.transcripts


async def test_timestamps_when_asked(fake: FakeCartesia) -> None:
    tts = CartesiaTTS(api_key=VALID_KEY, api_url=fake.base_url, add_timestamps=True)
    audio = b"".join([c async for c in tts.synthesize("hello world")])
    await tts.aclose()
    assert len(audio) > 24000 * 2 * 0.3 and fake.tts_requests[0]["add_timestamps"] is True
    assert [w["word"] for w in tts.word_timestamps] == ["hello", "world"]


async def test_a_wrong_key_is_an_authentication_error(fake: FakeCartesia) -> None:
    tts = CartesiaTTS(api_key="sk_car_wrong", api_url=fake.base_url)
    with pytest.raises(BackendError) as err:
        await tts.connect()
    assert err.value.code == "authentication_failed"
    assert "sk_car_wrong" not in str(err.value)


def test_options_are_validated_and_the_key_never_shows() -> None:
    with pytest.raises(BackendError) as err:
        CartesiaTTS(api_key="sk_car_secret", voice="x")
    assert err.value.code == "invalid_config" and "voice" in str(err.value)
    with pytest.raises(BackendError) as err:
        CartesiaSTT(api_key="sk_car_secret", sample_rate="fast")
    assert "sample_rate" in str(err.value) and "sk_car_secret" not in str(err.value)
    with pytest.raises(BackendError) as err:
        CartesiaTTS()
    assert "api_key" in str(err.value)
    assert "sk_car_secret" not in repr(CartesiaTTS(api_key="sk_car_secret").cfg)


def test_the_cartesia_backend_runs_both_stages_on_cartesia() -> None:
    be = CartesiaBackendProvider({"api_key": VALID_KEY, "voice_id": "v-1", "sample_rate": 16000})
    options = be.stage_options()["cartesia"]
    assert options == {"api_key": VALID_KEY, "voice_id": "v-1", "sample_rate": 16000}
    be.check_stage_providers("cartesia", "cartesia")
    with pytest.raises(BackendError) as err:
        be.check_stage_providers("cartesia", "espeak")
    assert err.value.field == "tts_provider"
    with pytest.raises(BackendError) as err:
        CartesiaBackendProvider({"api_key": VALID_KEY, "voice": "v-1"})
    assert err.value.code == "invalid_config" and "provider_config.voice" in str(err.value)
