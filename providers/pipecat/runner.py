"""Client of a Pipecat development runner (`pipecat.runner.run`, or any server with its shape):
`GET /status` → {"status", "transports"}; `POST /start` {"transport": "websocket", "body"} →
{"wsUrl", "sessionId", "token"} — the bot starts when a client connects to `wsUrl` with that
one-time token, so a fresh start is asked for each client connection; `POST /start`
{"transport": "daily", "createDailyRoom": false, "body": {"room_url", "token", ...}} starts a
bot at once, handing it `body` (the room we made and its owner token); `POST /start`
{"transport": "webrtc"} → {"sessionId"}: the bot starts when a SmallWebRTC offer reaches
`/sessions/{sessionId}/api/offer`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode, urlparse

import httpx

from backend.errors import BackendError, ErrorCode

TIMEOUT_S = 10.0


class PipecatRunner:
    def __init__(self, server_url: str, timeout_s: float = TIMEOUT_S) -> None:
        self.server_url = server_url.rstrip("/")
        self.timeout_s = timeout_s

    async def status(self, *transports: str) -> dict[str, Any]:
        """The runner's status; raises unless it offers one of `transports` (default
        websocket)."""
        wanted = transports or ("websocket",)
        data = await self._call("GET", "/status")
        if not set(wanted) & set(data.get("transports") or []):
            raise BackendError(
                "pipecat.status",
                ErrorCode.CONNECTION_FAILED,
                f"the Pipecat bot server at {self.server_url} does not offer the "
                f"{' or '.join(wanted)} transport (it offers {data.get('transports')}); run it "
                f"with -t {wanted[0]}",
            )
        return data

    async def start_daily_bot(self, body: dict[str, Any]) -> None:
        request = {"transport": "daily", "createDailyRoom": False, "body": body}
        await self._call("POST", "/start", json=request, want_object=False)

    async def start_websocket_bot(self, session_id: str, user_id: str) -> str:
        body = {"transport": "websocket", "body": {"session_id": session_id, "user_id": user_id}}
        data = await self._call("POST", "/start", json=body)
        ws_url = data.get("wsUrl")
        if not isinstance(ws_url, str) or urlparse(ws_url).scheme not in ("ws", "wss"):
            raise BackendError(
                "pipecat.start",
                ErrorCode.CONNECTION_FAILED,
                f"the Pipecat bot server at {self.server_url} answered /start without a wsUrl",
            )
        if data.get("token"):
            ws_url += ("&" if "?" in ws_url else "?") + urlencode({"token": data["token"]})
        return ws_url

    async def start_webrtc_bot(self, session_id: str, user_id: str) -> str:
        """Registers a bot session (`POST /start`, transport webrtc); the bot starts when an
        offer reaches the returned URL (the runner's `/sessions/{sessionId}/api/offer`)."""
        body = {"transport": "webrtc", "body": {"session_id": session_id, "user_id": user_id}}
        data = await self._call("POST", "/start", json=body)
        bot_session = data.get("sessionId")
        if not isinstance(bot_session, str) or not bot_session:
            raise BackendError(
                "pipecat.start",
                ErrorCode.CONNECTION_FAILED,
                f"the Pipecat bot server at {self.server_url} answered /start without a sessionId",
            )
        return f"{self.server_url}/sessions/{quote(bot_session, safe='')}/api/offer"

    async def _call(
        self, method: str, path: str, *, want_object: bool = True, **kwargs: Any
    ) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as http:
                resp = await http.request(method, self.server_url + path, **kwargs)
        except httpx.HTTPError as exc:
            raise BackendError(
                f"pipecat{path.replace('/', '.')}",
                ErrorCode.CONNECTION_FAILED,
                f"the Pipecat bot server at {self.server_url} is unreachable "
                f"({type(exc).__name__})",
            ) from None
        if resp.status_code >= 400:
            raise BackendError(
                f"pipecat{path.replace('/', '.')}",
                ErrorCode.CONNECTION_FAILED,
                f"the Pipecat bot server at {self.server_url} answered {path} with HTTP "
                f"{resp.status_code}",
            )
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not want_object:
            return {}
        if not isinstance(data, dict):
            raise BackendError(
                f"pipecat{path.replace('/', '.')}",
                ErrorCode.CONNECTION_FAILED,
                f"the Pipecat bot server at {self.server_url} answered {path} with no JSON object",
            )
        return data
