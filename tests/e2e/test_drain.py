"""Graceful drain: stopping the backend refuses new sessions at once, lets live calls go on (and
end on their own) up to the drain timeout, then closes the rest with a reason the client sees."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from backend.http_client import HttpClient
from tests.conftest import speak, wait_for
from tests.e2e.live_call import Call

pytestmark = pytest.mark.ray

DRAIN_TIMEOUT_S = 20.0  # room for a turn on a slow machine before the drain ends


async def test_stopping_drains_live_calls_then_closes_them_with_a_reason(
    backend: Any, base_url: str
) -> None:
    hello = await speak("hello world")
    async with HttpClient(base_url) as client:
        leaving = await client.create_session(user_id="leaves-during-drain")
        staying = await client.create_session(user_id="stays-past-drain")
        async with Call.open(leaving) as left, Call.open(staying) as stayed:
            await stayed.wait("state", state="idle")
            stopping = asyncio.create_task(backend.stop(drain_timeout=DRAIN_TIMEOUT_S))
            try:
                await _during_the_drain(base_url, hello, stayed, left, stopping)
                # ...and one that ends on its own during the drain ends as usual.
                await client.close_session(leaving["session_id"])
                assert (await left.wait("closed", 30))["reason"] == "closed by request"
                assert not stopping.done()
                await _at_the_drain_timeout(stayed)
            finally:
                # Even when a check failed, the stop runs to its end (the app removed) before
                # the next test, which then gets a fresh backend instead of a draining one.
                await asyncio.wait_for(stopping, DRAIN_TIMEOUT_S + 90)
    assert backend.get_connection_state().value == "disconnected"


async def _during_the_drain(
    base_url: str, hello: bytes, stayed: Call, left: Call, stopping: asyncio.Task[None]
) -> None:
    # Every live call is told, and admission stops at once, for every client.
    notice = await stayed.wait("draining", 30)
    assert notice["timeout_s"] == DRAIN_TIMEOUT_S
    await left.wait("draining", 30)
    async with httpx.AsyncClient(base_url=base_url) as http:
        refused = await http.post("/v1/sessions", json={"user_id": "too-late"})
        health = (await http.get("/v1/health")).json()
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "session_limit_exceeded"
    assert "draining" in refused.json()["error"]["message"]
    assert health["status"] == "degraded"
    assert any("draining" in r for r in health["details"]["reasons"])

    # A live call goes on talking during the drain...
    await stayed.say(hello)
    assert (await stayed.turn_done(1))["type"] == "metrics"
    assert stayed.of("transcript", turn_id=1)[0]["text"] == "hello world"
    assert stayed.of("agent_reply", turn_id=1)[0]["text"] == "You said: hello world"
    assert not stopping.done()


async def _at_the_drain_timeout(stayed: Call) -> None:
    """What is left is closed, with the reason on the socket too."""
    closed = await stayed.wait("closed", DRAIN_TIMEOUT_S + 30)
    assert closed["reason"] == "drain timeout"

    async def socket_closed() -> Any:
        return stayed.close

    assert await wait_for(socket_closed, 30)
    assert stayed.close == (1000, "drain timeout")
