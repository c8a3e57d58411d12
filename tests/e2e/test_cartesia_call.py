"""A voice call whose STT and TTS stages are Cartesia (official SDK, in the session's stage
actors) against the loopback Cartesia server, through Serve, the session actor and the websocket."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from backend.http_client import HttpClient
from pipelines.audio import rms
from tests.conftest import make_config, speak
from tests.e2e.test_barge_in import LONG_PREFIX, talk_over_the_reply
from tests.fakes.cartesia import VALID_KEY, running_fake_cartesia

pytestmark = pytest.mark.ray


async def test_call_with_cartesia_stages(backend: Any, base_url: str, hello_16k: bytes) -> None:
    async with running_fake_cartesia() as fake:
        options = {"api_key": VALID_KEY, "api_url": fake.base_url, "sample_rate": 22050}
        await backend.update_config(
            make_config(
                stt_provider="cartesia",
                tts_provider="cartesia",
                stage_provider_config={"cartesia": options},
            )
        )
        async with httpx.AsyncClient() as http:
            shown = (await http.get(f"{base_url}/v1/config")).json()["stage_provider_config"]
        assert shown["cartesia"]["api_key"] == "***"
        async with HttpClient(base_url) as client:
            session = await client.create_session(user_id="caller-cartesia")
            assert session["stages"]["tts"]["provider"] == "cartesia"
            # Both stage actors opened their Cartesia socket before the session's first turn
            # (warm workers open theirs when they load, so there may be one pair per worker).
            paths = [h["path"] for h in fake.handshakes]
            assert paths.count("/stt/websocket") >= 1 and paths.count("/tts/websocket") >= 1
            result = await client.talk(session, hello_16k, 16000, realtime=False)
            await client.close_session(session["session_id"])
    assert result.transcripts == ["hello world"], result.events
    assert result.replies == ["You said: hello world"]
    reply = np.frombuffer(bytes(result.audio), dtype="<i2")
    assert reply.size / 16000 >= 0.3 and rms(reply) > 300
    assert fake.tts_requests[0]["output_format"]["sample_rate"] == 22050


async def test_barge_in_cancels_the_cartesia_context_through_the_stage_actor(
    backend: Any, base_url: str, hello_16k: bytes
) -> None:
    stop = await speak("stop please")
    async with running_fake_cartesia() as fake:
        options = {"api_key": VALID_KEY, "api_url": fake.base_url}
        await backend.update_config(
            make_config(
                stt_provider="cartesia",
                tts_provider="cartesia",
                stage_provider_config={"cartesia": options},
            )
        )
        async with HttpClient(base_url) as client:
            session = await client.create_session(
                user_id="barger-cartesia", agent={"type": "echo", "prefix": LONG_PREFIX}
            )
            url = f"{session['media']['url']}?token={session['media']['token']}"
            log = await talk_over_the_reply(url, hello_16k, stop)
            await client.close_session(session["session_id"])
    i_int = next(i for i, e in enumerate(log) if isinstance(e, dict) and e["type"] == "interrupted")
    assert [e for e in log[i_int:] if isinstance(e, tuple)] == [], "no audio after the barge-in"
    turn_contexts = {r["context_id"] for r in fake.tts_requests}
    assert fake.cancels and set(fake.cancels) <= turn_contexts, "cancel sent for the live context"
