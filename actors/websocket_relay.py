"""The websocket transport: client frames ⇄ a session actor, through the ingress.

Two loops per connection. Inbound, frames are coalesced: while one `push_audio` call is in
flight, the next frames queue and go together in the following call, so a session costs one
actor call per frame when idle and fewer under load. Outbound, one long-poll at a time takes
everything queued (audio as binary frames, events as JSON text). No loop ever spins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from actors.errors import as_backend_error
from providers.wire import Outgoing, WireCodec

log = logging.getLogger(__name__)

POLL_TIMEOUT_S = 10.0
MAX_FRAMES_PER_CALL = 64
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_SESSION_ERROR = 1011


async def relay(ws: WebSocket, actor: Any, codec: WireCodec | None = None) -> None:
    """Run until the client leaves or the session closes; the session itself stays alive when
    the client disconnects (it may reconnect) — closing it is `DELETE /v1/sessions/{id}`.

    `codec`: another ecosystem's wire format (the session's provider picks it); None is the
    native protocol."""
    await actor.start_media.remote()
    inbound: asyncio.Queue[bytes | None] = asyncio.Queue()
    if codec is not None:
        await _send_all(ws, codec.on_connect())
    tasks = [
        asyncio.create_task(_receive(ws, inbound, codec)),
        asyncio.create_task(_push(actor, inbound)),
        asyncio.create_task(_send(ws, actor, codec)),
    ]
    reason = ""  # the session's close reason, also given as the websocket's
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t.cancelled():
                continue
            if (exc := t.exception()) is not None:
                raise exc
            reason = t.result() or reason
    except WebSocketDisconnect:
        pass
    except Exception as exc:  # tell the client, never a stack trace
        err = as_backend_error("websocket", exc)
        log.warning("websocket relay ended: %s", err)
        event = {"type": "error", **err.to_body()["error"]}
        await _close(ws, CLOSE_SESSION_ERROR, event, err.message)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        await _close(ws, CLOSE_NORMAL, reason=reason)


async def _receive(
    ws: WebSocket, inbound: asyncio.Queue[bytes | None], codec: WireCodec | None
) -> None:
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(msg.get("code", CLOSE_GOING_AWAY))
        if codec is not None:
            data = msg["bytes"] if msg.get("bytes") is not None else msg.get("text") or ""
            decoded = codec.decode(data)
            for pcm in decoded.audio:
                inbound.put_nowait(pcm)
            await _send_all(ws, decoded.replies)
            if decoded.close:  # the client ended the conversation
                return
        elif msg.get("bytes") is not None:
            inbound.put_nowait(msg["bytes"])
        elif msg.get("text") is not None:
            await _control(ws, msg["text"])


async def _control(ws: WebSocket, text: str) -> None:
    """Text frames are control messages; only `{"type": "ping"}` exists so far."""
    try:
        kind = json.loads(text).get("type")
    except (ValueError, AttributeError):
        kind = None
    if kind == "ping":
        await ws.send_text(json.dumps({"type": "pong"}))
        return
    await ws.send_text(
        json.dumps(
            {
                "type": "error",
                "code": "invalid_format",
                "message": 'text frames must be JSON control messages ({"type": "ping"}); '
                "send audio as binary PCM16 frames",
            }
        )
    )


async def _push(actor: Any, inbound: asyncio.Queue[bytes | None]) -> None:
    while True:
        frames = [await inbound.get()]
        while not inbound.empty() and len(frames) < MAX_FRAMES_PER_CALL:
            frames.append(inbound.get_nowait())
        # Errors for bad frames come back as events on the outbound stream as well.
        await actor.push_audio.remote([f for f in frames if f is not None])


async def _send(ws: WebSocket, actor: Any, codec: WireCodec | None) -> str:
    """Returns the session's close reason once it has closed."""
    reason = "closed"
    while True:
        out = await actor.poll.remote(True, True, POLL_TIMEOUT_S)
        for kind, payload in out["items"]:
            if codec is not None:
                wire = (
                    codec.encode_audio(payload) if kind == "audio" else codec.encode_event(payload)
                )
                await _send_all(ws, wire)
            elif kind == "audio":
                await ws.send_bytes(payload)
            else:
                await ws.send_text(json.dumps(payload))
                if payload.get("type") == "closed":
                    reason = str(payload.get("reason") or reason)
        if out["closed"]:
            return reason


async def _send_all(ws: WebSocket, messages: list[Outgoing]) -> None:
    for m in messages:
        if isinstance(m, bytes):
            await ws.send_bytes(m)
        else:
            await ws.send_text(m)


async def _close(
    ws: WebSocket, code: int, event: dict[str, Any] | None = None, reason: str = ""
) -> None:
    if ws.application_state is WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(Exception):
        if event is not None:
            await ws.send_text(json.dumps(event))
        await ws.close(code, reason[:120])  # a close reason is at most 123 bytes
