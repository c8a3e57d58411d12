"""The one retry loop for calls to providers and to the backend (`Config.timeout`, `max_retries`,
`retry_delay`): each attempt gets the timeout, only retryable errors are retried, with exponential
backoff and full jitter (so that after an outage every caller does not come back in step), never
sooner than a server's `Retry-After` (`BackendError.details["retry_after_s"]`).

It lives with the providers, which own the calls it guards; `backend.client` and the pipelines may
import providers (the import-linter contracts forbid that only to `backend.iface`,
`backend.errors` and `backend.http_client`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from backend.errors import BackendError, ErrorCode
from backend.retry_after import retry_after_s, valid_seconds

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    timeout_s: float | None = 30.0  # per attempt; None: the caller bounds the whole call
    max_retries: int = 3
    retry_delay_s: float = 1.0
    max_delay_s: float = 30.0  # the longest wait, a server's Retry-After included

    def backoff_ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt `attempt` (0-based): exponential, capped."""
        return min(self.retry_delay_s * (2**attempt), self.max_delay_s)

    def delay_for(
        self, attempt: int, err: BackendError | None = None, rng: random.Random | None = None
    ) -> float | None:
        """How long to wait before retrying after failed attempt `attempt`: full jitter, a random
        wait up to the backoff ceiling, added to the server's Retry-After if `err` carries one.
        None: the server asks for a longer wait than `max_delay_s`, so do not retry."""
        jitter = (rng or random).uniform(0.0, self.backoff_ceiling(attempt))
        after = retry_after_of(err)
        if after is None:
            return jitter
        if after > self.max_delay_s:
            return None
        return min(after + jitter, self.max_delay_s)


def retryable(err: BackendError) -> bool:
    """The default: only the codes `BackendError` marks retryable (backend/errors.py)."""
    return err.retryable


class Guard(Protocol):
    """What the loop tells a circuit breaker (`providers.resilience.CircuitBreaker`)."""

    name: str

    def check(self, op: str) -> None: ...  # raises when calls are not let through

    def success(self) -> None: ...

    def failure(self) -> None: ...


async def call_with_retry(
    op: str,
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    retry_if: Callable[[BackendError], bool] = retryable,
    timeout_code: ErrorCode = ErrorCode.TIMEOUT,
    after_failure: BackendError | None = None,
    guard: Guard | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> T:
    """`fn()` until it succeeds, fails with an error `retry_if` rejects, or `max_retries` retries
    are spent; the last error is raised.

    - `timeout_code`: the code of an attempt that outlives `timeout_s`; `CONNECTION_TIMEOUT`
      (retryable) where an attempt may safely be repeated, `TIMEOUT` (final) where not.
    - `after_failure`: a failure that already happened (a dropped connection): start with the
      backoff wait; at most `max_retries` attempts follow, and with none it is what is raised.
    - `guard`: checked before each attempt; told of each success, and of each failure that
      `retry_if` counts (a refused request means the provider is up).
    - `sleep`, `rng`: for tests (a fake clock, a seeded jitter).
    """
    attempt = 0
    err = after_failure
    while True:
        if err is not None:
            if attempt >= policy.max_retries or not retry_if(err):
                raise err
            wait = policy.delay_for(attempt, err, rng)
            if wait is None:  # the server wants more time than we may wait
                raise err
            await sleep(wait)
            attempt += 1
        if guard is not None:
            guard.check(op)
        try:
            async with asyncio.timeout(policy.timeout_s):
                result = await fn()
        except TimeoutError:
            prefix = f"{guard.name}: " if guard is not None else ""
            err = BackendError(op, timeout_code, f"{prefix}no answer within {policy.timeout_s:g} s")
        except BackendError as exc:
            err = exc
        else:
            if guard is not None:
                guard.success()
            return result
        if guard is not None:
            if retry_if(err):
                guard.failure()
            else:
                guard.success()  # it answered: our request was wrong, the provider is up


def retry_after_details(source: Any, **details: Any) -> dict[str, Any]:
    """`details` plus `retry_after_s` when `source` (an HTTP response, an SDK error carrying one
    as `.response`, or its headers) says Retry-After: what hosted providers put in a
    `BackendError` so that `call_with_retry` waits as long as the server asked."""
    headers = getattr(source, "headers", None)
    if headers is None:
        response = getattr(source, "response", None)
        headers = getattr(response, "headers", None)
    if headers is None and isinstance(source, Mapping):
        headers = source
    try:
        after = retry_after_s(headers)
    except Exception:  # an SDK's odd header object must never hide the error itself
        after = None
    if after is not None:
        details["retry_after_s"] = after
    return details


def retry_after_of(err: BackendError | None) -> float | None:
    if err is None:
        return None
    try:
        after = float(err.details.get("retry_after_s"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return valid_seconds(after)
