"""Options of the OpenAI stage providers (from `Config.stage_provider_config`), validated with
pydantic so that a misspelt or mistyped key is an `invalid_config` error naming it; the API key
is a `SecretStr`, so it never shows in a repr, a log line or an error. Also the one mapping from
SDK and websocket failures to the project's error codes."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import openai
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from backend.errors import BackendError, ErrorCode, as_backend_error
from providers.retry import RetryPolicy, retry_after_details


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr | None = None  # None: the SDK reads OPENAI_API_KEY
    base_url: str | None = None  # e.g. https://api.openai.com/v1 (the SDK's default)
    organization: str | None = None
    project: str | None = None

    def client(self, *, timeout_s: float, websocket_base_url: str | None = None) -> Any:
        try:
            return openai.AsyncOpenAI(
                api_key=self.api_key.get_secret_value() if self.api_key else None,
                base_url=self.base_url,
                websocket_base_url=websocket_base_url,
                organization=self.organization,
                project=self.project,
                timeout=timeout_s,
                max_retries=0,  # retries are ours (providers.retry), counted once
            )
        except openai.OpenAIError as exc:  # no key given and none in the environment
            raise BackendError(
                "openai.config", ErrorCode.INVALID_CONFIG, str(exc), field="api_key"
            ) from None


T = TypeVar("T", bound=_Options)


class RealtimeOptions(_Options):
    """`stage_provider_config["openai_realtime"]`."""

    websocket_base_url: str | None = None  # default: base_url with ws(s)://
    model: str = "gpt-realtime"
    voice: str = "marin"
    instructions: str | None = None  # overrides the session's instructions when set
    turn_detection: Literal["server_vad", "semantic_vad"] | None = None  # None: the session's
    vad_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    transcription_model: str | None = "gpt-4o-mini-transcribe"  # None: no user transcripts
    # The service ends a session after 60 minutes; rotate to a fresh one, carrying the
    # conversation, before that happens (at the first quiet moment after this age).
    max_session_s: float = Field(default=55 * 60.0, gt=0)


class AudioOptions(_Options):
    """`stage_provider_config["openai"]`, shared by the `openai` STT and TTS stage providers."""

    stt_model: str = "gpt-4o-mini-transcribe"
    language: str | None = None  # ISO-639-1, e.g. "en"; None: detected
    prompt: str | None = None
    tts_model: str = "gpt-4o-mini-tts"
    voice: str = "alloy"
    instructions: str | None = None  # speaking style, for gpt-4o-mini-tts
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    # TTS requests are retried here (before the first audio only, so nothing is said twice);
    # STT uploads are retried by the pipeline with the backend's own policy.
    timeout: float = Field(default=30.0, ge=1.0, le=300.0)
    max_retries: int = Field(default=3, ge=0, le=10)
    retry_delay: float = Field(default=1.0, ge=0.1, le=30.0)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            timeout_s=self.timeout, max_retries=self.max_retries, retry_delay_s=self.retry_delay
        )


def parse_options(model: type[T], provider: str, values: dict[str, Any]) -> T:
    try:
        return model(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err.get("loc", ()))
        field = f"stage_provider_config.{provider}.{key}"
        raise BackendError(
            f"{provider}.config",
            ErrorCode.INVALID_CONFIG,
            f"{field}: {err.get('msg')}",
            field=field,
        ) from None


def openai_error(op: str, exc: BaseException, service: str = "OpenAI") -> BackendError:
    """An SDK, HTTP or websocket failure as one of the seed's codes; never echoes the key. A 429
    or 5xx carries the server's Retry-After (`details["retry_after_s"]`) for the retry loop.
    `service` names the server in messages (any OpenAI-compatible one may answer)."""
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, openai.AuthenticationError):
        return BackendError(op, ErrorCode.AUTHENTICATION_FAILED, f"{service} refused the API key")
    if isinstance(exc, openai.PermissionDeniedError):
        return BackendError(op, ErrorCode.AUTHORIZATION_FAILED, "the API key may not do this")
    if isinstance(exc, openai.RateLimitError):
        return BackendError(
            op,
            ErrorCode.RATE_LIMIT_EXCEEDED,
            f"rate limited by {service}",
            details=retry_after_details(exc, status=exc.status_code),
        )
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return BackendError(op, ErrorCode.CONNECTION_TIMEOUT, f"{service} did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return BackendError(op, ErrorCode.CONNECTION_FAILED, f"cannot reach {service}")
    if isinstance(exc, openai.APIStatusError):
        code = ErrorCode.CONNECTION_FAILED if exc.status_code >= 500 else ErrorCode.PIPELINE_ERROR
        return BackendError(
            op,
            code,
            f"{service} answered {exc.status_code}: {_api_message(exc)}",
            details=retry_after_details(exc, status=exc.status_code),
        )
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        code = {
            401: ErrorCode.AUTHENTICATION_FAILED,
            403: ErrorCode.AUTHORIZATION_FAILED,
            429: ErrorCode.RATE_LIMIT_EXCEEDED,
        }.get(status, ErrorCode.CONNECTION_FAILED if status >= 500 else ErrorCode.PIPELINE_ERROR)
        return BackendError(
            op,
            code,
            f"{service} refused the websocket (HTTP {status})",
            details=retry_after_details(exc.response, status=status),
        )
    if isinstance(exc, OSError | InvalidHandshake | ConnectionClosed):
        return BackendError(op, ErrorCode.CONNECTION_FAILED, f"cannot reach {service}: {exc}")
    return as_backend_error(op, exc, timeout_code=ErrorCode.CONNECTION_TIMEOUT)


def _api_message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    err = body.get("error", body)
    return str(err.get("message", "")) if isinstance(err, dict) else ""


# Error codes of Realtime `error` events → ours.
REALTIME_ERROR_CODES: dict[str, ErrorCode] = {
    "invalid_api_key": ErrorCode.AUTHENTICATION_FAILED,
    "rate_limit_exceeded": ErrorCode.RATE_LIMIT_EXCEEDED,
    "insufficient_quota": ErrorCode.RATE_LIMIT_EXCEEDED,
}
