"""Daily's REST API, the part a Pipecat session needs (docs.daily.co/reference/rest-api):
`POST /rooms` {name, privacy, properties: {exp, eject_at_room_exp}} → {name, url, ...};
`POST /meeting-tokens` {properties: {room_name, is_owner, user_id, user_name, exp}} → {token};
`DELETE /rooms/:name` → {deleted, name}; `GET /rooms?limit=1` (health). Errors are
{"error", "info"} with HTTP 4xx/5xx. The API key travels only in the Authorization header and
never appears in an error."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from backend.errors import BackendError, ErrorCode
from providers.retry import retry_after_details

TIMEOUT_S = 10.0
ROOM_TTL_S = 3 * 3600  # Daily ejects everyone and expires the room even if we never delete it


@dataclass(frozen=True, slots=True)
class DailyRoom:
    name: str
    url: str
    user_token: str
    bot_token: str


class DailyRest:
    def __init__(self, api_key: str, api_url: str, timeout_s: float = TIMEOUT_S) -> None:
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s

    async def create_room(self, name: str, user_id: str) -> DailyRoom:
        """A private room with an owner token for the bot and a plain one for the user; the room
        is deleted again if a token cannot be made (no half-made rooms left behind)."""
        exp = int(time.time()) + ROOM_TTL_S
        props = {"exp": exp, "eject_at_room_exp": True}
        room = await self._call(
            "POST", "/rooms", {"name": name, "privacy": "private", "properties": props}
        )
        try:
            url, room_name = str(room["url"]), str(room["name"])
            user = await self._token(room_name, user_id, owner=False, exp=exp)
            bot = await self._token(room_name, "pipecat-bot", owner=True, exp=exp)
        except BaseException:
            await self.delete_room(name)
            raise
        return DailyRoom(name=room_name, url=url, user_token=user, bot_token=bot)

    async def delete_room(self, name: str) -> None:
        try:
            await self._call("DELETE", f"/rooms/{name}")
        except BackendError as err:
            if err.details.get("status") != 404:  # already gone is fine
                raise

    async def check(self) -> None:
        await self._call("GET", "/rooms?limit=1")

    async def _token(self, room: str, user_id: str, *, owner: bool, exp: int) -> str:
        props = {
            "room_name": room,
            "is_owner": owner,
            "user_id": user_id,
            "user_name": user_id,
            "exp": exp,
        }
        data = await self._call("POST", "/meeting-tokens", {"properties": props})
        return str(data["token"])

    async def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        op = f"daily.{method.lower()}"
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s, headers=self._headers) as http:
                resp = await http.request(method, self.api_url + path, json=body)
        except httpx.HTTPError as exc:
            raise BackendError(
                op,
                ErrorCode.CONNECTION_FAILED,
                f"Daily's API at {self.api_url} is unreachable ({type(exc).__name__})",
            ) from None
        try:
            data = resp.json()
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}
        if resp.status_code >= 400:
            code = {
                401: ErrorCode.AUTHENTICATION_FAILED,
                403: ErrorCode.AUTHORIZATION_FAILED,
                429: ErrorCode.RATE_LIMIT_EXCEEDED,
            }.get(resp.status_code, ErrorCode.CONNECTION_FAILED)
            raise BackendError(
                op,
                code,
                f"Daily {method} {path.split('?')[0]} failed: HTTP {resp.status_code} "
                f"{data.get('error', '')}: {data.get('info', '')}".rstrip(": "),
                details=retry_after_details(resp, status=resp.status_code),
            )
        return data
