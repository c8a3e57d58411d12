"""Pipecat clients talk to a `pipecat` session unchanged: the real `pipecat-ai` package's
`WebsocketClientTransport` + `ProtobufFrameSerializer` (tests/peers/pipecat_client.py) speaks,
and gets back the reply as its own frame types and RTVI messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.errors import BackendError, ErrorCode
from backend.http_client import HttpClient
from tests.conftest import BackendHolder, free_port, make_config
from tests.e2e.providers_fixture import pipecat_bot_server, run_peer, serve_provider
from tests.e2e.test_barge_in import LONG_PREFIX

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
async def pipecat_base_url(backend_holder: BackendHolder) -> AsyncIterator[str]:
    async for url in serve_provider(backend_holder, "pipecat"):
        yield url


async def _call(base_url: str, speech: Path, *flags: str, **fields: object) -> dict:
    async with HttpClient(base_url) as client:
        session = await client.create_session(
            user_id="pipecat-user", output_sample_rate_hz=16000, **fields
        )
        assert session["provider"] == "pipecat"
        url = f"{session['media']['url']}?token={session['media']['token']}"
        try:
            return await run_peer("pipecat", "pipecat_client.py", url, str(speech), *flags)
        finally:
            await client.close_session(session["session_id"])


@pytest.fixture
def speech_file(tmp_path: Path, hello_16k: bytes) -> Path:
    path = tmp_path / "hello.pcm"
    path.write_bytes(hello_16k)
    return path


async def test_pipecat_client_hears_the_reply_as_pipecat_frames(
    pipecat_base_url: str, speech_file: Path
) -> None:
    got = await _call(pipecat_base_url, speech_file)
    assert got["bot_ready"], got["rtvi_types"]
    assert got["transcriptions"] == ["hello world"], got  # TranscriptionFrame
    assert got["texts"] == ["You said: hello world"]  # TextFrame of the spoken sentence
    assert got["bot_audio_s"] >= 0.5 and got["bot_audio_rms"] > 300  # InputAudioRawFrame
    assert got["bot_audio_rates"] == [16000]
    types = got["rtvi_types"]
    for wanted in (
        "user-started-speaking",
        "user-stopped-speaking",
        "user-transcription",
        "bot-started-speaking",
        "bot-output",
        "bot-stopped-speaking",
        "metrics",
    ):
        assert wanted in types, types
    assert types.index("user-transcription") < types.index("bot-started-speaking")
    ready = next(m for m in got["rtvi"] if m["type"] == "bot-ready")
    assert ready["id"] == "ready-1" and ready["data"]["version"] == "2.2.0"
    user = next(m for m in got["rtvi"] if m["type"] == "user-transcription")
    assert user["data"]["text"] == "hello world" and user["data"]["user_id"] == "pipecat-user"
    metrics = next(m for m in got["rtvi"] if m["type"] == "metrics")["data"]
    assert {p["processor"] for p in metrics["processing"]} >= {"stt", "turn"}


async def test_malformed_frame_gets_an_rtvi_error_and_the_call_goes_on(
    pipecat_base_url: str, speech_file: Path
) -> None:
    got = await _call(pipecat_base_url, speech_file, "--malformed")
    errors = [m["data"] for m in got["rtvi"] if m["type"] == "error"]
    assert errors and "not a protobuf pipecat.Frame" in errors[0]["error"]
    assert errors[0]["fatal"] is False
    assert got["transcriptions"] == ["hello world"]
    assert got["bot_audio_s"] >= 0.5


async def test_barge_in_sends_pipecat_interruption(
    pipecat_base_url: str, speech_file: Path
) -> None:
    # A reply several seconds long, so that talking over it lands while it plays even when
    # the machine is slow (a short reply may finish before the barge-in speech is heard).
    agent = {"type": "echo", "prefix": LONG_PREFIX}
    got = await _call(pipecat_base_url, speech_file, "--barge-in", agent=agent)
    assert got["interruptions"] >= 1, got["rtvi_types"]  # InterruptionFrame: client drops audio
    assert "bot-interrupted" in got["rtvi_types"]


@pytest.fixture
async def echo_bot_server() -> AsyncIterator[str]:
    async with pipecat_bot_server("websocket") as url:
        yield url


async def _configure(provider_config: dict) -> None:
    import serve_app

    cfg = make_config(provider="pipecat", provider_config=provider_config)
    out = await serve_app.app_handle().api_update_config.remote(cfg.model_dump(mode="json"))
    assert "ok" in out, out


async def test_sessions_relay_to_a_pipecat_bot_started_through_its_runner(
    pipecat_base_url: str, speech_file: Path, echo_bot_server: str
) -> None:
    await _configure({"pipecat_server_url": echo_bot_server})
    try:
        got = await _call(pipecat_base_url, speech_file, "--echo")
        async with HttpClient(pipecat_base_url) as client:
            health = await client.health()
    finally:
        await _configure({})
    ready = next(m for m in got["rtvi"] if m["type"] == "bot-ready")
    assert ready["data"]["about"]["library"] == "pipecat-ai"  # the real bot answered
    assert got["bot_audio_s"] >= 1.0 and got["bot_audio_rms"] > 300  # it echoed our speech
    assert got["transcriptions"] == []  # no pipeline of ours in between
    assert health["details"]["providers"]["pipecat"]["reachable"] is True


async def test_an_unreachable_bot_server_refuses_the_session(pipecat_base_url: str) -> None:
    await _configure({"pipecat_server_url": f"http://127.0.0.1:{free_port()}"})
    try:
        async with HttpClient(pipecat_base_url) as client:
            with pytest.raises(BackendError) as refused:
                await client.create_session(user_id="pipecat-user")
            assert await client.list_sessions() == []
    finally:
        await _configure({})
    assert refused.value.code is ErrorCode.CONNECTION_FAILED
    assert "unreachable" in refused.value.message
