"""Backend provider `pipecat`: sessions run here and speak Pipecat's websocket transport
(protobuf frames + RTVI, `serializer.py`), so Pipecat client apps connect to a session as they
would to a Pipecat bot. Media connects where the `local` provider's does."""

from __future__ import annotations

import secrets

from backend.iface import MediaInfo, ProviderCapabilities
from providers.backend import BackendProvider, ProviderConfig
from providers.pipecat.serializer import PipecatCodec
from providers.wire import SessionMedia, WireCodec


class PipecatConfig(ProviderConfig):
    # Keys as in the seed. Reserved for sessions that start a Pipecat bot (`pipecat_server_url`)
    # in a Daily room (`daily_*`); not used yet: every session runs its pipeline here.
    pipecat_server_url: str | None = None
    daily_api_key: str | None = None
    daily_api_url: str = "https://api.daily.co/v1"
    room_name_prefix: str = "voice"


class PipecatBackendProvider(BackendProvider):
    name = "pipecat"
    config_model = PipecatConfig

    def capabilities(self) -> ProviderCapabilities:
        return ProviderCapabilities(
            supports_stt_tts=True, supports_s2s=True, supported_codecs=["pcm16"], min_latency=0.2
        )

    async def open_session(self, session_id: str, user_id: str, media_base_url: str) -> MediaInfo:
        return MediaInfo(
            url=f"{media_base_url}/v1/sessions/{session_id}/audio",
            token=secrets.token_urlsafe(24),
        )

    def wire_codec(self, media: SessionMedia) -> WireCodec:
        return PipecatCodec(media)
