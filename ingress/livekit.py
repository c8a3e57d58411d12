"""LiveKit's webhooks (provider livekit): room and participant events onto session state. The
provider checks the signature with the API secret; `actors.webhooks` applies the event."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from actors.webhooks import apply_webhook
from ingress.common import AUTH_ERRORS, control, errors

router = APIRouter(tags=["livekit"])


@router.post("/v1/livekit/webhook", responses=errors(400, *AUTH_ERRORS, 404, 413, 422, 502))
async def http_livekit_webhook(request: Request) -> dict[str, Any]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return await apply_webhook(control(request), body, request.headers.get("authorization", ""))
