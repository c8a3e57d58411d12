"""Errors crossing Ray calls: Ray wraps what an actor raised; callers want the BackendError.
Only Ray's own types are handled here; every other mapping is `backend.errors.as_backend_error`."""

from __future__ import annotations

from ray.exceptions import RayActorError, RayTaskError

from backend.errors import BackendError, ErrorCode
from backend.errors import as_backend_error as _as_backend_error


def as_backend_error(op: str, exc: BaseException) -> BackendError:
    cause = exc.cause if isinstance(exc, RayTaskError) else exc
    if isinstance(cause, BackendError):  # a copy: the one Ray deserialized keeps its traceback
        return BackendError(
            cause.op, cause.code, cause.message, field=cause.field, details=cause.details
        )
    if isinstance(exc, RayActorError):
        return BackendError(op, ErrorCode.SESSION_NOT_ACTIVE, "the session's actor has died")
    # A Ray call that timed out (GetTimeoutError is a TimeoutError) may be repeated.
    return _as_backend_error(op, cause, timeout_code=ErrorCode.CONNECTION_TIMEOUT)
