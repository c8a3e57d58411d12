"""A call's audio enters the session's own process (`media.url`, on the session's node), and
the same protocol through the Serve port (`media.fallback_url`) serves clients that can reach
only that port; both hear and answer the caller, and the direct path can be turned off."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
import ray

from backend.http_client import HttpClient
from tests.conftest import make_config, speak
from tests.e2e.live_call import Call

pytestmark = pytest.mark.ray


async def turn(session: dict[str, Any], via: str, turn_id: int, pcm: bytes) -> None:
    async with Call.open(session, via) as call:
        await call.say(pcm)
        assert (await call.turn_done(turn_id))["type"] == "metrics"
        assert call.of("transcript", turn_id=turn_id)[0]["text"] == "hello world"
        assert call.of("agent_reply", turn_id=turn_id)[0]["text"] == "You said: hello world"
        assert call.audio_frames > 0


async def test_audio_goes_straight_to_the_session_and_the_serve_port_still_works(
    backend: Any, base_url: str
) -> None:
    hello = await speak("hello world")
    async with HttpClient(base_url) as client:
        session = await client.create_session(user_id="direct-caller")
        media = session["media"]
        direct, fallback = urlsplit(media["url"]), urlsplit(media["fallback_url"])
        assert fallback.netloc == urlsplit(base_url).netloc  # the Serve port
        assert direct.port != fallback.port and direct.path == fallback.path
        node_ip = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
        assert direct.hostname == node_ip[session["node_id"]]  # the session's own node
        await turn(session, "url", 1, hello)
        await turn(session, "fallback_url", 2, hello)
        await client.close_session(session["session_id"])


async def test_the_direct_path_can_be_turned_off(backend: Any, base_url: str) -> None:
    await backend.update_config(make_config(media_direct=False))
    async with HttpClient(base_url) as client:
        session = await client.create_session(user_id="serve-only")
        assert urlsplit(session["media"]["url"]).netloc == urlsplit(base_url).netloc
        assert "fallback_url" not in session["media"]
        await turn(session, "url", 1, await speak("hello world"))
        await client.close_session(session["session_id"])
