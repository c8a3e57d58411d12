"""Named agents against real HTTP servers on loopback: the OpenAI agent through the official SDK
against a server speaking the Chat Completions wire protocol, and the webhook agent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from backend.errors import BackendError, ErrorCode
from pipelines.session import SessionRuntime
from pipelines.stt_tts import PipelineSettings
from providers.agents import build_agent
from providers.base import AgentContext
from providers.espeak.tts import EspeakTTS
from providers.pocketsphinx.stt import PocketsphinxSTT
from providers.vad.silero import SileroVAD
from tests.fakes.loopback import serving
from tests.fakes.openai_api import VALID_KEY, FakeOpenAI, running_fake_openai
from tests.pipelines.listener import Listener, frames


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as fake:
        yield fake


def ctx(*history: tuple[str, str]) -> AgentContext:
    return AgentContext("s", "u", history=[{"role": r, "content": c} for r, c in history])


async def test_openai_agent_streams_and_sends_the_history(fake_openai: FakeOpenAI) -> None:
    agent = build_agent(
        spec={
            "type": "openai",
            "base_url": fake_openai.base_url,
            "api_key": VALID_KEY,
            "model": "test-model",
            "instructions": "Be brief.",
        }
    )
    history = ctx(("user", "hi"), ("assistant", "hello"), ("user", "what time is it"))
    pieces = [p async for p in agent.stream("what time is it", history)]
    assert len(pieces) > 1, "the reply arrives in pieces"
    assert "".join(pieces) == "You asked: what time is it"
    (sent,) = fake_openai.requests
    assert sent["model"] == "test-model" and sent["stream"] is True
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert [m["content"] for m in sent["messages"][1:]] == ["hi", "hello", "what time is it"]
    await agent.aclose()


@pytest.mark.parametrize(
    ("key", "fail", "code"),
    [
        ("sk-wrong", None, ErrorCode.AUTHENTICATION_FAILED),
        (VALID_KEY, (429, "rate_limit_exceeded"), ErrorCode.RATE_LIMIT_EXCEEDED),
        (VALID_KEY, (500, "server_error"), ErrorCode.AGENT_ERROR),
    ],
)
async def test_openai_agent_errors_have_the_seed_codes(
    fake_openai: FakeOpenAI, key: str, fail: tuple[int, str] | None, code: ErrorCode
) -> None:
    fake_openai.fail_next = fail
    agent = build_agent(spec={"type": "openai", "base_url": fake_openai.base_url, "api_key": key})
    with pytest.raises(BackendError) as info:
        await agent.reply("hello", ctx())
    assert info.value.code is code and key not in str(info.value)
    await agent.aclose()


async def test_a_voice_turn_answered_by_the_openai_agent(
    fake_openai: FakeOpenAI, hello_16k: bytes
) -> None:
    rt = SessionRuntime(
        session_id="s-llm",
        user_id="u-llm",
        input_sample_rate_hz=16000,
        settings=PipelineSettings(),
        vad=SileroVAD(),
        stt=PocketsphinxSTT(),
        tts=EspeakTTS(),
        agent=build_agent(
            spec={"type": "openai", "base_url": fake_openai.base_url, "api_key": VALID_KEY}
        ),
    )
    ear = Listener(rt)
    rt.push_audio(frames(hello_16k))
    await ear.until(lambda e: e["type"] == "metrics")
    replies = [e["text"] for e in ear.events if e["type"] == "agent_reply"]
    assert replies == ["You asked: hello world"]
    assert ear.audio_between(0, len(ear.events)) > 16000 * 2 * 0.3
    ear.stop()
    await rt.aclose()


@pytest.fixture
async def webhook() -> AsyncIterator[str]:
    async def plain(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"reply": f"{body['user_id']} said {body['transcript']}"})

    async def streamed(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await resp.prepare(request)
        for piece in ("First sentence here. ", "And ", "the second one."):
            await resp.write(piece.encode())
            await asyncio.sleep(0.05)
        await resp.write_eof()
        return resp

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    app = web.Application()
    app.router.add_post("/plain", plain)
    app.router.add_post("/stream", streamed)
    app.router.add_post("/broken", broken)
    async with serving(app) as url:
        yield url


async def test_webhook_agent_plain_and_streamed(webhook: str) -> None:
    plain = build_agent(spec={"type": "webhook", "url": f"{webhook}/plain"})
    assert await plain.reply("hello", ctx()) == "u said hello"
    streamed = build_agent(spec={"type": "webhook", "url": f"{webhook}/stream"})
    pieces = [p async for p in streamed.stream("hello", ctx())]
    assert "".join(pieces) == "First sentence here. And the second one."
    broken = build_agent(spec={"type": "webhook", "url": f"{webhook}/broken"})
    with pytest.raises(BackendError) as info:
        await broken.reply("hello", ctx())
    assert info.value.code is ErrorCode.AGENT_ERROR and "500" in info.value.message
    gone = build_agent(spec={"type": "webhook", "url": "http://127.0.0.1:9/nothing"})
    with pytest.raises(BackendError) as info:
        await gone.reply("hello", ctx())
    assert info.value.code is ErrorCode.CONNECTION_FAILED
    for agent in (plain, streamed, broken, gone):
        await agent.aclose()
