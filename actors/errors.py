"""Errors crossing Ray calls: Ray wraps what an actor raised; callers want the BackendError."""

from __future__ import annotations

from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from backend.errors import BackendError, ErrorCode


def as_backend_error(op: str, exc: BaseException) -> BackendError:
    cause = exc.cause if isinstance(exc, RayTaskError) else exc
    if isinstance(cause, BackendError):
        return BackendError(
            cause.op, cause.code, cause.message, field=cause.field, details=cause.details
        )
    if isinstance(exc, RayActorError):
        return BackendError(op, ErrorCode.SESSION_NOT_ACTIVE, "the session's actor has died")
    if isinstance(exc, TimeoutError | GetTimeoutError):
        return BackendError(op, ErrorCode.CONNECTION_TIMEOUT, "no answer in time")
    return BackendError(op, ErrorCode.PIPELINE_ERROR, f"{type(cause).__name__}: {cause}")
