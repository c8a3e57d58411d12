"""Health, capacity, config and the service's index (`/v1`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from backend.auth import Principal
from backend.errors import BackendError
from ingress.common import AUTH_ERRORS, authenticated, control, errors

router = APIRouter()


@router.get(
    "/v1/health",
    tags=["health"],
    responses={503: {"description": "unhealthy: the same report, status 'unhealthy'"}},
)
async def http_health(request: Request) -> JSONResponse:
    """Public, for load balancers: the status; the details (session ids, nodes) only to a
    service key, or to anyone when no keys are configured."""
    sup = control(request)
    health = await sup.cached_health()
    code = 503 if health["status"] == "unhealthy" else 200
    if sup.may_skip_auth():
        principal = Principal(None, "open")
    else:
        try:
            principal = await authenticated(request)
        except BackendError:
            principal = Principal("", "anonymous")
    if principal.user_id is not None:
        health = {k: health[k] for k in ("status", "last_check") if k in health}
    return JSONResponse(health, status_code=code)


@router.get("/v1/capacity", tags=["health"], responses=errors(*AUTH_ERRORS))
async def http_capacity(request: Request) -> dict[str, Any]:
    """Sessions, free `voice_session` slots and the warm pool, per node: what an autoscaler
    (or a load balancer in front of several clusters) scales on."""
    await authenticated(request)
    return await control(request).capacity()


@router.get("/v1/config", tags=["config"], responses=errors(*AUTH_ERRORS))
async def http_config(request: Request) -> dict[str, Any]:
    await authenticated(request)
    return (await control(request).config()).public_dict()


@router.get("/v1", tags=["config"])
async def http_service_info() -> dict[str, Any]:
    return {"service": "voice backend", "docs": "/docs", "health": "/v1/health", "page": "/"}
