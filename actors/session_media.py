"""How a call's media reaches its session worker: the websocket it serves itself (direct media,
`actors/media/`), a WebRTC peer terminated here, or the ingress's relay calls (`push_audio`,
`poll`). Mixed into `SessionActor`, whose session state it reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import ray

from actors.names import REGISTRY_NAME
from actors.session_spec import SessionSpec
from backend.auth import check_media_token
from backend.errors import BackendError, ErrorCode
from pipelines.session import SessionRuntime
from pipelines.transports.base import MediaTransport
from providers.wire import WireCodec

log = logging.getLogger(__name__)

STALLED_GOODBYE_S = 60.0  # how long a stalled client's socket may take to take its `closed`


class SessionMediaMixin:
    worker_name: str
    namespace: str
    session_id: str | None
    runtime: SessionRuntime | None
    spec: SessionSpec | None
    media: MediaTransport | Any
    _media_server: Any
    _media_token: dict[str, Any]

    def _rt(self) -> SessionRuntime:
        raise NotImplementedError

    async def close(self, reason: str = "closed") -> dict[str, Any]:
        raise NotImplementedError

    # -- media -----------------------------------------------------------------------------
    def start_media(self) -> str:
        self._rt().start()
        return self._rt().state.value

    def push_audio(self, frames: list[bytes]) -> list[dict[str, Any]]:
        return self._rt().push_audio(frames)

    def send_audio(self, pcm16: bytes) -> None:
        self._rt().send_audio(pcm16)

    async def webrtc_offer(
        self,
        sdp: str,
        sdp_type: str = "offer",
        codec: WireCodec | None = None,
        pc_id: str | None = None,
        restart: bool = False,
        relay_to: str | None = None,
    ) -> dict[str, str]:
        """Terminate the client's peer connection here; returns the SDP answer and its `pc_id`.
        An offer naming the call's `pc_id` renegotiates it (`restart`: on a new connection).
        `codec`: the data channel's protocol, when a provider's (Pipecat's SmallWebRTC).
        `relay_to`: a bot's SmallWebRTC offer URL: the call is relayed to that bot."""
        from pipelines.transports.webrtc import WebRtcOptions, WebRtcTransport  # ~40 MB: lazily
        from pipelines.transports.webrtc_relay import WebRtcRelay

        rt = self._rt()
        assert self.spec is not None
        if self.spec.transport != "webrtc":
            raise BackendError(
                "webrtc.offer",
                ErrorCode.INVALID_CONFIG,
                f"transport: this session uses {self.spec.transport}, not webrtc",
                field="transport",
            )
        if isinstance(self.media, WebRtcTransport) and pc_id and pc_id == self.media.pc_id:
            return await self.media.renegotiate(sdp, sdp_type, restart)
        if self.media is not None:
            detail = f"pc_id: no call {pc_id!r} here" if pc_id else "a peer is already connected"
            raise BackendError("webrtc.offer", ErrorCode.SESSION_ALREADY_ACTIVE, detail)
        options = WebRtcOptions(**self.spec.transport_options)
        transport = (
            WebRtcRelay(options, relay_to, on_closed=self._peer_gone)
            if relay_to
            else WebRtcTransport(options, on_closed=self._peer_gone, codec=codec)
        )
        self.media = transport
        try:
            await transport.start(rt)
            return await transport.answer(sdp, sdp_type)
        except BaseException:
            self.media = None
            await transport.aclose()
            raise

    async def webrtc_candidates(self, pc_id: str, candidates: list[dict[str, Any]]) -> None:
        """ICE candidates the client trickles after its offer ({candidate, sdp_mid,
        sdp_mline_index} each)."""
        from pipelines.transports.webrtc import WebRtcTransport

        if not isinstance(self.media, WebRtcTransport) or pc_id != self.media.pc_id:
            raise BackendError(
                "webrtc.candidate", ErrorCode.SESSION_NOT_FOUND, f"pc_id: no call {pc_id!r} here"
            )
        for c in candidates:
            await self.media.add_candidate(
                c["candidate"], c.get("sdp_mid"), c.get("sdp_mline_index")
            )

    async def _peer_gone(self, reason: str) -> None:
        """The peer (WebRTC, or the user of a LiveKit room) left: end the session, free its
        slot, and exit this actor (which also ends its stage actors). The registry hands the
        record to the supervisor, which releases the provider's side, as for a reaped session."""
        session_id = self.session_id
        log.info("session %s: %s; ending the session", session_id, reason)
        # The session's last events (`closed`; Pipecat's `peerLeft`) go out to a peer still
        # there before the registry is told: it kills this worker as it frees the slot.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5.0):
                if self.runtime is not None:
                    await self.runtime.aclose(reason)
                if self.media is not None:
                    await self.media.aclose()
        with contextlib.suppress(Exception):
            registry = ray.get_actor(REGISTRY_NAME, namespace=self.namespace)
            await registry.session_ended.remote(session_id, reason)
        await self.close(reason)
        # This worker's peer connection and state are gone with the call: retire it.
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    async def poll(
        self,
        audio: bool = True,
        events: bool = True,
        timeout_s: float = 10.0,
        max_audio_bytes: int | None = None,
    ) -> dict[str, Any]:
        return await self._rt().outbox.poll(
            audio=audio, events=events, timeout_s=timeout_s, max_audio_bytes=max_audio_bytes
        )

    async def _serve_media(self, spec: SessionSpec) -> str:
        """Attach the session to this process's websocket server (started on first use)."""
        from actors.media import LocalPort, MediaServer, RelayLimits, parse_port_range

        direct = dict(spec.direct_media or {})
        if self._media_server is None:
            server = MediaServer(
                ports=parse_port_range(direct.get("port_range")),
                advertise_host=ray.util.get_node_ip_address(),
            )
            await server.start()
            self._media_server = server
        self._media_token = dict(direct.get("token") or {})

        def check_token(token: str) -> None:
            check_media_token({"media": self._media_token}, token, "websocket")

        return self._media_server.attach(
            spec.session_id,
            LocalPort(self._rt),
            check_token=check_token,
            codec=None,
            limits=RelayLimits(**direct.get("limits", {})),
            on_stall=self._stalled,
        )

    async def _stalled(self, reason: str) -> None:
        """The direct websocket's client stopped reading and sending: close the session with
        that reason. Its `closed` event goes out first (the relay ends the socket with it), then
        the registry frees the slot and takes this worker back, as a close by request would.
        The relay keeps the closed session's runtime, never the next one's."""
        session_id = self.session_id
        if session_id is None or self.runtime is None:
            return
        await self.runtime.aclose(reason)
        server = self._media_server
        if server is not None:
            server.forget(session_id)  # its relay ends the socket with the reason
        report = await self.close(reason)
        registry = ray.get_actor(REGISTRY_NAME, namespace=self.namespace)
        # The slot is free at once; this worker rejoins the pool once the stalled socket has
        # had its goodbye (or given up on it), so no recycle cuts it short.
        await registry.session_closed_here.remote(session_id, reason, self.worker_name)
        if server is not None:
            await server.drained(session_id, STALLED_GOODBYE_S)
        await registry.worker_released.remote(self.worker_name, report)

    def set_media_token(self, token: str, expires_at: float | None) -> None:
        """The owner renewed the media token (`POST /v1/sessions/{id}/media_token`)."""
        self._media_token = {"token": token, "token_expires_at": expires_at}
