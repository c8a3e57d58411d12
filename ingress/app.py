"""The FastAPI app: middleware, errors in the API's shape, and the routers, one per concern."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors.control_plane import ControlPlane
from actors.observability import observe_http
from backend.errors import BackendError, ErrorCode
from backend.http_limits import BodySizeLimit
from ingress import health, livekit, media, pipecat, sessions, vapi, web
from ingress.common import error_response

log = logging.getLogger(__name__)

api = FastAPI(
    title="Voice backend",
    version="0.1.0",
    description="Voice-agent sessions on Ray: admission, health, and an audio websocket. "
    "With API keys configured, control routes need `Authorization: Bearer <key>`.",
)
api.add_middleware(BodySizeLimit)
api.middleware("http")(observe_http)  # backend_requests_total & co., and the request's span


@api.exception_handler(BackendError)
async def _backend_error(request: Request, err: BackendError) -> JSONResponse:
    request.state.error_code = err.code.value
    return error_response(err)


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    request.state.error_code = ErrorCode.INVALID_CONFIG.value
    err = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
    field = ".".join(loc) or None
    msg = str(err.get("msg", "invalid request")).removeprefix("Value error, ")
    if err.get("type") == "json_invalid":
        field, msg = None, "the request body is not valid JSON"
    body = BackendError(
        "request", ErrorCode.INVALID_CONFIG, f"{field}: {msg}" if field else msg, field=field
    )
    return error_response(body)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own refusals (unparseable body, unknown route, wrong method) in our shape."""
    err = BackendError("request", ErrorCode.INVALID_FORMAT, str(exc.detail))
    request.state.error_code = err.code.value
    return JSONResponse(err.to_body(), status_code=exc.status_code, headers=exc.headers)


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    request.state.error_code = ErrorCode.PIPELINE_ERROR.value
    log.exception("unexpected error")  # the trace stays in the server log, never in the answer
    err = BackendError("request", ErrorCode.PIPELINE_ERROR, "internal error; see server logs")
    return JSONResponse(err.to_body(), status_code=500)


for _module in (sessions, media, health, web, pipecat, livekit, vapi):
    api.include_router(_module.router)


def bind(control: ControlPlane) -> None:
    """Give the routes this replica's control plane (the deployment's constructor calls it)."""
    api.state.control = control


def served() -> FastAPI:
    """The app Serve runs, as a builder it calls in the replica after the deployment's
    constructor: this module's own `api`, the one `bind` gave the control plane. (Given the
    app itself, `serve.ingress` would serve a pickled copy, whose state nobody sets.)"""
    return api
