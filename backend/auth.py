"""Who may do what: API keys and a pluggable `auth_hook` for the control plane, media tokens
for the audio, per-user quotas and a pluggable `rate_limiter` for admission, and the
`data_retention_hook` payload. Plain Python (no Ray, no web framework), so it is unit-tested alone.

API keys are stored as SHA-256 digests from the moment `Config` validates them: the key itself
never travels to the registry, a session actor, a log line or a config dump.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from backend.errors import BackendError, ErrorCode

DIGEST_PREFIX = "sha256:"
MIN_KEY_CHARS = 16


def key_digest(key: str) -> str:
    return DIGEST_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def is_digest(value: str) -> bool:
    hexpart = value.removeprefix(DIGEST_PREFIX)
    return (
        value.startswith(DIGEST_PREFIX)
        and len(hexpart) == 64
        and all(c in "0123456789abcdef" for c in hexpart)
    )


def parse_api_keys(value: Any) -> list[dict[str, Any]]:
    """Normalise every accepted spelling to [{"key_sha256", "user_id"}]:
    "k1=alice,k2" (the `VOICE_BACKEND_API_KEYS` form), ["k1", ...], {"k1": "alice"},
    [{"key": "k1", "user_id": "alice"}], or already-hashed {"key_sha256": ...} entries.
    A key without a user is a service key: it may act for any user. Errors never echo a key."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, Mapping):
        value = [{"key": k, "user_id": v} for k, v in value.items()]
    if not isinstance(value, list):
        raise ValueError('must be a list of keys, "key=user,key2" or {key: user}')
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(value):
        if isinstance(entry, str):
            key, _, user = entry.partition("=")
            entry = {"key": key, "user_id": user or None}
        if not isinstance(entry, Mapping):
            raise ValueError(f"entry {i}: must be a string or a mapping")
        user = entry.get("user_id") or None
        if user is not None and not isinstance(user, str):
            raise ValueError(f"entry {i}: user_id must be a string")
        if "key_sha256" in entry:
            digest = str(entry["key_sha256"])
            # "***": a config read back through get_config (digests masked); update_config
            # puts the running digest back in its place, and no presented key hashes to it.
            if not is_digest(digest) and digest != "***":
                raise ValueError(f"entry {i}: key_sha256 must be 'sha256:' and 64 hex digits")
        else:
            key = entry.get("key")
            if not isinstance(key, str) or len(key) < MIN_KEY_CHARS:
                raise ValueError(f"entry {i}: a key must be a string of {MIN_KEY_CHARS}+ chars")
            digest = key_digest(key)
        out.append({"key_sha256": digest, "user_id": user})
    return out


# -- control-plane authentication ------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    """What a request presents, given to an `auth_hook`."""

    api_key: str | None  # from `Authorization: Bearer <key>` or `X-API-Key`
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    method: str = "GET"
    path: str = "/"
    client_host: str | None = None


@dataclass(frozen=True)
class Principal:
    """Who is calling. `user_id` None: a service principal that may act for any user."""

    user_id: str | None
    name: str = ""  # for logs: never the key itself

    def may_act_for(self, user_id: str | None) -> bool:
        return self.user_id is None or self.user_id == user_id


OPEN = Principal(None, "open")  # no keys and no hook configured: the dev default

# An auth hook: credentials -> a Principal, a user id (str), or None/False to refuse; may be
# async and may raise BackendError (e.g. authorization_failed) itself.
AuthHook = Callable[[Credentials], Any]


def credentials_from(
    headers: Mapping[str, str], method: str, path: str, client_host: str | None
) -> Credentials:
    lower = {k.lower(): v for k, v in headers.items()}
    auth = lower.get("authorization", "")
    key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    key = key or lower.get("x-api-key", "").strip()
    return Credentials(key or None, lower, method, path, client_host)


def _refused(message: str) -> BackendError:
    return BackendError("auth", ErrorCode.AUTHENTICATION_FAILED, message)


async def authenticate(
    creds: Credentials, api_keys: list[dict[str, Any]], hook: AuthHook | None
) -> Principal:
    """The principal behind a request. A hook, if given, decides; else the configured keys;
    with neither, the API is open (`OPEN`)."""
    if hook is not None:
        try:
            result = hook(creds)
            if inspect.isawaitable(result):
                result = await result
        except BackendError:
            raise
        except Exception:  # the hook's own failure: refuse, and say nothing about why
            result = None
        if isinstance(result, Principal):
            return result
        if isinstance(result, str) and result:
            return Principal(result, "auth_hook")
        raise _refused("the request's credentials were refused")
    if not api_keys:
        return OPEN
    if not creds.api_key:
        raise _refused("an API key is required: send 'Authorization: Bearer <key>'")
    digest = key_digest(creds.api_key)
    for entry in api_keys:
        if hmac.compare_digest(digest, entry["key_sha256"]):
            return Principal(entry.get("user_id"), "key " + entry["key_sha256"][7:15])
    raise _refused("unknown API key")


def check_owner(principal: Principal, record: Mapping[str, Any], op: str) -> None:
    if not principal.may_act_for(record.get("user_id")):
        raise BackendError(
            op,
            ErrorCode.AUTHORIZATION_FAILED,
            f"session {record.get('session_id')} belongs to another user",
        )


def check_acting_user(principal: Principal, user_id: str, op: str) -> None:
    if not principal.may_act_for(user_id):
        raise BackendError(
            op,
            ErrorCode.AUTHORIZATION_FAILED,
            f"user_id: this API key acts for {principal.user_id!r}, not {user_id!r}",
            field="user_id",
        )


# -- media tokens ----------------------------------------------------------------------------
def check_media_token(
    record: Mapping[str, Any], token: str, op: str, now: float | None = None
) -> None:
    """A media token opens one session's audio (it is compared with that session's record
    only) and only until it expires; refusals say which, never what the right token is."""
    media = record.get("media") or {}
    expected = str(media.get("token") or "")
    if not token or not expected or not hmac.compare_digest(token, expected):
        raise BackendError(op, ErrorCode.AUTHENTICATION_FAILED, "token: missing or wrong")
    expires = media.get("token_expires_at")
    if expires is not None and (now or time.time()) >= float(expires):
        raise BackendError(op, ErrorCode.AUTHENTICATION_FAILED, "token: expired")


# -- admission: quotas and rate limits -------------------------------------------------------
def check_user_quota(records: Mapping[str, Mapping[str, Any]], user_id: str, limit: int) -> None:
    """`max_sessions_per_user` (0: unlimited), counted over the cluster's records."""
    if not limit:
        return
    active = sum(1 for r in records.values() if r.get("user_id") == user_id)
    if active >= limit:
        raise BackendError(
            "create_session",
            ErrorCode.RATE_LIMIT_EXCEEDED,
            f"user quota: user {user_id!r} has {active} of max_sessions_per_user={limit} "
            "sessions open; close one first",
            field="user_id",
            details={"retry_after_s": 1, "active_sessions": active, "limit": limit},
        )


@runtime_checkable
class RateLimiter(Protocol):
    """Beluga's `RateLimiter`: may `key` (a user id) do one more thing now? May be async.
    `retry_after(key)` (optional) tells a refused caller when to come back, in seconds."""

    def allow(self, key: str) -> bool | Awaitable[bool]: ...


class TokenBucket:
    """`rate_per_min` actions per minute per key, in bursts of up to `burst`."""

    def __init__(self, rate_per_min: float, burst: int | None = None) -> None:
        self.rate_per_s = rate_per_min / 60.0
        self.burst = float(burst or max(1, math.ceil(rate_per_min)))
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate_per_s)

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        tokens = self._level(key, now)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > 100_000:  # forget the oldest keys, not the process
            for k in list(self._buckets)[:10_000]:
                del self._buckets[k]
        return True

    def retry_after(self, key: str) -> float:
        missing = 1.0 - self._level(key, time.monotonic())
        return max(0.0, missing / self.rate_per_s) if self.rate_per_s else 0.0


async def check_rate(limiter: Any, user_id: str) -> None:
    if limiter is None:
        return
    allowed = limiter.allow(user_id)
    if inspect.isawaitable(allowed):
        allowed = await allowed
    if allowed:
        return
    retry = getattr(limiter, "retry_after", None)
    retry_s = max(1, math.ceil(float(retry(user_id)))) if callable(retry) else 1
    raise BackendError(
        "create_session",
        ErrorCode.RATE_LIMIT_EXCEEDED,
        f"rate limit: user {user_id!r} is creating sessions too fast; retry in {retry_s} s",
        field="user_id",
        details={"retry_after_s": retry_s},
    )


# -- data retention --------------------------------------------------------------------------
# Called with what a session held when it ended; sync or async. Runs in the session's actor.
DataRetentionHook = Callable[[dict[str, Any]], Any]


def retention_record(
    info: Mapping[str, Any], user_id: str, reason: str, *, retain_transcripts: bool
) -> dict[str, Any]:
    """What a `data_retention_hook` gets: the session's identity and counters, and its
    transcript only if `retain_transcripts` (audio is never recorded, so never kept)."""
    return {
        "session_id": info.get("session_id"),
        "user_id": user_id,
        "reason": reason,
        "ended_at": time.time(),
        "turns_completed": info.get("turns_completed", 0),
        "metadata": dict(info.get("metadata") or {}),
        "history": list(info.get("history") or []) if retain_transcripts else [],
        "transcripts_retained": retain_transcripts,
        "audio": None,
    }


def refuse_all(_: Credentials) -> None:
    """Stands in for an auth hook that could not be loaded: nobody gets in."""
    return None
