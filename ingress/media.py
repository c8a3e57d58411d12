"""Media on the Serve port: the audio websocket (the fallback of a session that serves its own),
the WebRTC offer, and renewed media tokens."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from typing import Any

from fastapi import APIRouter, Query, Request, WebSocket
from pydantic import BaseModel, ConfigDict, Field

from actors.errors import as_backend_error
from actors.media import CLOSE_SESSION_ERROR, ActorPort, RelayLimits, StarletteSocket, relay
from actors.upstream_relay import proxy
from backend.auth import check_media_token, check_owner
from backend.errors import BackendError, ErrorCode
from ingress.common import AUTH_ERRORS, OFFER_TIMEOUT_S, authenticated, control, errors

router = APIRouter()


class WebRtcOffer(BaseModel):
    """Body of `POST /v1/sessions/{id}/webrtc/offer`: the client's SDP offer, with its ICE
    candidates (gather them all before sending), and the session's media token."""

    model_config = ConfigDict(extra="forbid")
    sdp: str = Field(min_length=1, max_length=100_000)
    type: str = "offer"
    token: str = ""


@router.post(
    "/v1/sessions/{session_id}/media_token",
    tags=["media"],
    responses=errors(*AUTH_ERRORS, 404, 409),
)
async def http_media_token(session_id: str, request: Request) -> dict[str, Any]:
    """A fresh media token for the session's owner (e.g. to reconnect after the first one
    expired); the old token stops working. Only for media this backend serves itself."""
    principal = await authenticated(request)
    sup = control(request)
    rec = await sup.require_session(session_id)
    check_owner(principal, rec, "media_token")
    media = dict(rec.get("media") or {})
    if f"/v1/sessions/{session_id}/" not in str(media.get("url", "")):  # e.g. a LiveKit room
        raise BackendError(
            "media_token",
            ErrorCode.SESSION_ALREADY_ACTIVE,
            "this session's media token comes from its provider; it cannot be renewed here",
        )
    ttl = (await sup.config()).media_token_ttl
    media.update(token=secrets.token_urlsafe(24), token_expires_at=time.time() + ttl)
    if not await sup.annotate_session(session_id, {"media": media}):
        raise BackendError("media_token", ErrorCode.SESSION_NOT_FOUND, f"no session {session_id!r}")
    if media.get("fallback_url"):  # the session serves its websocket itself: tell it too
        ref = await sup.session_ref(rec)
        await ref.set_media_token.remote(media["token"], media["token_expires_at"])
    return {"token": media["token"], "token_expires_at": media["token_expires_at"]}


@router.post(
    "/v1/sessions/{session_id}/webrtc/offer",
    tags=["media"],
    responses=errors(400, 401, 404, 409, 413, 422, 502, 504),
)
async def http_webrtc_offer(session_id: str, body: WebRtcOffer, request: Request) -> dict[str, Any]:
    """SDP offer in, SDP answer out: the session terminates the peer connection itself.
    Authorised by the session's media token (short-lived, this session only)."""
    sup = control(request)
    rec = await sup.require_session(session_id)
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
    actor = await sup.session_ref(rec)
    try:
        async with asyncio.timeout(OFFER_TIMEOUT_S):
            return await actor.webrtc_offer.remote(body.sdp, body.type)
    except Exception as exc:
        raise as_backend_error("webrtc.offer", exc) from None


@router.websocket("/v1/sessions/{session_id}/audio")
async def ws_audio(ws: WebSocket, session_id: str, token: str = Query("")) -> None:
    await ws.accept()
    sup = control(ws)
    try:
        rec = await sup.require_session(session_id)
        check_media_token(rec, token, "websocket")
        actor = await sup.session_ref(rec)
        codec = sup.wire_codec(rec)
        upstream = await sup.media_upstream(rec)
    except BackendError as err:
        await ws.send_text(json.dumps({"type": "error", **err.to_body()["error"]}))
        await ws.close(1008 if err.code is ErrorCode.AUTHENTICATION_FAILED else CLOSE_SESSION_ERROR)
        return
    if upstream is not None:  # the provider's bot answers; the session keeps the call
        await proxy(ws, actor, upstream)
        return
    config = sup.cached_config
    limits = RelayLimits(
        max_frame_bytes=config.max_frame_bytes,
        output_bytes_per_s=2 * int(rec.get("output_sample_rate_hz") or 16000),
        stall_timeout_s=config.client_stall_timeout,
    )

    async def on_stall(reason: str) -> None:
        with contextlib.suppress(BackendError):
            await sup.close_session(session_id, reason)

    await relay(StarletteSocket(ws), ActorPort(actor), codec, limits, on_stall)
