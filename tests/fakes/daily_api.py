"""A loopback Daily REST API for tests, written from Daily's API reference (rooms, meeting
tokens): `POST /rooms` {name?, privacy?, properties?} → the room object {id, name, api_created,
privacy, url, created_at, config}; `DELETE /rooms/:name` → {deleted, name} (404 when absent);
`GET /rooms` → {total_count, data}; `POST /meeting-tokens` {properties: {room_name, ...}} →
{token}. Bearer-key auth; errors are {"error", "info"} with 400/401/404."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from tests.fakes.loopback import serving

VALID_KEY = "daily-test-key"
DOMAIN = "voice-tests.daily.co"


class FakeDaily:
    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, Any]] = {}
        self.tokens: list[dict[str, Any]] = []  # the properties of every token made
        self.deleted: list[str] = []
        self.fail_tokens = False  # answer meeting-token requests with HTTP 500
        self.base_url = ""
        self.app = web.Application(middlewares=[self._auth])
        self.app.router.add_post("/v1/rooms", self._create_room)
        self.app.router.add_get("/v1/rooms", self._list_rooms)
        self.app.router.add_delete("/v1/rooms/{name}", self._delete_room)
        self.app.router.add_post("/v1/meeting-tokens", self._create_token)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {VALID_KEY}":
            return _error(401, "authentication-error", "Unauthorized")
        return await handler(request)

    async def _create_room(self, request: web.Request) -> web.Response:
        body = await _body(request)
        name = body.get("name") or uuid.uuid4().hex[:12]
        if name in self.rooms:
            return _error(400, "invalid-request-error", f"a room named {name} already exists")
        room = {
            "id": str(uuid.uuid4()),
            "name": name,
            "api_created": True,
            "privacy": body.get("privacy", "public"),
            "url": f"https://{DOMAIN}/{name}",
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "config": body.get("properties") or {},
        }
        self.rooms[name] = room
        return web.json_response(room)

    async def _list_rooms(self, request: web.Request) -> web.Response:
        rooms = list(self.rooms.values())
        limit = int(request.query.get("limit", "100"))
        return web.json_response({"total_count": len(rooms), "data": rooms[:limit]})

    async def _delete_room(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if self.rooms.pop(name, None) is None:
            return _error(404, "not-found", f"room {name} was not found")
        self.deleted.append(name)
        return web.json_response({"deleted": True, "name": name})

    async def _create_token(self, request: web.Request) -> web.Response:
        if self.fail_tokens:
            return _error(500, "server-error", "simulated failure")
        props = (await _body(request)).get("properties") or {}
        if props.get("room_name") not in self.rooms:
            return _error(400, "invalid-request-error", "room_name: no such room")
        self.tokens.append(props)
        token = base64.urlsafe_b64encode(json.dumps(props).encode()).decode()
        return web.json_response({"token": token})


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(status: int, kind: str, info: str) -> web.Response:
    return web.json_response({"error": kind, "info": info}, status=status)


@asynccontextmanager
async def running_fake_daily() -> AsyncIterator[FakeDaily]:
    fake = FakeDaily()
    async with serving(fake.app) as url:
        fake.base_url = f"{url}/v1"
        yield fake
