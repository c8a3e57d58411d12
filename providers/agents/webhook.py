"""An agent behind an HTTP endpoint: POST {"transcript", "session_id", "user_id", "history"},
answer {"reply": "..."}. Lets HTTP users plug their own logic in without Python."""

from __future__ import annotations

from urllib.parse import urlparse

import httpx

from backend.errors import BackendError, ErrorCode
from providers.base import Agent, AgentContext


class WebhookAgent(Agent):
    name = "webhook"

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise BackendError(
                "agent.webhook",
                ErrorCode.INVALID_CONFIG,
                "agent.url: must be an http(s) URL",
                field="agent.url",
            )
        self.url = url
        self._client = httpx.AsyncClient(headers=headers or {})

    async def reply(self, transcript: str, ctx: AgentContext) -> str:
        payload = {
            "transcript": transcript,
            "session_id": ctx.session_id,
            "user_id": ctx.user_id,
            "history": ctx.history,
        }
        try:
            resp = await self._client.post(self.url, json=payload)
        except httpx.HTTPError as exc:
            raise BackendError(
                "agent.webhook", ErrorCode.CONNECTION_FAILED, f"webhook unreachable: {exc}"
            ) from exc
        if resp.status_code >= 400:
            raise BackendError(
                "agent.webhook", ErrorCode.AGENT_ERROR, f"webhook answered HTTP {resp.status_code}"
            )
        try:
            reply = resp.json()["reply"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(
                "agent.webhook", ErrorCode.AGENT_ERROR, 'webhook must answer {"reply": "..."}'
            ) from exc
        return str(reply)

    async def aclose(self) -> None:
        await self._client.aclose()
