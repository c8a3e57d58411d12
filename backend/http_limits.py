"""Request body size cap, as a plain ASGI middleware: a body over the limit is refused with 413
and the project's error body before the route reads it, whether the client declared its length
or streams it chunked, so no request can make the ingress hold more than the limit."""

from __future__ import annotations

import json
from typing import Any

DEFAULT_MAX_BODY_BYTES = 1 << 20


class BodySizeLimit:
    max_bytes = DEFAULT_MAX_BODY_BYTES  # set once per process by the ingress from its Config

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = type(self).max_bytes
        for name, value in scope.get("headers") or ():
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await _refuse(send, limit)
                    return
        # Read the body first (the routes take JSON, read whole anyway), then replay it.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunk = message.get("body") or b""
            seen += len(chunk)
            if seen > limit:
                await _refuse(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(send: Any, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "code": "invalid_format",
                "message": f"request body too large: the limit is {limit} bytes",
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
