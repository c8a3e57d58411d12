"""Backend provider `pipecat`: sessions speak Pipecat's websocket transport (protobuf frames +
RTVI, `serializer.py`), so Pipecat client apps connect to a session as they would to a Pipecat
bot. Media connects where the `local` provider's does.

With `pipecat_server_url` the conversation is a Pipecat bot's instead: each client connection
starts a bot through the runner's `/start` (websocket transport) and is relayed to it byte for
byte, while admission, health and the session's end stay here. With `daily_api_key` as well,
each session gets its own Daily room (made after admission, deleted when the session closes or
its start fails), the bot is started into it with an owner token, and the client's media is
that room: `media.url` is the room's URL, `media.token` the user's meeting token.

Sessions created with transport "webrtc" speak Pipecat's SmallWebRTC signalling instead
(`smallwebrtc.py`): `media.url` is the session's `pipecat/offer` route, what a Pipecat client's
`SmallWebRTCTransport` takes as its `webrtcUrl` (with `?token=` the media token). With
`pipecat_server_url` too, each such call starts a bot (runner `/start`, transport webrtc) and
is relayed to it (`smallwebrtc_upstream`)."""

from __future__ import annotations

import ipaddress
import secrets
from typing import Annotated, Any
from urllib.parse import urlparse

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from backend.iface import MediaInfo, ProviderCapabilities
from providers.backend import BackendProvider, ProviderConfig
from providers.local.backend import IceServer
from providers.pipecat.daily import DailyRest
from providers.pipecat.runner import PipecatRunner
from providers.pipecat.serializer import PipecatCodec
from providers.wire import SessionMedia, WireCodec


def _http_url(v: str) -> str:
    parsed = urlparse(v)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("must be an http:// or https:// URL with a host")
    return v


HttpUrlStr = Annotated[str, AfterValidator(_http_url)]


class PipecatConfig(ProviderConfig):
    # Keys as in the seed.
    pipecat_server_url: HttpUrlStr | None = None
    daily_api_key: str | None = None
    daily_api_url: HttpUrlStr = "https://api.daily.co/v1"
    room_name_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")] = "voice"
    # Sessions with transport "webrtc" (SmallWebRTC): STUN/TURN servers, and the local
    # addresses offered as host candidates (default: every interface but loopback).
    ice_servers: list[IceServer] = Field(default_factory=list)
    ice_host_addresses: list[str] | None = None

    @field_validator("ice_host_addresses")
    @classmethod
    def _addresses(cls, v: list[str] | None) -> list[str] | None:
        for addr in v or []:
            ipaddress.ip_address(addr)  # ValueError names the bad address
        return v

    @field_validator("daily_api_key")
    @classmethod
    def _daily_needs_a_bot(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v and not info.data.get("pipecat_server_url"):
            raise ValueError("needs pipecat_server_url too: the Pipecat bot that joins the room")
        return v


class PipecatBackendProvider(BackendProvider):
    name = "pipecat"
    config_model = PipecatConfig

    def capabilities(self) -> ProviderCapabilities:
        return ProviderCapabilities(
            supports_stt_tts=True, supports_s2s=True, supported_codecs=["pcm16"], min_latency=0.2
        )

    def _runner(self) -> PipecatRunner | None:
        url = self.config.pipecat_server_url  # type: ignore[attr-defined]
        return PipecatRunner(url) if url else None

    def _daily(self) -> DailyRest | None:
        cfg: PipecatConfig = self.config  # type: ignore[assignment]
        return DailyRest(cfg.daily_api_key, cfg.daily_api_url) if cfg.daily_api_key else None

    def _room_name(self, session_id: str) -> str:
        return f"{self.config.room_name_prefix}-{session_id}"  # type: ignore[attr-defined]

    async def open_session(self, session_id: str, user_id: str, media_base_url: str) -> MediaInfo:
        runner, daily = self._runner(), self._daily()
        if runner is not None and daily is not None:
            return await self._open_daily(runner, daily, session_id, user_id)
        if runner is not None:  # refuse the session now if no bot can be started
            await runner.status("websocket", "webrtc")
        return MediaInfo(
            url=f"{media_base_url}/v1/sessions/{session_id}/audio",
            token=secrets.token_urlsafe(24),
        )

    async def _open_daily(
        self, runner: PipecatRunner, daily: DailyRest, session_id: str, user_id: str
    ) -> MediaInfo:
        await runner.status("daily")
        room = await daily.create_room(self._room_name(session_id), user_id)
        body = {"room_url": room.url, "token": room.bot_token}
        try:
            await runner.start_daily_bot({**body, "session_id": session_id, "user_id": user_id})
        except BaseException:
            await daily.delete_room(room.name)  # a refused session leaves no room behind
            raise
        return MediaInfo(url=room.url, token=room.user_token)

    async def close_session(self, session_id: str) -> None:
        if (daily := self._daily()) is not None:
            await daily.delete_room(self._room_name(session_id))

    def webrtc_options(self) -> dict[str, Any]:
        """Sessions with transport "webrtc" speak SmallWebRTC (`smallwebrtc.py`) at their
        `pipecat/offer` route."""
        cfg: PipecatConfig = self.config  # type: ignore[assignment]
        return {
            "ice_servers": [s.model_dump(exclude_none=True) for s in cfg.ice_servers],
            "host_addresses": cfg.ice_host_addresses,
            "offer_path": "pipecat/offer",
        }

    def wire_codec(self, media: SessionMedia) -> WireCodec:
        return PipecatCodec(media)

    async def media_upstream(self, session_id: str, user_id: str) -> str | None:
        runner = self._runner()
        if runner is None or self._daily() is not None:  # Daily: media is the room, not us
            return None
        return await runner.start_websocket_bot(session_id, user_id)

    async def smallwebrtc_upstream(self, session_id: str, user_id: str) -> str | None:
        """The SmallWebRTC offer URL of a bot started for this call (webrtc sessions with
        `pipecat_server_url`, no Daily); None: the session's own pipeline answers."""
        runner = self._runner()
        if runner is None or self._daily() is not None:
            return None
        await runner.status("webrtc")
        return await runner.start_webrtc_bot(session_id, user_id)

    async def check_health(self) -> dict[str, Any]:
        """Raises when unreachable: the supervisor then reports the provider degraded."""
        runner, daily = self._runner(), self._daily()
        if runner is None:
            return {"reachable": True}
        await runner.status(*(["daily"] if daily else ["websocket", "webrtc"]))
        if daily is not None:
            await daily.check()
        return {"reachable": True, "pipecat_server_url": runner.server_url}
