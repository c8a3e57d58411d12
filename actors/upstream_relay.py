"""Relaying a session's websocket to a bot elsewhere (e.g. a Pipecat bot started through its
runner): the client and the bot speak their own protocol to each other, byte for byte; this
backend keeps the session — admission, health pings, and its end: closing the session (DELETE,
reaping) cuts the relay, found through the session actor's outbox like any session event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import websockets
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from actors.media.relay import CLOSE_NORMAL, CLOSE_SESSION_ERROR, cancel_all

log = logging.getLogger(__name__)

POLL_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0


async def proxy(ws: WebSocket, actor: Any, upstream_url: str) -> None:
    try:
        bot = await websockets.connect(upstream_url, open_timeout=CONNECT_TIMEOUT_S, max_size=None)
    except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
        # The URL may carry the bot's one-time token: name the failure, not the URL.
        message = f"the bot's websocket did not accept the relay ({type(exc).__name__})"
        await _close(
            ws,
            CLOSE_SESSION_ERROR,
            {"type": "error", "code": "connection_failed", "message": message},
        )
        return
    tasks = [
        asyncio.create_task(_client_to_bot(ws, bot)),
        asyncio.create_task(_bot_to_client(bot, ws)),
        asyncio.create_task(_until_session_closed(actor)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_all(tasks)
        with contextlib.suppress(Exception):
            await bot.close()
        await _close(ws, CLOSE_NORMAL)


async def _client_to_bot(ws: WebSocket, bot: Any) -> None:
    with contextlib.suppress(WebSocketDisconnect, websockets.ConnectionClosed):
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            data = msg.get("bytes")
            await bot.send(data if data is not None else msg.get("text") or "")


async def _bot_to_client(bot: Any, ws: WebSocket) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        async for data in bot:
            if isinstance(data, bytes):
                await ws.send_bytes(data)
            else:
                await ws.send_text(data)


async def _until_session_closed(actor: Any) -> None:
    while True:
        out = await actor.poll.remote(False, True, POLL_TIMEOUT_S)
        if out["closed"]:
            return


async def _close(ws: WebSocket, code: int, event: dict[str, Any] | None = None) -> None:
    if ws.application_state is WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(Exception):
        if event is not None:
            await ws.send_text(json.dumps(event))
        await ws.close(code)
