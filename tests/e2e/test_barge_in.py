"""Barge-in through the whole system: the user talks over the agent on the audio websocket, and
the reply stops at once — nothing more of it reaches the client — and is cut in the history."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from backend.http_client import HttpClient, send_realtime
from tests.conftest import speak

pytestmark = pytest.mark.ray

LONG_PREFIX = (
    "Here is a long answer that takes several seconds to say out loud. It keeps going for a "
    "while so that you can interrupt it. And it goes on even longer than that. You said: "
)
RATE = 16000


async def stream(ws: Any, pcm: bytes, silence_s: float) -> None:
    await send_realtime(ws.send, pcm + bytes(int(RATE * silence_s) * 2), RATE)


async def talk_over_the_reply(url: str, opener: bytes, interruption: bytes) -> list[Any]:
    """Say `opener`, then `interruption` one second into the agent's reply. Returns every event,
    and ("audio", n) for each binary frame, in arrival order, up to turn 2's transcript."""
    log: list[Any] = []
    async with websockets.connect(url) as ws:

        async def receive() -> None:
            async for msg in ws:
                log.append(("audio", len(msg)) if isinstance(msg, bytes) else json.loads(msg))
                event = log[-1]
                second_turn = isinstance(event, dict) and event.get("turn_id") == 2
                if second_turn and event["type"] == "transcript":
                    return

        receiver = asyncio.create_task(receive())
        await stream(ws, opener, 1.0)
        async with asyncio.timeout(60):
            while not any(isinstance(e, tuple) for e in log):
                await asyncio.sleep(0.05)  # the agent is speaking
        await asyncio.sleep(1.0)
        await stream(ws, interruption, 1.5)
        await asyncio.wait_for(receiver, 60)
    return log


async def test_talking_over_the_agent_stops_its_audio(base_url: str, hello_16k: bytes) -> None:
    stop = await speak("stop please")
    async with HttpClient(base_url) as client:
        session = await client.create_session(
            user_id="barger", agent={"type": "echo", "prefix": LONG_PREFIX}
        )
        url = f"{session['media']['url']}?token={session['media']['token']}"
        log = await talk_over_the_reply(url, hello_16k, stop)
        info = await client.get_session(session["session_id"])
        await client.close_session(session["session_id"])

    i_int = next(i for i, e in enumerate(log) if isinstance(e, dict) and e["type"] == "interrupted")
    before = sum(n for e in log[:i_int] if isinstance(e, tuple) for n in e[1:])
    after = [e for e in log[i_int:] if isinstance(e, tuple)]
    assert before > RATE * 2 * 0.5, "the user heard some of the reply first"
    assert after == [], "no audio of the interrupted reply after the interruption"
    heard = log[i_int]["heard_text"]
    assert heard and LONG_PREFIX.startswith(heard.rstrip(".,:")), heard
    assert info["state"] in ("listening", "processing", "speaking")
