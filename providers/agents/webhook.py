"""An agent behind an HTTP endpoint, for HTTP users who want their own logic without Python.

POST {"transcript", "session_id", "user_id", "history"}; the endpoint answers either
`{"reply": "..."}` (application/json), or streams plain text (any text/* content type), which is
spoken sentence by sentence as it arrives.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import httpx

from backend.errors import BackendError, ErrorCode
from providers.base import Agent, AgentContext

_OP = "agent.webhook"


class WebhookAgent(Agent):
    name = "webhook"

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise BackendError(
                _OP,
                ErrorCode.INVALID_CONFIG,
                "agent.url: must be an http(s) URL",
                field="agent.url",
            )
        self.url = url
        self._client = httpx.AsyncClient(headers=headers or {})

    async def stream(self, transcript: str, ctx: AgentContext) -> AsyncIterator[str]:
        payload = {
            "transcript": transcript,
            "session_id": ctx.session_id,
            "user_id": ctx.user_id,
            "history": ctx.history,
        }
        try:
            async with self._client.stream("POST", self.url, json=payload) as resp:
                if resp.status_code >= 400:
                    raise BackendError(
                        _OP, ErrorCode.AGENT_ERROR, f"webhook answered HTTP {resp.status_code}"
                    )
                if resp.headers.get("content-type", "").startswith("text/"):
                    async for piece in resp.aiter_text():
                        if piece:
                            yield piece
                    return
                body = await resp.aread()
        except httpx.HTTPError as exc:
            raise BackendError(
                _OP, ErrorCode.CONNECTION_FAILED, f"webhook unreachable: {exc}"
            ) from exc
        try:
            yield str(json.loads(body)["reply"])
        except (ValueError, KeyError, TypeError):
            raise BackendError(
                _OP, ErrorCode.AGENT_ERROR, 'webhook must answer {"reply": "..."} or stream text'
            ) from None

    async def reply(self, transcript: str, ctx: AgentContext) -> str:
        return "".join([piece async for piece in self.stream(transcript, ctx)])

    async def aclose(self) -> None:
        await self._client.aclose()
