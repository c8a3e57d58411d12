"""Pipecat SmallWebRTC signalling (provider pipecat, transport webrtc): what a Pipecat client's
`webrtcUrl` points at. The session terminates the peer connection itself."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request

from actors.control_plane import ControlPlane
from actors.errors import as_backend_error
from actors.session_ref import SessionRef
from backend.auth import check_media_token
from backend.errors import BackendError, ErrorCode
from ingress.common import OFFER_TIMEOUT_S, control, errors
from providers.pipecat.backend import PipecatBackendProvider
from providers.pipecat.smallwebrtc import SmallWebRtcCodec, SmallWebRtcOffer, SmallWebRtcPatch

router = APIRouter(tags=["pipecat"])


@router.post(
    "/v1/sessions/{session_id}/pipecat/offer",
    responses=errors(400, 401, 404, 409, 413, 422, 502, 504),
)
async def http_pipecat_offer(
    session_id: str, body: SmallWebRtcOffer, request: Request, token: str = Query("")
) -> dict[str, Any]:
    """A Pipecat client's SmallWebRTC offer (`webrtcUrl`); the same `pc_id` renegotiates."""
    sup = control(request)
    rec, actor = await _smallwebrtc_session(sup, session_id, token or body.token())
    codec = sup.wire_codec(rec)
    if codec is None:  # `_smallwebrtc_session` admits pipecat sessions only, which have one
        raise BackendError("webrtc.offer", ErrorCode.PIPELINE_ERROR, "no pipecat codec")
    channel = SmallWebRtcCodec(codec.media)
    try:
        async with asyncio.timeout(OFFER_TIMEOUT_S):
            relay_to = None  # a new call to a session with a Pipecat bot: start one for it
            if not body.pc_id and isinstance(sup.provider, PipecatBackendProvider):
                relay_to = await sup.provider.smallwebrtc_upstream(
                    session_id, rec.get("user_id", "")
                )
            return await actor.webrtc_offer.remote(
                body.sdp, body.type, channel, body.pc_id, bool(body.restart_pc), relay_to
            )
    except Exception as exc:
        raise as_backend_error("webrtc.offer", exc) from None


@router.patch(
    "/v1/sessions/{session_id}/pipecat/offer",
    responses=errors(400, 401, 404, 409, 413, 422, 502),
)
async def http_pipecat_candidates(
    session_id: str, body: SmallWebRtcPatch, request: Request, token: str = Query("")
) -> dict[str, str]:
    """Trickled ICE candidates of a SmallWebRTC call."""
    _, actor = await _smallwebrtc_session(control(request), session_id, token)
    candidates = [c.model_dump() for c in body.candidates]
    try:
        await actor.webrtc_candidates.remote(body.pc_id, candidates)
    except Exception as exc:
        raise as_backend_error("webrtc.candidate", exc) from None
    return {"status": "success"}


async def _smallwebrtc_session(
    sup: ControlPlane, session_id: str, token: str
) -> tuple[dict[str, Any], SessionRef]:
    rec = await sup.require_session(session_id)
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
    return rec, await sup.session_ref(rec)
