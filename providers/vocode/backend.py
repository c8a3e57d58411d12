"""Backend provider `vocode`: sessions run here and speak Vocode's self-hosted conversation
websocket (`protocol.py`), so Vocode client apps (and telephony bridges sending 8 kHz mu-law)
connect to a session as they would to a Vocode `ConversationRouter`."""

from __future__ import annotations

import secrets

from backend.iface import MediaInfo, ProviderCapabilities
from providers.backend import BackendProvider, ProviderConfig
from providers.vocode.protocol import VocodeCodec
from providers.wire import SessionMedia, WireCodec


class VocodeConfig(ProviderConfig):
    # Keys as in the seed (Vocode's hosted API). Accepted so seed configs load; not used: the
    # conversation runs on this backend, not on Vocode's hosted service.
    api_key: str | None = None
    api_url: str | None = None
    agent_id: str | None = None


class VocodeBackendProvider(BackendProvider):
    name = "vocode"
    config_model = VocodeConfig

    def capabilities(self) -> ProviderCapabilities:
        return ProviderCapabilities(
            supports_stt_tts=True,
            supports_s2s=True,
            supported_codecs=["linear16", "mulaw"],
            min_latency=0.2,
        )

    async def open_session(self, session_id: str, user_id: str, media_base_url: str) -> MediaInfo:
        return MediaInfo(
            url=f"{media_base_url}/v1/sessions/{session_id}/audio",
            token=secrets.token_urlsafe(24),
        )

    def wire_codec(self, media: SessionMedia) -> WireCodec:
        return VocodeCodec(media)
