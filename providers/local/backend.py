"""The embedded default: media over this backend's own websocket, no remote service, no key."""

from __future__ import annotations

import ipaddress
import secrets

from pydantic import Field, field_validator

from backend.iface import MediaInfo, ProviderCapabilities
from providers.backend import BackendProvider, ProviderConfig


class IceServer(ProviderConfig):
    """A STUN or TURN server, as the browser's `RTCIceServer`."""

    urls: str | list[str]
    username: str | None = None
    credential: str | None = None


class LocalConfig(ProviderConfig):
    host: str | None = None  # public host/port of the media endpoint, if not the request's own
    port: int | None = None
    stt_model: str | None = None  # pocketsphinx acoustic model directory
    tts_voice: str = "en-us"
    # WebRTC sessions: STUN/TURN servers (none needed on loopback or a LAN), and the local
    # addresses to offer as host candidates (default: every interface but loopback).
    ice_servers: list[IceServer] = Field(default_factory=list)
    ice_host_addresses: list[str] | None = None

    @field_validator("ice_host_addresses")
    @classmethod
    def _addresses(cls, v: list[str] | None) -> list[str] | None:
        for addr in v or []:
            ipaddress.ip_address(addr)  # ValueError names the bad address
        return v


class LocalBackendProvider(BackendProvider):
    name = "local"
    config_model = LocalConfig

    def capabilities(self) -> ProviderCapabilities:
        return ProviderCapabilities(
            supports_stt_tts=True,
            supports_s2s=True,
            supports_multi_user=False,
            supported_codecs=["pcm16"],
            min_latency=0.2,
        )

    async def open_session(self, session_id: str, user_id: str, media_base_url: str) -> MediaInfo:
        cfg: LocalConfig = self.config  # type: ignore[assignment]
        base = media_base_url
        if cfg.host:
            base = f"ws://{cfg.host}:{cfg.port or 8000}"
        return MediaInfo(
            url=f"{base}/v1/sessions/{session_id}/audio", token=secrets.token_urlsafe(24)
        )

    def webrtc_options(self) -> dict[str, object]:
        cfg: LocalConfig = self.config  # type: ignore[assignment]
        return {
            "ice_servers": [s.model_dump(exclude_none=True) for s in cfg.ice_servers],
            "host_addresses": cfg.ice_host_addresses,
        }

    def stage_options(self) -> dict[str, dict[str, object]]:
        cfg: LocalConfig = self.config  # type: ignore[assignment]
        stages: dict[str, dict[str, object]] = {
            "pocketsphinx": {"model": cfg.stt_model},
            "espeak": {"voice": cfg.tts_voice},
        }
        return {**stages, "local": {"stage_options": stages}}  # "local": the s2s composition
