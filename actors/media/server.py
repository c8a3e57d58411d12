"""`MediaServer`: a session worker's own websocket server, so a call's audio enters the process
that runs its pipeline. One per worker process, started when the worker warms; the session it
hosts is attached while it runs and detached when it ends. Same path, token and wire protocol
as the ingress route (`/v1/sessions/{id}/audio?token=…`): a client only swaps host:port, and
the Serve-port route stays as the fallback for clients that can reach nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from actors.errors import as_backend_error
from actors.media.ports import SessionPort
from actors.media.relay import CLOSE_POLICY, CLOSE_SESSION_ERROR, RelayLimits, relay
from actors.media.sockets import WebsocketsSocket
from backend.errors import BackendError, ErrorCode
from providers.wire import WireCodec

log = logging.getLogger(__name__)

AUDIO_PATH = re.compile(r"^/v1/sessions/([^/]+)/audio$")
# Same cap as uvicorn's on the ingress: larger frames are refused by the relay with an error
# event (max_frame_bytes) and the call goes on; only past this does the library drop the socket.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
DRAIN_TIMEOUT_S = 10.0  # aclose waits this long for connections to say goodbye


def parse_port_range(spec: str | int | None) -> tuple[int, int] | None:
    """`"20000-20999"` → (20000, 20999); `"20000"` → one port; `0`, `""` or None → None (an
    ephemeral port, for tests and single-process runs)."""
    text = str(spec or "").strip()
    if text in ("", "0"):
        return None
    low, _, high = text.partition("-")
    first, last = int(low), int(high or low)
    if not 0 < first <= last <= 65535:
        raise ValueError(f"media port range {text!r}: want 'first-last' within 1-65535")
    return first, last


@dataclass
class _Attached:
    port: SessionPort
    check_token: Callable[[str], None]
    codec: WireCodec | None
    limits: RelayLimits
    on_stall: Callable[[str], Awaitable[Any]] | None
    connections: set[asyncio.Future[str]] = field(default_factory=set)  # detach sets these
    refusing: bool = False  # the session ended: no new connections, the open ones finish


class MediaServer:
    """Serves the websockets of the sessions attached to it. Several connections to one session
    may be open at once, as on the ingress route (a client reconnecting before its old socket
    is found dead must not be refused)."""

    def __init__(
        self,
        host: str = "0.0.0.0",
        ports: tuple[int, int] | None = None,
        advertise_host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.ports = ports
        self.advertise_host = advertise_host
        self.port = 0  # bound by start()
        self._server: Server | None = None
        self._sessions: dict[str, _Attached] = {}
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        """ws://<advertised host>:<port>, once started."""
        host = self.advertise_host
        return f"ws://[{host}]:{self.port}" if ":" in host else f"ws://{host}:{self.port}"

    async def start(self) -> None:
        """Listen on the first free port of the range, tried from a random point so the workers
        of one node starting together seldom collide; any other bind error is raised."""
        if self._server is not None:
            return
        if self.ports is None:
            candidates = [0]
        else:
            first, last = self.ports
            span = list(range(first, last + 1))
            offset = random.randrange(len(span))
            candidates = span[offset:] + span[:offset]
        for candidate in candidates:
            try:
                self._server = await serve(
                    self._handle,
                    self.host,
                    candidate,
                    process_request=self._route,
                    max_size=MAX_MESSAGE_BYTES,
                    compression=None,  # PCM does not compress; deflate would only cost CPU
                )
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            self.port = self._server.sockets[0].getsockname()[1]
            log.info("media server listening on %s:%d (%s)", self.host, self.port, self.url)
            return
        raise OSError(errno.EADDRINUSE, f"no free media port in {self.ports[0]}-{self.ports[1]}")

    def attach(
        self,
        session_id: str,
        port: SessionPort,
        *,
        check_token: Callable[[str], None],
        codec: WireCodec | None,
        limits: RelayLimits,
        on_stall: Callable[[str], Awaitable[Any]] | None,
    ) -> str:
        """Take `session_id`'s connections from now on; returns its direct URL (without the
        token: the client appends `?token=…`). `check_token(token)` raises a BackendError
        (authentication_failed) for a token that must not open this session's audio."""
        if self._server is None:
            raise RuntimeError("MediaServer.attach before start")
        if session_id in self._sessions:
            self.detach(session_id, "session re-attached")
        self._sessions[session_id] = _Attached(port, check_token, codec, limits, on_stall)
        return f"{self.url}/v1/sessions/{session_id}/audio"

    def detach(self, session_id: str, reason: str = "session ended") -> None:
        """New connections are refused at once; open ones get the session's last events and a
        `closed` event, then close (in the background)."""
        entry = self._sessions.pop(session_id, None)
        for conn in entry.connections if entry is not None else ():
            if not conn.done():
                conn.set_result(reason)

    def forget(self, session_id: str) -> None:
        """Refuse new connections of `session_id`, and let the open ones end on their own
        (a stalled client gets its `closed` event whenever it reads again)."""
        entry = self._sessions.get(session_id)
        if entry is not None:
            entry.refusing = True

    async def drained(self, session_id: str, timeout_s: float) -> bool:
        """Wait until a forgotten session's connections have ended (True), or `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        entry = self._sessions.get(session_id)
        while entry is not None and entry.connections and loop.time() < deadline:
            await asyncio.sleep(0.1)
        if entry is not None and self._sessions.get(session_id) is entry and entry.refusing:
            del self._sessions[session_id]
        return entry is None or not entry.connections

    async def aclose(self) -> None:
        for session_id in list(self._sessions):
            self.detach(session_id, "media server stopped")
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=DRAIN_TIMEOUT_S)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _route(self, conn: ServerConnection, request: Request) -> Response | None:
        if AUDIO_PATH.match(urlsplit(request.path).path) is None:
            return conn.respond(HTTPStatus.NOT_FOUND, "not found\n")
        return None

    async def _handle(self, conn: ServerConnection) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(WebsocketsSocket(conn), conn.request.path if conn.request else "")
        finally:
            self._handlers.discard(task)

    async def _serve(self, ws: WebsocketsSocket, target: str) -> None:
        parts = urlsplit(target)
        match = AUDIO_PATH.match(parts.path)
        session_id = unquote(match.group(1)) if match else ""
        token = (parse_qs(parts.query).get("token") or [""])[0]
        entry = self._sessions.get(session_id)
        try:
            if entry is None or entry.refusing:
                raise BackendError(
                    "session", ErrorCode.SESSION_NOT_FOUND, f"no session {session_id!r}"
                )
            entry.check_token(token)
        except Exception as exc:  # the same refusal as the ingress route's
            err = as_backend_error("websocket", exc)
            with contextlib.suppress(Exception):
                await ws.send_text(json.dumps({"type": "error", **err.to_body()["error"]}))
                await ws.close(
                    CLOSE_POLICY
                    if err.code is ErrorCode.AUTHENTICATION_FAILED
                    else CLOSE_SESSION_ERROR
                )
            return
        detached: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        entry.connections.add(detached)
        try:
            await relay(ws, entry.port, entry.codec, entry.limits, entry.on_stall, detached)
        finally:
            entry.connections.discard(detached)
