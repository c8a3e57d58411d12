"""Backend provider `pipecat`: sessions speak Pipecat's websocket transport (protobuf frames +
RTVI, `serializer.py`), so Pipecat client apps connect to a session as they would to a Pipecat
bot. Media connects where the `local` provider's does.

With `pipecat_server_url` the conversation is a Pipecat bot's instead: each client connection
starts a bot through the runner's `/start` (websocket transport) and is relayed to it byte for
byte, while admission, health and the session's end stay here."""

from __future__ import annotations

import secrets
from typing import Annotated, Any
from urllib.parse import urlparse

from pydantic import AfterValidator

from backend.iface import MediaInfo, ProviderCapabilities
from providers.backend import BackendProvider, ProviderConfig
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
    # Keys as in the seed. `daily_*` and `room_name_prefix` are accepted but not used yet (no
    # Daily rooms are created); see the README.
    pipecat_server_url: HttpUrlStr | None = None
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

    def _runner(self) -> PipecatRunner | None:
        url = self.config.pipecat_server_url  # type: ignore[attr-defined]
        return PipecatRunner(url) if url else None

    async def open_session(self, session_id: str, user_id: str, media_base_url: str) -> MediaInfo:
        if (runner := self._runner()) is not None:
            await runner.status()  # refuse the session now if no bot can be started
        return MediaInfo(
            url=f"{media_base_url}/v1/sessions/{session_id}/audio",
            token=secrets.token_urlsafe(24),
        )

    def wire_codec(self, media: SessionMedia) -> WireCodec:
        return PipecatCodec(media)

    async def media_upstream(self, session_id: str, user_id: str) -> str | None:
        runner = self._runner()
        return None if runner is None else await runner.start_websocket_bot(session_id, user_id)

    async def check_health(self) -> dict[str, Any]:
        runner = self._runner()
        if runner is None:
            return {"reachable": True}
        await runner.status()  # raises: the supervisor reports the provider unreachable
        return {"reachable": True, "pipecat_server_url": runner.server_url}
