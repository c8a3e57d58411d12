"""The security hooks (`auth_hook`, `rate_limiter`, `data_retention_hook`; backend/auth.py) on
their way through the cluster: cloudpickled by the client that gives them (as agent callbacks
are), kept by the registry as opaque bytes, and loaded only in the process that runs each one —
the auth hook in every ingress replica, the rate limiter in the registry (one limiter for the
cluster), the retention hook in each session's actor when the session ends."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from ray import cloudpickle

from backend.auth import TokenBucket
from backend.errors import BackendError, ErrorCode

log = logging.getLogger(__name__)

HOOK_NAMES = ("auth_hook", "rate_limiter", "data_retention_hook")


def pack_hooks(**hooks: Any) -> dict[str, bytes]:
    """User callables, cloudpickled where they are given (as agent callbacks are), so the
    registry keeps them as opaque bytes and each process that needs one loads it itself."""
    unknown = set(hooks) - set(HOOK_NAMES)
    if unknown:
        raise BackendError("hooks", ErrorCode.INVALID_CONFIG, f"unknown hooks: {sorted(unknown)}")
    for name in ("auth_hook", "data_retention_hook"):
        if hooks.get(name) is not None and not callable(hooks[name]):
            raise BackendError("hooks", ErrorCode.INVALID_CONFIG, f"{name}: must be callable")
    limiter = hooks.get("rate_limiter")
    if limiter is not None and not callable(getattr(limiter, "allow", None)):
        raise BackendError(
            "hooks", ErrorCode.INVALID_CONFIG, "rate_limiter: needs an allow(key) method"
        )
    return {k: cloudpickle.dumps(v) for k, v in hooks.items() if v is not None}


def load_hook(blob: bytes | None) -> Any:
    if blob is None:
        return None
    return cloudpickle.loads(blob)


class SecurityState:
    """The registry's part: the packed hooks (with a revision replicas compare against) and the
    one rate limiter of the cluster (a user's own, or a `TokenBucket` from the config)."""

    def __init__(self) -> None:
        self.hooks: dict[str, bytes] = {}
        self.hooks_rev = 0
        self._custom: Any = None
        self._bucket: TokenBucket | None = None

    def set_hooks(self, hooks: dict[str, bytes]) -> int:
        self.hooks = dict(hooks)
        self.hooks_rev += 1
        self._custom = load_hook(self.hooks.get("rate_limiter"))
        return self.hooks_rev

    def limiter(self, rate_per_min: float) -> Any:
        if self._custom is not None:
            return self._custom
        if not rate_per_min:
            self._bucket = None
            return None
        if self._bucket is None or self._bucket.rate_per_s != rate_per_min / 60.0:
            self._bucket = TokenBucket(rate_per_min)
        return self._bucket


async def run_retention_hook(blob: bytes | None, record: dict[str, Any], timeout_s: float) -> bool:
    """Hand a closed session's record to the user's hook; a failing hook is logged (by type,
    never its message, which may quote the data) and never fails the close."""
    if blob is None:
        return False
    try:
        hook = load_hook(blob)
        async with asyncio.timeout(timeout_s):
            result = hook(record)
            if inspect.isawaitable(result):
                await result
        return True
    except Exception as exc:
        log.warning(
            "data_retention_hook failed for session %s: %s",
            record.get("session_id"),
            type(exc).__name__,
        )
        return False
