"""Calls on OpenAI's providers through the whole system: HTTP session, the session actor and its
stage actors in Ray, the official SDK in those stages, and a loopback server in this process
speaking OpenAI's protocols (Realtime websocket, audio endpoints) with real speech models."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from backend.http_client import HttpClient
from pipelines.audio import rms
from tests.conftest import make_config
from tests.fakes.openai_api import VALID_KEY, running_fake_openai

pytestmark = pytest.mark.ray


def realtime_config(options: dict[str, Any]) -> Any:
    return make_config(
        pipeline_type="s2s",
        s2s_provider="openai_realtime",
        stage_provider_config={"openai_realtime": options},
    )


async def test_s2s_call_on_openai_realtime(backend: Any, base_url: str, hello_16k: bytes) -> None:
    async with running_fake_openai() as fake:
        options = {"api_key": VALID_KEY, "base_url": fake.base_url, "voice": "cedar"}
        await backend.update_config(realtime_config(options))
        async with HttpClient(base_url) as client:
            session = await client.create_session(
                user_id="caller-oai", pipeline_type="s2s", output_sample_rate_hz=24000
            )
            assert session["stages"]["s2s"]["provider"] == "openai_realtime"
            result = await client.talk(session, hello_16k, 16000, realtime=True)
            async with httpx.AsyncClient(base_url=base_url) as http:
                shown = (await http.get("/v1/config")).json()
            await client.close_session(session["session_id"])
        (conn,) = fake.realtime.connections
        assert conn.ws.closed, "closing the session closes its Realtime connection"

    assert result.transcripts == ["hello world"], result.events
    assert result.replies == ["You said: hello world"]
    reply = np.frombuffer(bytes(result.audio), dtype="<i2")
    assert reply.size / 24000 >= 0.5 and rms(reply) > 300
    assert not [e for e in result.events if e["type"] == "error"]
    (update,) = fake.realtime.events("session.update")
    assert update["session"]["audio"]["output"]["voice"] == "cedar"
    assert shown["stage_provider_config"]["openai_realtime"]["api_key"] == "***"


async def test_a_bad_realtime_option_is_refused_by_name(backend: Any, base_url: str) -> None:
    await backend.update_config(realtime_config({"api_key": VALID_KEY, "voise": "cedar"}))
    async with HttpClient(base_url) as client:
        resp = await client._http.post(
            "/v1/sessions", json={"user_id": "caller-bad", "pipeline_type": "s2s"}
        )
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid_config"
    assert "stage_provider_config.openai_realtime.voise" in error["message"]
    assert VALID_KEY not in resp.text


async def test_stt_tts_call_on_openai_audio(backend: Any, base_url: str, hello_16k: bytes) -> None:
    async with running_fake_openai() as fake:
        fake.audio.fail_next = [500]  # the first upload fails; the backend's retry covers it
        options = {"api_key": VALID_KEY, "base_url": fake.base_url, "voice": "coral"}
        await backend.update_config(
            make_config(
                stt_provider="openai",
                tts_provider="openai",
                retry_delay=0.1,
                stage_provider_config={"openai": options},
            )
        )
        async with HttpClient(base_url) as client:
            session = await client.create_session(user_id="caller-oai-audio")
            assert session["stages"]["stt"]["provider"] == "openai"
            result = await client.talk(session, hello_16k, 16000, realtime=True)
            await client.close_session(session["session_id"])
    assert result.transcripts == ["hello world"], result.events
    assert result.replies == ["You said: hello world"]
    reply = np.frombuffer(bytes(result.audio), dtype="<i2")
    assert reply.size / 16000 >= 0.5 and rms(reply) > 300
    assert fake.audio.attempts["transcriptions"] == 2, "retried through the STT stage actor"
    assert fake.audio.speech and fake.audio.speech[0]["voice"] == "coral"
