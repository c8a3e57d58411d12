"""Sessions: create, list, read and close (`/v1/sessions`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from backend.auth import Principal, check_acting_user, check_owner
from backend.iface import SessionConfig, SessionRequest
from ingress.common import AUTH_ERRORS, authenticated, control, errors, media_base_url, public

DEFAULT_AGENT = {"type": "echo"}

router = APIRouter(tags=["sessions"])


@router.post(
    "/v1/sessions",
    status_code=201,
    responses=errors(400, *AUTH_ERRORS, 409, 413, 422, 429, 502, 503, 504),
)
async def http_create_session(
    body: SessionRequest,
    request: Request,
    principal: Annotated[Principal, Depends(authenticated)],  # before the body is checked
) -> dict[str, Any]:
    check_acting_user(principal, body.user_id, "create_session")
    sc = SessionConfig(**{**body.model_dump(), "agent": body.agent or DEFAULT_AGENT})
    rec = await control(request).create_session(sc, media_base_url(request))
    return public(rec, with_token=True)


@router.get("/v1/sessions", responses=errors(*AUTH_ERRORS))
async def http_list_sessions(request: Request) -> dict[str, Any]:
    """The caller's sessions (all of them for a service key, or with no keys configured)."""
    principal = await authenticated(request)
    records = await control(request).list_sessions()
    return {"sessions": [public(r) for r in records if principal.may_act_for(r["user_id"])]}


@router.get("/v1/sessions/{session_id}", responses=errors(*AUTH_ERRORS, 404))
async def http_get_session(session_id: str, request: Request) -> dict[str, Any]:
    principal = await authenticated(request)
    rec = await control(request).get_session(session_id)
    check_owner(principal, rec, "get_session")
    return public(rec)


@router.delete("/v1/sessions/{session_id}", status_code=204, responses=errors(*AUTH_ERRORS, 404))
async def http_close_session(session_id: str, request: Request) -> Response:
    principal = await authenticated(request)
    sup = control(request)
    if principal.user_id is not None:  # a user's key: only that user's sessions
        check_owner(principal, await sup.require_session(session_id), "close_session")
    await sup.close_session(session_id)
    return Response(status_code=204)
