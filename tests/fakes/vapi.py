"""A loopback Vapi API for tests: `POST /call`, call control, and Vapi's side of a conversation.

Written from Vapi's API reference. `POST /call` (Bearer key) takes `assistant` or `assistantId` +
`assistantOverrides`, `transport`, `phoneNumberId` + `customer`, and answers 201 with a Call
(`id`, `orgId`, `createdAt`, `updatedAt`, `status: "queued"`, `monitor: {listenUrl,
controlUrl}`, and `transport.websocketCallUrl` for `vapi.websocket`). `POST {controlUrl}` with
`{"type": "end-call"}` ends it. A `vapi.websocket` call's socket takes the caller's audio as
binary PCM16 frames and JSON control messages (`{"type": "hangup"}` ends the call), and carries
the assistant's audio back as binary frames.

Speech is Vapi's, so the fake plays Vapi's part of the call as Vapi does: server messages are
POSTed to the assistant's `server.url` with its `server.headers` as `{"message": {"type",
"call", ...}}`, and each user turn calls the assistant's custom LLM at
`{model.url}/chat/completions` (OpenAI Chat Completions, `"stream": true`, with the model's
headers), reading the SSE reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from aiohttp import web

from tests.fakes.loopback import serving

VALID_KEY = "vapi-test-key"


class FakeVapi:
    def __init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_post("/call", self._create_call)
        self.app.router.add_post("/call/{id}/control", self._control)
        self.app.router.add_get("/call/{id}/transport", self._transport)
        self.base_url = ""
        self.calls: dict[str, dict[str, Any]] = {}  # id → the call, with the request body
        self.requests: list[dict[str, Any]] = []
        self.webhook_answers: list[tuple[int, Any]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.heard: dict[str, bytearray] = {}  # call id → caller audio its socket received
        self.sockets: dict[str, web.WebSocketResponse] = {}  # call id → its open media socket

    async def _create_call(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {VALID_KEY}":
            return web.json_response(
                {
                    "message": "Invalid Key. Hot tip, you may be using the private key instead of "
                    "the public key, or vice versa.",
                    "error": "Unauthorized",
                    "statusCode": 401,
                },
                status=401,
            )
        body = await request.json()
        self.requests.append(body)
        if not (body.get("assistant") or body.get("assistantId")):
            return web.json_response(
                {
                    "message": ["assistant or assistantId is required"],
                    "error": "Bad Request",
                    "statusCode": 400,
                },
                status=400,
            )
        call_id = str(uuid.uuid4())
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        base = self.base_url
        call: dict[str, Any] = {
            "id": call_id,
            "orgId": "org-test",
            "createdAt": now,
            "updatedAt": now,
            "status": "queued",
            "type": "outboundPhoneCall" if body.get("phoneNumberId") else "webCall",
            "monitor": {
                "listenUrl": f"{base.replace('http', 'ws')}/call/{call_id}/listen",
                "controlUrl": f"{base}/call/{call_id}/control",
            },
        }
        for key in ("assistant", "assistantId", "assistantOverrides", "phoneNumberId", "customer"):
            if key in body:
                call[key] = body[key]
        if (body.get("transport") or {}).get("provider") == "vapi.websocket":
            call["transport"] = {
                **body["transport"],
                "websocketCallUrl": f"{base.replace('http', 'ws')}/call/{call_id}/transport",
            }
        self.calls[call_id] = call
        return web.json_response(call, status=201)

    async def _control(self, request: web.Request) -> web.Response:
        call = self.calls.get(request.match_info["id"])
        if call is None:
            return web.json_response({"message": "call not found"}, status=404)
        body = await request.json()
        if body.get("type") == "end-call":
            call["status"] = "ended"  # reports go out in the background, as Vapi's do
            self._in_background(self._report_ended(call["id"]))
            if (ws := self.sockets.get(call["id"])) is not None:
                await ws.close()
        return web.json_response({"ok": True})

    async def _transport(self, request: web.Request) -> web.StreamResponse:
        call_id = request.match_info["id"]
        call = self.calls.get(call_id)
        if call is None or "transport" not in call or call["status"] == "ended":
            return web.json_response({"message": "call not found"}, status=404)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets[call_id] = ws
        heard = self.heard.setdefault(call_id, bytearray())
        call["status"] = "in-progress"
        try:
            async for msg in ws:
                if msg.type == web.WSMsgType.BINARY:
                    heard += msg.data
                elif (
                    msg.type == web.WSMsgType.TEXT and json.loads(msg.data).get("type") == "hangup"
                ):
                    call["status"] = "ended"
                    self._in_background(self._report(call_id, "customer-ended-call"))
                    break
        finally:
            self.sockets.pop(call_id, None)
            await ws.close()
        return ws

    async def speak(self, call_id: str, pcm16: bytes, frame_bytes: int = 640) -> None:
        """The assistant's audio to the caller, as the call's socket carries it (20 ms frames)."""
        ws = self.sockets[call_id]
        for i in range(0, len(pcm16), frame_bytes):
            await ws.send_bytes(pcm16[i : i + frame_bytes])

    def _in_background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- Vapi's side of the call -----------------------------------------------------------
    def _assistant(self, call: dict[str, Any]) -> dict[str, Any]:
        return {**(call.get("assistant") or {}), **(call.get("assistantOverrides") or {})}

    async def post_message(
        self, call_id: str, message: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """POST a server message to the assistant's server URL, as Vapi does."""
        call = self.calls[call_id]
        server = self._assistant(call)["server"]
        sent_headers = headers if headers is not None else server.get("headers") or {}
        body = {"message": {**message, "call": call, "timestamp": 0}}
        async with httpx.AsyncClient(timeout=30) as http:
            resp = await http.post(server["url"], json=body, headers=sent_headers)
        try:
            answer = resp.json()
        except ValueError:
            answer = resp.text
        self.webhook_answers.append((resp.status_code, answer))
        return resp.status_code, answer

    async def status(self, call_id: str, status: str) -> tuple[int, Any]:
        self.calls[call_id]["status"] = status
        return await self.post_message(call_id, {"type": "status-update", "status": status})

    async def user_says(self, call_id: str, text: str) -> str:
        """A user turn: Vapi's transcript message, then its custom-LLM request; the reply."""
        call = self.calls[call_id]
        await self.post_message(
            call_id,
            {"type": "transcript", "role": "user", "transcriptType": "final", "transcript": text},
        )
        model = self._assistant(call)["model"]
        body = {
            "model": model["model"],
            "messages": [
                {"role": "system", "content": "This is a blank template."},
                {"role": "user", "content": text},
            ],
            "stream": True,
            "temperature": 0.7,
            "call": call,
            "metadata": {},
        }
        pieces: list[str] = []
        async with (
            httpx.AsyncClient(timeout=60) as http,
            http.stream(
                "POST", f"{model['url']}/chat/completions", json=body, headers=model.get("headers")
            ) as resp,
        ):
            resp.raise_for_status()
            async for line in resp.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line.removeprefix("data: "))
                assert chunk["object"] == "chat.completion.chunk"
                pieces.append(chunk["choices"][0]["delta"].get("content") or "")
        reply = "".join(pieces)
        await self.post_message(
            call_id,
            {
                "type": "transcript",
                "role": "assistant",
                "transcriptType": "final",
                "transcript": reply,
            },
        )
        return reply

    async def tool_call(self, call_id: str, name: str, arguments: dict[str, Any]) -> Any:
        tool_call = {
            "id": f"call_{uuid.uuid4().hex[:8]}",
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        _, answer = await self.post_message(
            call_id, {"type": "tool-calls", "toolCallList": [tool_call]}
        )
        return tool_call["id"], answer

    async def _report_ended(self, call_id: str) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await self.post_message(call_id, {"type": "status-update", "status": "ended"})
            await self._report(call_id, "assistant-ended-call")

    async def end_call(self, call_id: str, reason: str = "customer-ended-call") -> tuple[int, Any]:
        call = self.calls[call_id]
        if call["status"] == "ended":
            return 200, None
        await self.status(call_id, "ended")
        return await self._report(call_id, reason)

    async def _report(self, call_id: str, reason: str) -> tuple[int, Any]:
        return await self.post_message(
            call_id,
            {
                "type": "end-of-call-report",
                "endedReason": reason,
                "summary": "The user greeted the assistant.",
                "artifact": {
                    "transcript": "User: hello\nAI: You said: hello",
                    "recordingUrl": "https://example.invalid/recording.wav",
                },
            },
        )


@asynccontextmanager
async def running_fake_vapi() -> AsyncIterator[FakeVapi]:
    fake = FakeVapi()
    async with serving(fake.app) as url:
        fake.base_url = url
        yield fake
