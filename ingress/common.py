"""What every router shares: the error schema, error answers, the public view of a session
record, the caller's authentication, and the control plane of this replica."""

from __future__ import annotations

from typing import Any

from fastapi import Request, WebSocket
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from actors.control_plane import ControlPlane
from backend.auth import Principal, credentials_from
from backend.errors import BackendError, ErrorCode

OFFER_TIMEOUT_S = 30.0
AUTH_ERRORS = (401, 403)
PUBLIC_KEYS = (
    "session_id",
    "user_id",
    "state",
    "transport",
    "pipeline_type",
    "provider",
    "created_at",
    "node_id",
    "stages",
    "worker",
    "metadata",
    "connection",
)


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """Every error the API answers with (backend/errors.py)."""

    error: ErrorDetail


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the errors it can answer with, so the schema is honest."""
    return {s: {"model": ErrorBody} for s in statuses}


def error_response(err: BackendError) -> JSONResponse:
    headers = None
    if (retry := err.retry_after_s) is not None:
        headers = {"Retry-After": str(retry)}
    return JSONResponse(err.to_body(), status_code=err.http_status, headers=headers)


def control(request: Request | WebSocket) -> ControlPlane:
    """This replica's control plane (set by `serve_app.VoiceIngress`)."""
    return request.app.state.control


def public(rec: dict[str, Any], *, with_token: bool = False) -> dict[str, Any]:
    """A session record as the API shows it (the media token only to its creator)."""
    media = dict(rec.get("media") or {})
    if not with_token:
        media.pop("token", None)
    return {**{k: rec.get(k) for k in PUBLIC_KEYS}, "media": media}


async def authenticated(request: Request) -> Principal:
    """The caller, as a FastAPI dependency: it runs before the body is validated, so a request
    without a key learns nothing about what a valid body would be."""
    client = request.client.host if request.client else None
    creds = credentials_from(request.headers, request.method, request.url.path, client)
    return await control(request).authenticate(creds)


async def read_json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise BackendError(
            "request", ErrorCode.INVALID_FORMAT, "the request body is not valid JSON"
        ) from None


def media_base_url(request: Request | WebSocket) -> str:
    scheme = "wss" if request.url.scheme in ("https", "wss") else "ws"
    return f"{scheme}://{request.url.netloc}"
