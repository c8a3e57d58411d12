"""`MediaSocket`: the few websocket operations the relay uses, so one relay serves both the
ingress (Starlette, behind the Serve proxy) and a session worker's own server (`websockets`).
A client leaving shows up as `ClientLeft`, whichever library noticed it."""

from __future__ import annotations

from typing import Protocol

from starlette.websockets import WebSocket, WebSocketState
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

CLOSE_GOING_AWAY = 1001
CLOSE_ABNORMAL = 1006


class ClientLeft(Exception):
    """The client closed its websocket (or its connection dropped)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"websocket closed by the client (code {code})")
        self.code = code


class MediaSocket(Protocol):
    async def receive(self) -> bytes | str:
        """The next message; raises `ClientLeft` once the client has gone."""
        ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def send_text(self, text: str) -> None: ...

    async def close(self, code: int, reason: str = "") -> None: ...

    @property
    def closed(self) -> bool:
        """True once this side may no longer send."""
        ...


class StarletteSocket:
    """An accepted Starlette (ASGI) websocket: the ingress's Serve-port route."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def receive(self) -> bytes | str:
        msg = await self.ws.receive()
        if msg["type"] == "websocket.disconnect":
            raise ClientLeft(msg.get("code", CLOSE_GOING_AWAY))
        return msg["bytes"] if msg.get("bytes") is not None else msg.get("text") or ""

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def send_text(self, text: str) -> None:
        await self.ws.send_text(text)

    async def close(self, code: int, reason: str = "") -> None:
        await self.ws.close(code, reason)

    @property
    def closed(self) -> bool:
        return self.ws.application_state is WebSocketState.DISCONNECTED


class WebsocketsSocket:
    """A `websockets` server connection (handshake done): a session worker's media server."""

    def __init__(self, conn: ServerConnection) -> None:
        self.conn = conn

    async def receive(self) -> bytes | str:
        try:
            return await self.conn.recv()
        except ConnectionClosed as gone:
            raise ClientLeft(gone.rcvd.code if gone.rcvd is not None else CLOSE_ABNORMAL) from None

    async def send_bytes(self, data: bytes) -> None:
        await self.conn.send(data)

    async def send_text(self, text: str) -> None:
        await self.conn.send(text)

    async def close(self, code: int, reason: str = "") -> None:
        await self.conn.close(code, reason)

    @property
    def closed(self) -> bool:
        return self.conn.state in (State.CLOSING, State.CLOSED)
