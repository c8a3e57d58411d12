"""The `livekit` backend provider: one LiveKit room per session, the user joins it with a
short-lived token, the session actor joins it as the agent (`providers/livekit/transport.py`).

The supervisor calls `open_session` only after admission, so a refused session creates no room;
`close_session` deletes the room if this backend created it (a named `room_name` is the
operator's and stays). The API secret signs tokens and verifies webhooks here, in the ingress; it
never travels to a session actor, into a log or an error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiohttp
from google.protobuf.json_format import MessageToDict
from livekit import api

from backend.errors import BackendError, ErrorCode
from backend.iface import MediaInfo, ProviderCapabilities
from providers.backend import BackendProvider, TransportSpec, WebhookUpdate
from providers.livekit.config import (
    LiveKitConfig,
    agent_identity,
    session_of,
    user_identity,
)

WEBHOOK_MAX_AGE_S = 300.0  # an event older than this is stale, even if its token still verifies
API_TIMEOUT_S = 10.0
# A participant gone for these reasons may rejoin; any other reason means they left.
NETWORK_LOSS = {
    api.DisconnectReason.CONNECTION_TIMEOUT,
    api.DisconnectReason.SIGNAL_CLOSE,
    api.DisconnectReason.STATE_MISMATCH,
    api.DisconnectReason.MIGRATION,
}


class LiveKitBackendProvider(BackendProvider):
    name = "livekit"
    config_model = LiveKitConfig

    @property
    def cfg(self) -> LiveKitConfig:
        return self.config  # type: ignore[return-value]

    def capabilities(self) -> ProviderCapabilities:
        # Opus on the wire (WebRTC through the SFU), PCM16 inside the pipeline. min_latency: the
        # two SFU hops (user -> agent, agent -> user) cost ~60-90 ms each on loopback here (Opus
        # plus the jitter buffer); see benchmarks/livekit_vs_websocket.py for whole turns.
        return ProviderCapabilities(
            supports_stt_tts=True,
            supports_s2s=True,
            supports_multi_user=True,
            supported_codecs=["opus", "pcm16"],
            min_latency=0.15,
        )

    def _client(self) -> api.LiveKitAPI:
        """A client per call: its HTTP session then belongs to the caller's event loop and is
        closed after use (a few calls per session; nothing to leak on reconfiguration)."""
        return api.LiveKitAPI(
            self.cfg.http_url,
            self.cfg.api_key,
            self.cfg.secret(),
            timeout=aiohttp.ClientTimeout(total=API_TIMEOUT_S),
            failover=False,
        )

    async def _call(self, op: str, request: Callable[[api.RoomService], Awaitable[Any]]) -> Any:
        """Run a RoomService call; its failures become the project's errors (no secret in them)."""
        try:
            async with self._client() as lkapi:
                return await request(lkapi.room)
        except api.TwirpError as exc:
            code = ErrorCode.CONNECTION_FAILED
            if exc.status in (401, 403) or exc.code in ("unauthenticated", "permission_denied"):
                code = ErrorCode.AUTHENTICATION_FAILED
            detail = f"LiveKit server refused ({exc.status}): {exc.message or exc.code}"
            raise BackendError(op, code, detail) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise BackendError(
                op,
                ErrorCode.CONNECTION_FAILED,
                f"LiveKit server at {self.cfg.http_url} unreachable ({type(exc).__name__})",
            ) from None

    # -- sessions --------------------------------------------------------------------------
    async def open_session(self, session_id: str, user_id: str, media_base_url: str) -> MediaInfo:
        room = self.cfg.room_for(session_id)
        request = api.CreateRoomRequest(
            name=room,
            empty_timeout=self.cfg.empty_timeout_s,
            departure_timeout=int(self.cfg.rejoin_grace_s) + 1,
            metadata=json.dumps({"voice_backend": True}),
        )
        if self.cfg.room_name is None:
            request.max_participants = 2  # the user and the agent; nobody else joins a 1:1 call
        # CreateRoom returns the existing room when one has this name (a shared `room_name`).
        await self._call(
            "livekit.create_room", lambda room_service: room_service.create_room(request)
        )
        token = self._token(
            user_identity(session_id),
            room,
            ttl_s=self.cfg.token_ttl_s,
            name=user_id,
            attributes={"session_id": session_id, "user_id": user_id, "role": "user"},
        )
        return MediaInfo(url=self.cfg.ws_url, token=token, room=room)

    def agent_transport(self, session_id: str, user_id: str) -> TransportSpec:
        room = self.cfg.room_for(session_id)
        token = self._token(
            agent_identity(session_id),
            room,
            ttl_s=self.cfg.agent_token_ttl_s,
            name="voice agent",
            attributes={"session_id": session_id, "role": "agent"},
            agent=True,
        )
        options = {
            "url": self.cfg.ws_url,
            "token": token,
            "user_identity": user_identity(session_id),
            "rejoin_grace_s": self.cfg.rejoin_grace_s,
        }
        return TransportSpec(name="livekit", options=options)

    async def close_session(self, session_id: str) -> None:
        if self.cfg.room_name is not None:
            return  # not ours to delete
        room = self.cfg.room_for(session_id)
        try:
            await self._call(
                "livekit.delete_room", lambda rs: rs.delete_room(api.DeleteRoomRequest(room=room))
            )
        except BackendError as err:
            if "not exist" not in err.message and "not found" not in err.message:
                raise  # an already deleted room is what we wanted

    def _token(
        self,
        identity: str,
        room: str,
        *,
        ttl_s: float,
        name: str,
        attributes: dict[str, str],
        agent: bool = False,
    ) -> str:
        grants = api.VideoGrants(
            room_join=True,
            room=room,
            can_publish=True,
            can_subscribe=True,
            can_publish_data=True,
        )
        token = (
            api.AccessToken(self.cfg.api_key, self.cfg.secret())
            .with_identity(identity)
            .with_name(name)
            .with_attributes(attributes)
            .with_grants(grants)
            .with_ttl(timedelta(seconds=ttl_s))
        )
        if agent:
            token = token.with_kind("agent")  # LiveKit clients show it as the room's agent
        return token.to_jwt()

    # -- webhooks --------------------------------------------------------------------------
    def receive_webhook(self, body: str, authorization: str) -> WebhookUpdate:
        """Verify LiveKit's signature (a JWT signed with the API secret whose `sha256` claim is
        the body's hash) and freshness; then say what the event means for sessions."""
        receiver = api.WebhookReceiver(api.TokenVerifier(self.cfg.api_key, self.cfg.secret()))
        token = authorization.removeprefix("Bearer ").strip()
        if not token:
            raise _unauthenticated("missing Authorization header")
        try:
            event = receiver.receive(body, token)
        except Exception as exc:  # expired, bad signature, body mismatch, malformed JSON
            reason = str(exc) or type(exc).__name__
            raise _unauthenticated(f"webhook rejected: {reason}") from None
        if event.created_at and time.time() - event.created_at > WEBHOOK_MAX_AGE_S:
            raise _unauthenticated("webhook rejected: stale event")
        return _meaning(event)

    # -- health ----------------------------------------------------------------------------
    async def check_health(self) -> dict[str, Any]:
        started = time.monotonic()
        try:
            probe = api.ListRoomsRequest(names=["voice-health"])
            await self._call("livekit.health", lambda rs: rs.list_rooms(probe))
        except BackendError as err:
            return {"reachable": False, "url": self.cfg.ws_url, "error": err.message}
        return {
            "reachable": True,
            "url": self.cfg.ws_url,
            "latency_ms": round((time.monotonic() - started) * 1000, 1),
        }


def _unauthenticated(message: str) -> BackendError:
    return BackendError("livekit.webhook", ErrorCode.AUTHENTICATION_FAILED, message)


def _meaning(event: Any) -> WebhookUpdate:
    room = event.room.name or None
    if event.event == "room_finished":
        return WebhookUpdate("room_finished", event.event, room=room)
    if event.event in ("participant_joined", "participant_left"):
        identity = event.participant.identity
        session_id = session_of(identity)
        if session_id is not None and identity.startswith("user-"):
            kind = "user_joined" if event.event == "participant_joined" else "user_left"
            if kind == "user_left" and event.participant.disconnect_reason in NETWORK_LOSS:
                kind = "user_dropped"
            return WebhookUpdate(kind, event.event, session_id=session_id, room=room)
    return WebhookUpdate("ignored", event.event, room=room)


def sign_webhook(body: str, api_key: str, api_secret: str, ttl_s: float = 300.0) -> str:
    """An Authorization header value as LiveKit's server makes it (for tools and tests)."""
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    token = api.AccessToken(api_key, api_secret).with_sha256(digest)
    return token.with_ttl(timedelta(seconds=ttl_s)).to_jwt()


def event_body(event: str, **fields: Any) -> str:
    """A webhook body as LiveKit's server serializes it (protobuf JSON)."""
    message = api.WebhookEvent(event=event, created_at=int(time.time()), **fields)
    return json.dumps(MessageToDict(message))
