"""The `cartesia` backend: the stt_tts pipeline with both speech stages on Cartesia.

Media comes over this backend's own websocket (as with `local`); the session's STT and TTS stage
actors each hold one Cartesia websocket for the call. The seed's keys live in `provider_config`
and are handed to both stage providers; sessions must use `stt_provider`/`tts_provider`
"cartesia" (`Config` defaults them when the backend is created with `new_backend("cartesia")`).
"""

from __future__ import annotations

import secrets
from typing import Any

from backend.errors import BackendError, ErrorCode
from backend.iface import MediaInfo, ProviderCapabilities
from providers.backend import BackendProvider, ProviderConfig
from providers.cartesia.config import CartesiaConfig

STAGE = "cartesia"


class CartesiaBackendConfig(CartesiaConfig):
    host: str | None = None  # public host/port of the media endpoint, if not the request's own
    port: int | None = None


class CartesiaBackendProvider(BackendProvider):
    name = "cartesia"
    config_model: type[ProviderConfig] = CartesiaBackendConfig

    def __init__(self, provider_config: dict[str, Any] | None = None) -> None:
        super().__init__(provider_config)
        self.config.key()  # type: ignore[attr-defined]  # a clear error at startup, not per call

    def capabilities(self) -> ProviderCapabilities:
        return ProviderCapabilities(
            supports_stt_tts=True,
            supports_s2s=False,
            supports_multi_user=False,
            supported_codecs=["pcm16"],
            min_latency=0.2,
        )

    def check_stage_providers(self, stt_provider: str | None, tts_provider: str | None) -> None:
        """A cartesia backend runs both stages on Cartesia; anything else is a config error."""
        for field, value in (("stt_provider", stt_provider), ("tts_provider", tts_provider)):
            if value != STAGE:
                raise BackendError(
                    "cartesia.config",
                    ErrorCode.INVALID_CONFIG,
                    f"{field}: the cartesia backend runs {STAGE!r} stages, not {value!r}",
                    field=field,
                )

    async def open_session(self, session_id: str, user_id: str, media_base_url: str) -> MediaInfo:
        cfg: CartesiaBackendConfig = self.config  # type: ignore[assignment]
        base = f"ws://{cfg.host}:{cfg.port or 8000}" if cfg.host else media_base_url
        return MediaInfo(
            url=f"{base}/v1/sessions/{session_id}/audio", token=secrets.token_urlsafe(24)
        )

    def stage_options(self) -> dict[str, dict[str, Any]]:
        cfg: CartesiaBackendConfig = self.config  # type: ignore[assignment]
        options = cfg.model_dump(exclude={"host", "port"}, exclude_unset=True)
        if cfg.api_key is not None:
            options["api_key"] = cfg.api_key.get_secret_value()
        return {STAGE: options}

    async def check_health(self) -> dict[str, Any]:
        return {"reachable": True, "api_url": self.config.api_url}  # type: ignore[attr-defined]
