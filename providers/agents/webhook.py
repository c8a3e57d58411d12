"""An agent behind an HTTP endpoint, for HTTP users who want their own logic without Python.

POST {"transcript", "session_id", "user_id", "history"}; the endpoint answers either
`{"reply": "..."}` (application/json), or streams plain text (any text/* content type), which is
spoken sentence by sentence as it arrives.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import httpx

from backend.errors import BackendError, ErrorCode
from providers.base import Agent, AgentContext
from providers.resilience import guarded_call
from providers.retry import retry_after_details

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
        self.breaker_name = f"webhook {parsed.netloc}"  # one breaker per endpoint host
        self._client = httpx.AsyncClient(headers=headers or {})

    async def stream(self, transcript: str, ctx: AgentContext) -> AsyncIterator[str]:
        payload = {
            "transcript": transcript,
            "session_id": ctx.session_id,
            "user_id": ctx.user_id,
            "history": ctx.history,
        }
        resp = await guarded_call(_OP, self.breaker_name, lambda: self._open(payload))
        try:
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
        finally:
            await resp.aclose()
        try:
            yield str(json.loads(body)["reply"])
        except (ValueError, KeyError, TypeError):
            raise BackendError(
                _OP, ErrorCode.AGENT_ERROR, 'webhook must answer {"reply": "..."} or stream text'
            ) from None

    async def _open(self, payload: dict[str, Any]) -> httpx.Response:
        """Send the turn and read the answer's status: the part retried and guarded by the
        breaker (once text flows, a retry would say it twice)."""
        request = self._client.build_request("POST", self.url, json=payload)
        try:
            resp = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise BackendError(
                _OP, ErrorCode.CONNECTION_FAILED, f"webhook unreachable: {exc}"
            ) from exc
        if resp.status_code >= 400:
            await resp.aclose()
            raise BackendError(
                _OP,
                ErrorCode.AGENT_ERROR,
                f"webhook answered HTTP {resp.status_code}",
                details=retry_after_details(resp, status=resp.status_code),
            )
        return resp

    async def reply(self, transcript: str, ctx: AgentContext) -> str:
        return "".join([piece async for piece in self.stream(transcript, ctx)])

    async def aclose(self) -> None:
        await self._client.aclose()
