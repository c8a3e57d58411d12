"""Vapi options (the seed's keys plus where Vapi reaches this backend), validated once."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from providers.backend import ProviderConfig

DEFAULT_API_URL = "https://api.vapi.ai"


class VapiConfig(ProviderConfig):
    api_key: SecretStr | None = None
    api_url: str = DEFAULT_API_URL
    assistant_id: str | None = None  # a saved assistant; its model is overridden by ours
    phone_number_id: str | None = None  # set: outbound phone calls to the session's user_id
    server_secret: SecretStr | None = None  # Vapi sends it as `X-Vapi-Secret`; we check it
    max_call_duration: float = Field(default=1800.0, ge=10, le=43200)  # seconds
    enable_recording: bool = False
    # Where Vapi reaches this backend (custom LLM + server URL): its public https:// base URL.
    public_url: str | None = None
    transport: Literal["vapi.websocket", "web"] = "vapi.websocket"
    model_name: str = "voice-backend"  # the model name Vapi sends to our custom LLM

    @field_validator("api_url", "public_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/") if v else v
