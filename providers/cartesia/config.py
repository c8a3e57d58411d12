"""Cartesia options (the seed's keys), validated once, shared by the TTS, STT and backend provider.

The same model validates `provider_config` of the `cartesia` backend and
`stage_provider_config["cartesia"]` on any backend: an unknown key or a wrong type is an
`invalid_config` error naming it; the key is a `SecretStr`, so it never shows in a repr or an error.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator

from backend.errors import BackendError, ErrorCode
from providers.backend import ProviderConfig
from providers.retry import retry_after_details

DEFAULT_API_URL = "https://api.cartesia.ai"
# The API version the official SDK we pin (cartesia 4.2.0) speaks; sent as `Cartesia-Version`.
DEFAULT_VERSION = "2026-08-14"


class CartesiaConfig(ProviderConfig):
    api_key: SecretStr | None = None
    api_url: str = DEFAULT_API_URL
    model_id: str = "sonic-3"  # TTS model
    voice_id: str = "f786b574-daa5-4673-aa0c-cbe3e8534c02"
    sample_rate: int = Field(default=24000, ge=8000, le=48000)  # TTS output rate, Hz
    version: str = DEFAULT_VERSION
    language: str = "en"
    stt_model: str = "ink-whisper"
    stt_sample_rate: int = Field(default=16000, ge=8000, le=48000)  # what we send to the STT
    add_timestamps: bool = False  # ask the TTS for word timestamps

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")

    def key(self) -> str:
        if self.api_key is None or not self.api_key.get_secret_value():
            raise BackendError(
                "cartesia.config",
                ErrorCode.INVALID_CONFIG,
                "cartesia: api_key is required",
                field="api_key",
            )
        return self.api_key.get_secret_value()

    def websocket_url(self) -> str:
        """The SDK turns every base URL into wss://; a plain http:// one must stay ws://."""
        return "ws" + self.api_url.removeprefix("http")


def parse_options(values: dict[str, Any], where: str = "stage_provider_config.cartesia") -> Any:
    try:
        return CartesiaConfig(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err.get("loc", ()))
        raise BackendError(
            "cartesia.config",
            ErrorCode.INVALID_CONFIG,
            f"{where}.{key}: {err.get('msg')}",
            field=f"{where}.{key}",
        ) from None


def client(cfg: CartesiaConfig) -> Any:
    """The official async SDK client, pointed at the configured base URL and API version."""
    from cartesia import AsyncCartesia

    return AsyncCartesia(
        api_key=cfg.key(),
        base_url=cfg.api_url,
        websocket_base_url=cfg.websocket_url(),
        default_headers={"cartesia-version": cfg.version},  # the SDK's own key, overridden
        max_retries=0,  # retries follow the session's max_retries/retry_delay, not the SDK's
    )


def error_from_event(op: str, event: Any) -> BackendError:
    """A Cartesia `error` message as our error family (401 → authentication, 429 → rate limit)."""
    status = getattr(event, "status_code", None) or 0
    title = getattr(event, "title", None) or "error"
    message = getattr(event, "message", None) or ""
    code = {
        401: ErrorCode.AUTHENTICATION_FAILED,
        403: ErrorCode.AUTHORIZATION_FAILED,
        429: ErrorCode.RATE_LIMIT_EXCEEDED,
    }.get(status, ErrorCode.PIPELINE_ERROR)
    detail = f"cartesia {title}: {message}".strip().rstrip(":")
    return BackendError(op, code, detail, details={"status_code": status})


def connection_error(op: str, exc: BaseException) -> BackendError:
    """A refused or dropped connection: retryable, per the session's max_retries/retry_delay."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return BackendError(
            op, ErrorCode.AUTHENTICATION_FAILED, f"cartesia refused the key ({status})"
        )
    return BackendError(
        op,
        ErrorCode.CONNECTION_FAILED,
        f"cartesia connection failed: {type(exc).__name__}",
        details=retry_after_details(exc),
    )
