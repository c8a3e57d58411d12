"""The Ray Serve ingress: the supervisor of all voice sessions, over HTTP and Python handles.

    serve run serve_app:app                                   # defaults (provider local)
    serve run serve_app:build_app provider=local max_sessions=5
    serve run serve_app:build_app warm_pool_size=4 replicas=2 on_head=1   # ingress on the head

Routes follow DESIGN.md's HTTP API; the `api_*` methods are what `backend.new_backend()` calls
through a DeploymentHandle. Both go through `actors.control_plane.ControlPlane`.
"""

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Annotated, Any

import ray
from fastapi import Depends, FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors import vapi_bridge
from actors.control_plane import ControlPlane
from actors.errors import as_backend_error
from actors.media import CLOSE_SESSION_ERROR, ActorPort, RelayLimits, StarletteSocket, relay
from actors.names import HEAD_RESOURCE, REGISTRY_NAME, SESSION_RESOURCE
from actors.observability import observe_handle, observe_http
from actors.upstream_relay import proxy
from actors.webhooks import apply_webhook
from backend.auth import (
    Principal,
    check_acting_user,
    check_media_token,
    check_owner,
    credentials_from,
)
from backend.config_file import load_config
from backend.errors import BackendError, ErrorCode
from backend.http_limits import BodySizeLimit
from backend.iface import Config, SessionConfig, SessionRequest, unmask_secrets
from providers.pipecat.backend import PipecatBackendProvider
from providers.pipecat.smallwebrtc import SmallWebRtcCodec, SmallWebRtcOffer, SmallWebRtcPatch

log = logging.getLogger(__name__)

NAMESPACE = "voice_backend"
APP_NAME = "voice_backend"
DEFAULT_AGENT = {"type": "echo"}
SESSION_SLOTS_PER_NODE = 100  # `voice_session` units a locally started Ray node offers
RETRY_AFTER_S = 1
WEB_DIR = Path(__file__).resolve().parent / "backend" / "web"  # the page at `/`, no build step
WEB_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
OFFER_TIMEOUT_S = 30.0


class WebRtcOffer(BaseModel):
    """Body of `POST /v1/sessions/{id}/webrtc/offer`: the client's SDP offer, with its ICE
    candidates (gather them all before sending), and the session's media token."""

    model_config = ConfigDict(extra="forbid")
    sdp: str = Field(min_length=1, max_length=100_000)
    type: str = "offer"
    token: str = ""


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """Every error the API answers with (backend/errors.py)."""

    error: ErrorDetail


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the errors it can answer with, so the schema is honest."""
    return {s: {"model": ErrorBody} for s in statuses}


AUTH_ERRORS = (401, 403)
api = FastAPI(
    title="Voice backend",
    version="0.1.0",
    description="Voice-agent sessions on Ray: admission, health, and an audio websocket. "
    "With API keys configured, control routes need `Authorization: Bearer <key>`.",
)
api.add_middleware(BodySizeLimit)


def _error_response(err: BackendError) -> JSONResponse:
    headers = None
    if err.http_status in (429, 503):
        retry = err.details.get("retry_after_s", RETRY_AFTER_S)
        headers = {"Retry-After": str(retry)}
    return JSONResponse(err.to_body(), status_code=err.http_status, headers=headers)


api.middleware("http")(observe_http)  # backend_requests_total & co., and the request's span


@api.exception_handler(BackendError)
async def _backend_error(request: Request, err: BackendError) -> JSONResponse:
    request.state.error_code = err.code.value
    return _error_response(err)


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
    return _error_response(body)


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


def _public(rec: dict[str, Any], *, with_token: bool = False) -> dict[str, Any]:
    media = dict(rec.get("media") or {})
    if not with_token:
        media.pop("token", None)
    keys = (
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
    return {**{k: rec.get(k) for k in keys}, "media": media}


async def _authenticated(request: Request) -> Principal:
    """The caller, as a FastAPI dependency: it runs before the body is validated, so a request
    without a key learns nothing about what a valid body would be."""
    client = request.client.host if request.client else None
    creds = credentials_from(request.headers, request.method, request.url.path, client)
    return await request.app.state.supervisor.authenticate(creds)


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise BackendError(
            "request", ErrorCode.INVALID_FORMAT, "the request body is not valid JSON"
        ) from None


def _media_base_url(request: Request | WebSocket) -> str:
    scheme = "wss" if request.url.scheme in ("https", "wss") else "ws"
    return f"{scheme}://{request.url.netloc}"


async def _envelope(coro: Any) -> dict[str, Any]:
    """Handle calls return {"ok": value} or {"error": body}: no exception pickling across Serve."""
    try:
        return {"ok": await observe_handle(coro)}
    except BackendError as err:
        return {"error": err.to_body()["error"]}


@serve.deployment(
    name="VoiceIngress",
    # Each open audio websocket is an ongoing request for its whole life.
    max_ongoing_requests=2000,
    graceful_shutdown_timeout_s=60,
    ray_actor_options={"num_cpus": 0},
)
@serve.ingress(api)
class VoiceIngress:
    def __init__(self, provider: str = "local", config: dict[str, Any] | None = None) -> None:
        cfg = Config(**{**(config or {}), "provider": provider})
        self.sup = ControlPlane(provider, cfg, NAMESPACE)
        version = hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode())
        applied = self.sup.registry.configure.remote(
            cfg.model_dump(mode="json"), version.hexdigest()
        )
        self.sup.cache_config(ray.get(applied))
        BodySizeLimit.max_bytes = cfg.max_request_body_bytes
        api.state.supervisor = self.sup  # for `_authenticated` (one ingress per replica process)

    async def _auth(self, request: Request) -> Principal:
        return await _authenticated(request)

    async def check_health(self) -> None:
        """Serve's periodic probe of this replica (it is healthy if this returns). It also
        starts the cleanup of reaped sessions' provider resources, which must not wait for a
        client to ask for /v1/health."""
        self.sup.release_reaped_soon()

    # -- HTTP ------------------------------------------------------------------------------
    @api.post(
        "/v1/sessions",
        status_code=201,
        tags=["sessions"],
        responses=_errors(400, *AUTH_ERRORS, 409, 413, 422, 429, 502, 503, 504),
    )
    async def http_create_session(
        self,
        body: SessionRequest,
        request: Request,
        principal: Annotated[Principal, Depends(_authenticated)],  # before the body is checked
    ) -> dict[str, Any]:
        check_acting_user(principal, body.user_id, "create_session")
        sc = SessionConfig(**{**body.model_dump(), "agent": body.agent or DEFAULT_AGENT})
        rec = await self.sup.create_session(sc, _media_base_url(request))
        return _public(rec, with_token=True)

    @api.get("/v1/sessions", tags=["sessions"], responses=_errors(*AUTH_ERRORS))
    async def http_list_sessions(self, request: Request) -> dict[str, Any]:
        """The caller's sessions (all of them for a service key, or with no keys configured)."""
        principal = await self._auth(request)
        records = await self.sup.list_sessions()
        return {"sessions": [_public(r) for r in records if principal.may_act_for(r["user_id"])]}

    @api.get("/v1/sessions/{session_id}", tags=["sessions"], responses=_errors(*AUTH_ERRORS, 404))
    async def http_get_session(self, session_id: str, request: Request) -> dict[str, Any]:
        principal = await self._auth(request)
        rec = await self.sup.get_session(session_id)
        check_owner(principal, rec, "get_session")
        return _public(rec)

    @api.delete(
        "/v1/sessions/{session_id}",
        status_code=204,
        tags=["sessions"],
        responses=_errors(*AUTH_ERRORS, 404),
    )
    async def http_close_session(self, session_id: str, request: Request) -> Response:
        principal = await self._auth(request)
        if principal.user_id is not None:  # a user's key: only that user's sessions
            check_owner(principal, await self.sup.require_session(session_id), "close_session")
        await self.sup.close_session(session_id)
        return Response(status_code=204)

    @api.post(
        "/v1/sessions/{session_id}/media_token",
        tags=["media"],
        responses=_errors(*AUTH_ERRORS, 404, 409),
    )
    async def http_media_token(self, session_id: str, request: Request) -> dict[str, Any]:
        """A fresh media token for the session's owner (e.g. to reconnect after the first one
        expired); the old token stops working. Only for media this backend serves itself."""
        principal = await self._auth(request)
        rec = await self.sup.require_session(session_id)
        check_owner(principal, rec, "media_token")
        media = dict(rec.get("media") or {})
        if f"/v1/sessions/{session_id}/" not in str(media.get("url", "")):  # e.g. a LiveKit room
            raise BackendError(
                "media_token",
                ErrorCode.SESSION_ALREADY_ACTIVE,
                "this session's media token comes from its provider; it cannot be renewed here",
            )
        ttl = (await self.sup.config()).media_token_ttl
        media.update(token=secrets.token_urlsafe(24), token_expires_at=time.time() + ttl)
        if not await self.sup.registry.annotate.remote(session_id, {"media": media}):
            raise BackendError(
                "media_token", ErrorCode.SESSION_NOT_FOUND, f"no session {session_id!r}"
            )
        if media.get("fallback_url"):  # the session serves its websocket itself: tell it too
            ref = await self.sup.session_ref(rec)
            await ref.set_media_token.remote(media["token"], media["token_expires_at"])
        return {"token": media["token"], "token_expires_at": media["token_expires_at"]}

    @api.get(
        "/v1/health",
        tags=["health"],
        responses={503: {"description": "unhealthy: the same report, status 'unhealthy'"}},
    )
    async def http_health(self, request: Request) -> JSONResponse:
        """Public, for load balancers: the status; the details (session ids, nodes) only to a
        service key, or to anyone when no keys are configured."""
        health = await self.sup.cached_health()
        code = 503 if health["status"] == "unhealthy" else 200
        if self.sup.may_skip_auth():
            principal = Principal(None, "open")
        else:
            try:
                principal = await self._auth(request)
            except BackendError:
                principal = Principal("", "anonymous")
        if principal.user_id is not None:
            health = {k: health[k] for k in ("status", "last_check") if k in health}
        return JSONResponse(health, status_code=code)

    @api.get("/v1/capacity", tags=["health"], responses=_errors(*AUTH_ERRORS))
    async def http_capacity(self, request: Request) -> dict[str, Any]:
        """Sessions, free `voice_session` slots and the warm pool, per node: what an autoscaler
        (or a load balancer in front of several clusters) scales on."""
        await self._auth(request)
        return await self.sup.capacity()

    @api.get("/v1/config", tags=["config"], responses=_errors(*AUTH_ERRORS))
    async def http_config(self, request: Request) -> dict[str, Any]:
        await self._auth(request)
        return (await self.sup.config()).public_dict()

    @api.get("/v1", tags=["config"])
    async def http_service_info(self) -> dict[str, Any]:
        return {"service": "voice backend", "docs": "/docs", "health": "/v1/health", "page": "/"}

    @api.get("/", include_in_schema=False)
    async def http_page(self) -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    @api.get("/web/{name}", include_in_schema=False)
    async def http_web_file(self, name: str) -> Response:
        if name not in WEB_FILES:  # a fixed list: no path from the request reaches the disk
            body = {"error": {"code": "not_found", "message": f"no file {name!r}"}}
            return JSONResponse(body, status_code=404)
        return FileResponse(WEB_DIR / name, media_type=WEB_FILES[name])

    @api.post(
        "/v1/sessions/{session_id}/webrtc/offer",
        tags=["media"],
        responses=_errors(400, 401, 404, 409, 413, 422, 502, 504),
    )
    async def http_webrtc_offer(self, session_id: str, body: WebRtcOffer) -> dict[str, Any]:
        """SDP offer in, SDP answer out: the session terminates the peer connection itself.
        Authorised by the session's media token (short-lived, this session only)."""
        rec = await self.sup.require_session(session_id)
        try:
            check_media_token(rec, body.token, "webrtc.offer")
        except BackendError as err:
            raise BackendError(err.op, err.code, err.message, field="token") from None
        if rec.get("transport") != "webrtc":
            raise BackendError(
                "webrtc.offer",
                ErrorCode.INVALID_CONFIG,
                f"transport: session {session_id} uses {rec.get('transport')}; create it with "
                'transport "webrtc" to connect over WebRTC',
                field="transport",
            )
        actor = await self.sup.session_ref(rec)
        try:
            async with asyncio.timeout(OFFER_TIMEOUT_S):
                return await actor.webrtc_offer.remote(body.sdp, body.type)
        except Exception as exc:
            raise as_backend_error("webrtc.offer", exc) from None

    # -- Pipecat SmallWebRTC signalling (provider pipecat, transport webrtc) ----------------
    @api.post(
        "/v1/sessions/{session_id}/pipecat/offer",
        tags=["pipecat"],
        responses=_errors(400, 401, 404, 409, 413, 422, 502, 504),
    )
    async def http_pipecat_offer(
        self, session_id: str, body: SmallWebRtcOffer, token: str = Query("")
    ) -> dict[str, Any]:
        """A Pipecat client's SmallWebRTC offer (`webrtcUrl`); the same `pc_id` renegotiates."""
        rec, actor = await self._smallwebrtc_session(session_id, token or body.token())
        codec = self.sup.wire_codec(rec)
        if codec is None:  # `_smallwebrtc_session` admits pipecat sessions only, which have one
            raise BackendError("webrtc.offer", ErrorCode.PIPELINE_ERROR, "no pipecat codec")
        channel = SmallWebRtcCodec(codec.media)
        try:
            async with asyncio.timeout(OFFER_TIMEOUT_S):
                relay_to = None  # a new call to a session with a Pipecat bot: start one for it
                if not body.pc_id and isinstance(self.sup.provider, PipecatBackendProvider):
                    relay_to = await self.sup.provider.smallwebrtc_upstream(
                        session_id, rec.get("user_id", "")
                    )
                return await actor.webrtc_offer.remote(
                    body.sdp, body.type, channel, body.pc_id, bool(body.restart_pc), relay_to
                )
        except Exception as exc:
            raise as_backend_error("webrtc.offer", exc) from None

    @api.patch(
        "/v1/sessions/{session_id}/pipecat/offer",
        tags=["pipecat"],
        responses=_errors(400, 401, 404, 409, 413, 422, 502),
    )
    async def http_pipecat_candidates(
        self, session_id: str, body: SmallWebRtcPatch, token: str = Query("")
    ) -> dict[str, str]:
        """Trickled ICE candidates of a SmallWebRTC call."""
        _, actor = await self._smallwebrtc_session(session_id, token)
        candidates = [c.model_dump() for c in body.candidates]
        try:
            await actor.webrtc_candidates.remote(body.pc_id, candidates)
        except Exception as exc:
            raise as_backend_error("webrtc.candidate", exc) from None
        return {"status": "success"}

    async def _smallwebrtc_session(self, session_id: str, token: str) -> tuple[Any, Any]:
        rec = await self.sup.require_session(session_id)
        try:
            check_media_token(rec, token, "webrtc.offer")
        except BackendError as err:
            message = f"{err.message} (the session's media token, as ?token= or in request_data)"
            raise BackendError(err.op, err.code, message, field="token") from None
        if rec.get("provider") != "pipecat" or rec.get("transport") != "webrtc":
            raise BackendError(
                "webrtc.offer",
                ErrorCode.INVALID_CONFIG,
                f"transport: session {session_id} is not a pipecat session with transport "
                f'"webrtc" (provider {rec.get("provider")}, transport {rec.get("transport")})',
                field="transport",
            )
        return rec, await self.sup.session_ref(rec)

    @api.websocket("/v1/sessions/{session_id}/audio")
    async def ws_audio(self, ws: WebSocket, session_id: str, token: str = Query("")) -> None:
        await ws.accept()
        try:
            rec = await self.sup.require_session(session_id)
            check_media_token(rec, token, "websocket")
            actor = await self.sup.session_ref(rec)
            codec = self.sup.wire_codec(rec)
            upstream = await self.sup.media_upstream(rec)
        except BackendError as err:
            await ws.send_text(json.dumps({"type": "error", **err.to_body()["error"]}))
            await ws.close(
                1008 if err.code is ErrorCode.AUTHENTICATION_FAILED else CLOSE_SESSION_ERROR
            )
            return
        if upstream is not None:  # the provider's bot answers; the session keeps the call
            await proxy(ws, actor, upstream)
        else:
            limits = RelayLimits(
                max_frame_bytes=self.sup._config.max_frame_bytes,
                output_bytes_per_s=2 * int(rec.get("output_sample_rate_hz") or 16000),
                stall_timeout_s=self.sup._config.client_stall_timeout,
            )

            async def on_stall(reason: str) -> None:
                with contextlib.suppress(BackendError):
                    await self.sup.close_session(session_id, reason)

            await relay(StarletteSocket(ws), ActorPort(actor), codec, limits, on_stall)

    # -- LiveKit webhooks (provider livekit; signature checked with the API secret) ---------
    @api.post(
        "/v1/livekit/webhook",
        tags=["livekit"],
        responses=_errors(400, *AUTH_ERRORS, 404, 413, 422, 502),
    )
    async def http_livekit_webhook(self, request: Request) -> dict[str, Any]:
        body = (await request.body()).decode("utf-8", errors="replace")
        return await apply_webhook(self.sup, body, request.headers.get("authorization", ""))

    # -- Vapi (provider "vapi"): its server-URL webhook and its custom LLM -----------------
    @api.post(
        "/v1/vapi/webhook", tags=["vapi"], responses=_errors(400, *AUTH_ERRORS, 404, 413, 422, 502)
    )
    async def http_vapi_webhook(self, request: Request) -> dict[str, Any]:
        return await vapi_bridge.handle_webhook(
            self.sup, dict(request.headers), await _json(request)
        )

    @api.post(
        "/v1/vapi/{session_id}/chat/completions",
        tags=["vapi"],
        responses=_errors(400, *AUTH_ERRORS, 404, 413, 422, 502),
    )
    async def http_vapi_chat(self, session_id: str, request: Request) -> StreamingResponse:
        body = await _json(request)
        stream = await vapi_bridge.chat_completion(
            self.sup, session_id, dict(request.headers), body
        )
        return StreamingResponse(stream, media_type="text/event-stream")

    @api.get(
        "/v1/vapi/calls/{session_id}",
        tags=["vapi"],
        responses=_errors(400, *AUTH_ERRORS, 404, 413, 422, 502),
    )
    async def http_vapi_call(self, session_id: str, request: Request) -> dict[str, Any]:
        """The call behind a session, and Vapi's end-of-call report once it has come."""
        if (await self._auth(request)).user_id is not None:
            raise BackendError(
                "vapi.call", ErrorCode.AUTHORIZATION_FAILED, "call reports need a service key"
            )
        provider = vapi_bridge._provider(self.sup)
        call = provider.calls.get(session_id)
        report = provider.reports.get(session_id)
        if call is None and report is None:
            raise BackendError(
                "vapi.call", ErrorCode.SESSION_NOT_FOUND, f"no call for {session_id!r}"
            )
        return {"session_id": session_id, "call": call, "end_of_call_report": report}

    # -- Python handle API (backend.new_backend) -------------------------------------------
    async def api_create_session(
        self, session: dict[str, Any], callback: Any, instance: Any, media_base_url: str
    ) -> dict[str, Any]:
        async def run() -> dict[str, Any]:
            sc = SessionConfig(**session, agent_callback=callback, agent_instance=instance)
            return await self.sup.create_session(sc, media_base_url)

        return await _envelope(run())

    async def api_close_session(self, session_id: str) -> dict[str, Any]:
        return await _envelope(self.sup.close_session(session_id))

    async def api_set_hooks(self, hooks: dict[str, bytes]) -> dict[str, Any]:
        """Packed `auth_hook`/`rate_limiter`/`data_retention_hook` (backend/auth.py), kept by
        the registry so every replica, and every replica started later, applies them."""
        return await _envelope(self.sup.set_hooks(hooks))

    async def api_close_all(self, reason: str) -> dict[str, Any]:
        return await _envelope(self.sup.close_all(reason))

    async def api_drain(self, timeout_s: float | None = None) -> dict[str, Any]:
        async def run() -> dict[str, Any]:
            config = await self.sup.config()
            return await self.sup.drain(config.drain_timeout if timeout_s is None else timeout_s)

        return await _envelope(run())

    async def api_get_session(self, session_id: str) -> dict[str, Any]:
        return await _envelope(self.sup.get_session(session_id))

    async def api_list_sessions(self) -> dict[str, Any]:
        return await _envelope(self.sup.list_sessions())

    async def api_health(self) -> dict[str, Any]:
        return await _envelope(self.sup.health())

    async def api_capacity(self) -> dict[str, Any]:
        return await _envelope(self.sup.capacity())

    async def api_get_config(self) -> dict[str, Any]:
        async def run() -> dict[str, Any]:
            return (await self.sup.config()).public_dict()  # secrets never leave masked

        return await _envelope(run())

    async def api_update_config(self, config: dict[str, Any]) -> dict[str, Any]:
        async def run() -> dict[str, Any]:
            current = (await self.sup.config()).model_dump(mode="json")
            new = Config(**unmask_secrets(config, current))  # a read-back config keeps secrets
            return (await self.sup.apply_config(new)).public_dict()

        return await _envelope(run())


# -- deployment ------------------------------------------------------------------------------
def build_app(args: dict[str, str]) -> Any:
    """Serve application builder: `serve run serve_app:build_app provider=local max_sessions=5`
    (also `stt_placement=`, `tts_placement=`, `s2s_placement=`, `media_port_range=`, or
    `config=backend.yaml`). Values not given come from `VOICE_BACKEND_*` variables, then the
    defaults (`backend.config_file`)."""
    if not ray.is_initialized():
        # `serve run` calls this builder before it starts Ray itself; a node it starts then
        # offers session slots (an address given to `serve run` joins a cluster as it is).
        os.environ.setdefault(
            "RAY_OVERRIDE_RESOURCES", json.dumps({SESSION_RESOURCE: SESSION_SLOTS_PER_NODE})
        )
    config = load_config(
        args.get("config"),
        provider=args.get("provider"),
        max_concurrent_sessions=args.get("max_sessions"),
        warm_pool_size=args.get("warm_pool_size"),
        stt_placement=args.get("stt_placement"),
        tts_placement=args.get("tts_placement"),
        s2s_placement=args.get("s2s_placement"),
        media_port_range=args.get("media_port_range"),
    )
    # Deployment options (not backend Config): replica count, and pinning them to the head.
    replicas = int(args.get("replicas") or os.environ.get("VOICE_INGRESS_REPLICAS") or 1)
    options: dict[str, Any] = {"num_replicas": replicas}
    if (args.get("on_head") or os.environ.get("VOICE_INGRESS_ON_HEAD", "0")) not in ("0", ""):
        options["ray_actor_options"] = {"num_cpus": 0, "resources": {HEAD_RESOURCE: 0.001}}
    return VoiceIngress.options(**options).bind(config.provider, config.model_dump(mode="json"))


def __getattr__(name: str) -> Any:
    """`app` is built when `serve run serve_app:app` asks for it, not at import: building reads
    the environment and may prepare the Ray node `serve run` is about to start."""
    if name == "app":
        return build_app({})
    raise AttributeError(name)


_dashboard_url: str | None = None


def ensure_ray(address: str | None = None, session_slots: int = SESSION_SLOTS_PER_NODE) -> None:
    """Join the cluster at `address` / RAY_ADDRESS, or start a local one with session slots."""
    global _dashboard_url
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    dashboard = os.environ.get("VOICE_RAY_DASHBOARD", "1") != "0"
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        ctx = ray.init(address=address, namespace=NAMESPACE, **quiet)
    else:
        ctx = ray.init(
            # "local": start our own node even when another cluster on this host was started
            # last (ray.init() with no address would join it through /tmp/ray).
            address="local",
            namespace=NAMESPACE,
            resources={SESSION_RESOURCE: session_slots},
            include_dashboard=dashboard,
            **quiet,
        )
    _dashboard_url = ctx.dashboard_url


def deploy(
    provider: str,
    config: Config,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    replicas: int = 1,
    on_head: bool = False,
) -> DeploymentHandle:
    """Start (or reconfigure) the ingress on the current Ray cluster; returns its handle.
    Replicas share one registry, so the session cap holds whatever their number. `on_head`
    keeps the replicas on the head node, away from the nodes that host (and may lose) calls."""
    serve.start(http_options={"host": host, "port": port})
    options: dict[str, Any] = {"num_replicas": replicas}
    if on_head:
        options["ray_actor_options"] = {"num_cpus": 0, "resources": {HEAD_RESOURCE: 0.001}}
    return serve.run(
        VoiceIngress.options(**options).bind(provider, config.model_dump(mode="json")),
        name=APP_NAME,
        route_prefix="/",
        blocking=False,
    )


def app_handle() -> DeploymentHandle | None:
    try:
        return serve.get_app_handle(APP_NAME)
    except Exception:  # not deployed
        return None


def undeploy() -> None:
    """Delete the app, the warm pool and the registry (call after every session is closed)."""
    serve.delete(APP_NAME)
    with contextlib.suppress(ValueError):
        registry = ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE)
        with contextlib.suppress(Exception):
            ray.get(registry.shutdown.remote(), timeout=30)
        ray.kill(registry)


def dashboard_url() -> str | None:
    """The Ray dashboard of the cluster `ensure_ray` started or joined, if it has one."""
    url = _dashboard_url
    return f"http://{url}" if url and not url.startswith("http") else url
