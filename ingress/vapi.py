"""Vapi (provider vapi): its server-URL webhook, its custom LLM, and the call behind a session.
The work is `actors.vapi_bridge`'s; these routes only carry the requests to it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from actors import vapi_bridge
from backend.errors import BackendError, ErrorCode
from ingress.common import AUTH_ERRORS, authenticated, control, errors, read_json

VAPI_ERRORS = errors(400, *AUTH_ERRORS, 404, 413, 422, 502)

router = APIRouter(tags=["vapi"])


@router.post("/v1/vapi/webhook", responses=VAPI_ERRORS)
async def http_vapi_webhook(request: Request) -> dict[str, Any]:
    body = await read_json(request)
    return await vapi_bridge.handle_webhook(control(request), dict(request.headers), body)


@router.post("/v1/vapi/{session_id}/chat/completions", responses=VAPI_ERRORS)
async def http_vapi_chat(session_id: str, request: Request) -> StreamingResponse:
    body = await read_json(request)
    stream = await vapi_bridge.chat_completion(
        control(request), session_id, dict(request.headers), body
    )
    return StreamingResponse(stream, media_type="text/event-stream")


@router.get("/v1/vapi/calls/{session_id}", responses=VAPI_ERRORS)
async def http_vapi_call(session_id: str, request: Request) -> dict[str, Any]:
    """The call behind a session, and Vapi's end-of-call report once it has come."""
    if (await authenticated(request)).user_id is not None:
        raise BackendError(
            "vapi.call", ErrorCode.AUTHORIZATION_FAILED, "call reports need a service key"
        )
    return vapi_bridge.call_report(control(request), session_id)
