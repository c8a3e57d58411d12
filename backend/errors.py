"""One exception family with the seed's error codes, so Beluga-style error handling carries over."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

DEFAULT_RETRY_AFTER_S = 1  # `Retry-After` of a refusal that does not say


class ErrorCode(StrEnum):
    INVALID_CONFIG = "invalid_config"
    PROVIDER_NOT_FOUND = "provider_not_found"
    CONNECTION_FAILED = "connection_failed"
    CONNECTION_TIMEOUT = "connection_timeout"
    SESSION_NOT_FOUND = "session_not_found"
    SESSION_LIMIT_EXCEEDED = "session_limit_exceeded"
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    AUTHENTICATION_FAILED = "authentication_failed"
    AUTHORIZATION_FAILED = "authorization_failed"
    PIPELINE_ERROR = "pipeline_error"
    AGENT_ERROR = "agent_error"
    TIMEOUT = "timeout"
    CONTEXT_CANCELED = "context_canceled"
    INVALID_FORMAT = "invalid_format"
    CONVERSION_FAILED = "conversion_failed"
    SESSION_ALREADY_ACTIVE = "session_already_active"
    SESSION_NOT_ACTIVE = "session_not_active"


RETRYABLE_CODES = frozenset(
    {ErrorCode.CONNECTION_TIMEOUT, ErrorCode.RATE_LIMIT_EXCEEDED, ErrorCode.CONNECTION_FAILED}
)

# HTTP status for each code; anything unlisted is a 400 (the client's request was wrong).
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_CONFIG: 422,
    ErrorCode.INVALID_FORMAT: 422,
    ErrorCode.PROVIDER_NOT_FOUND: 422,
    ErrorCode.SESSION_NOT_FOUND: 404,
    ErrorCode.SESSION_LIMIT_EXCEEDED: 503,
    ErrorCode.RATE_LIMIT_EXCEEDED: 429,
    ErrorCode.AUTHENTICATION_FAILED: 401,
    ErrorCode.AUTHORIZATION_FAILED: 403,
    ErrorCode.CONNECTION_FAILED: 502,
    ErrorCode.CONNECTION_TIMEOUT: 504,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.PIPELINE_ERROR: 502,
    ErrorCode.AGENT_ERROR: 502,
    ErrorCode.SESSION_ALREADY_ACTIVE: 409,
    ErrorCode.SESSION_NOT_ACTIVE: 409,
}


class BackendError(Exception):
    """`op`: what was being done; `code`: one of `ErrorCode`; `field`: the offending input."""

    def __init__(
        self,
        op: str,
        code: ErrorCode | str,
        message: str,
        *,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.op = op
        self.code = ErrorCode(code)
        self.message = message
        self.field = field
        self.details = details or {}
        super().__init__(f"{op}: {self.code.value}: {message}")

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 400)

    @property
    def retry_after_s(self) -> float | None:
        """When a refused caller (429, 503) may come back: what the refusal says, else
        `DEFAULT_RETRY_AFTER_S`; None for errors that a retry would not cure."""
        if self.http_status not in (429, 503):
            return None
        return self.details.get("retry_after_s", DEFAULT_RETRY_AFTER_S)

    def to_body(self) -> dict[str, Any]:
        """The wire shape shared by every HTTP error and websocket `error` event."""
        err: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.field:
            err["field"] = self.field
        return {"error": err}

    @classmethod
    def from_body(cls, op: str, body: dict[str, Any]) -> BackendError:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        code = err.get("code", ErrorCode.PIPELINE_ERROR.value)
        try:
            code = ErrorCode(code)
        except ValueError:
            code = ErrorCode.PIPELINE_ERROR
        details = body.get("details") if isinstance(body, dict) else None
        return cls(
            op,
            code,
            str(err.get("message", "")),
            field=err.get("field"),
            details=dict(details) if isinstance(details, dict) else None,
        )

    def __reduce__(self):  # keep the fields when Ray pickles the error across processes
        return (_rebuild, (self.op, self.code.value, self.message, self.field, self.details))


def _rebuild(op: str, code: str, message: str, field: str | None, details: dict) -> BackendError:
    return BackendError(op, code, message, field=field, details=details)


def as_backend_error(
    op: str, exc: BaseException, *, timeout_code: ErrorCode = ErrorCode.TIMEOUT
) -> BackendError:
    """The one mapping of any failure to the family: a `BackendError` stays itself, a timeout
    becomes `timeout_code` (`CONNECTION_TIMEOUT` where the call may be repeated), anything else a
    `pipeline_error` naming its type. Provider and Ray wrappers map their own exception types
    first, then call this."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, TimeoutError):
        return BackendError(op, timeout_code, "no answer in time")
    return BackendError(op, ErrorCode.PIPELINE_ERROR, f"{type(exc).__name__}: {exc}")
