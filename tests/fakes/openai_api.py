"""A loopback OpenAI API server for tests: `POST /v1/chat/completions`, plain and streamed; the
Realtime websocket (`tests/fakes/openai_realtime.py`) and the audio endpoints
(`tests/fakes/openai_audio.py`) on the same server.

Written from OpenAI's API reference (Chat Completions): a JSON `chat.completion` object, or with
`"stream": true` server-sent events of `chat.completion.chunk` objects (`choices[0].delta`
carries `role` first, then `content` pieces, then `finish_reason`), ended by `data: [DONE]`.
Errors are `{"error": {"message", "type", "param", "code"}}` with the documented status codes.
Its "model" answers "You asked: <last user message>", word by word.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from tests.fakes.loopback import serving
from tests.fakes.openai_audio import AudioFake
from tests.fakes.openai_realtime import RealtimeFake

VALID_KEY = "sk-test-key"


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []  # bodies received, for assertions
        self.fail_next: tuple[int, str] | None = None  # (status, error type) for the next call
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._chat)
        self.realtime = RealtimeFake(VALID_KEY)
        self.app.router.add_get("/v1/realtime", self.realtime.handle)
        self.audio = AudioFake(VALID_KEY)
        self.app.router.add_post("/v1/audio/transcriptions", self.audio.transcriptions_create)
        self.app.router.add_post("/v1/audio/speech", self.audio.speech_create)
        self.base_url = ""

    def _error(self, status: int, kind: str, message: str, code: str | None = None) -> web.Response:
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return web.json_response(body, status=status)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {VALID_KEY}":
            return self._error(
                401, "invalid_request_error", "Incorrect API key provided.", "invalid_api_key"
            )
        if self.fail_next is not None:
            (status, kind), self.fail_next = self.fail_next, None
            return self._error(status, kind, f"simulated {kind}")
        try:
            body = await request.json()
            messages = body["messages"]
            model = body["model"]
        except (ValueError, KeyError, TypeError):
            return self._error(400, "invalid_request_error", "'messages' and 'model' are required")
        self.requests.append(body)
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        words = f"You asked: {last_user}".split(" ")
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": " ".join(words)},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": 1,
                        "completion_tokens": len(words),
                        "total_tokens": 1 + len(words),
                    },
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def chunk(delta: dict[str, Any], finish: str | None = None) -> None:
            obj = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            await resp.write(f"data: {json.dumps(obj)}\n\n".encode())

        await chunk({"role": "assistant", "content": ""})
        for i, word in enumerate(words):
            await chunk({"content": word if i == 0 else " " + word})
        await chunk({}, "stop")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


@asynccontextmanager
async def running_fake_openai() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    async with serving(fake.app) as url:
        fake.base_url = f"{url}/v1"
        try:
            yield fake
        finally:
            await fake.realtime.drop()  # open websockets would hold the cleanup
