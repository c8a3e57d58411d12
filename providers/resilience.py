"""Calls to hosted providers that hang or fail: per-attempt timeout, retries with backoff, and a
circuit breaker so that a provider that keeps failing is left alone for a while.

Breaker states: closed (calls go through) → open after `failure_threshold` failed attempts in a
row (calls fail at once, the provider sees nothing) → half-open once `reset_timeout_s` has
passed (one trial call goes through: success closes it, failure opens it again).

Breakers are per process and per provider endpoint. A session worker serves one session at a
time, so the session configures them (`configure`) from its `Config`; whoever wants to hear
about state changes (the worker tells the registry, which turns health `degraded`) sets
`on_change`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from backend.errors import BackendError, ErrorCode
from providers.retry import RetryPolicy, call_with_retry

T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failure_threshold: int = 5
    reset_timeout_s: float = 30.0


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        settings: BreakerSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.settings = settings
        self._clock = clock
        self.state = CLOSED
        self.failures = 0  # failed attempts in a row
        self.opened_at = 0.0
        self._trial = False  # the half-open trial call is in flight

    def allow(self) -> bool:
        if self.state == OPEN and self._clock() - self.opened_at >= self.settings.reset_timeout_s:
            self._set(HALF_OPEN)
            self._trial = False
        if self.state == CLOSED:
            return True
        if self.state == HALF_OPEN and not self._trial:
            self._trial = True
            return True
        return False

    def check(self, op: str) -> None:
        if not self.allow():
            wait_s = max(0.0, self.settings.reset_timeout_s - (self._clock() - self.opened_at))
            raise BackendError(
                op,
                ErrorCode.CONNECTION_FAILED,
                f"{self.name}: circuit open after {self.failures} failures in a row; not "
                f"called again for {wait_s:.1f} s",
                details={"circuit": OPEN, "provider": self.name},
            )

    def success(self) -> None:
        self.failures, self._trial = 0, False
        self._set(CLOSED)

    def failure(self) -> None:
        self.failures += 1
        self._trial = False
        if self.state == HALF_OPEN or self.failures >= self.settings.failure_threshold:
            self.opened_at = self._clock()
            self._set(OPEN)

    def _set(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if on_change is not None:
                with contextlib.suppress(Exception):  # a listener must never break a call
                    on_change(self.name, self.describe())

    def describe(self) -> dict[str, Any]:
        return {"state": self.state, "failures": self.failures}


_breakers: dict[str, CircuitBreaker] = {}
_settings = BreakerSettings()
# Outside a session (a provider used on its own) a failed call is not retried: the caller
# decides. A session applies its Config's `timeout`, `max_retries`, `retry_delay`.
_policy = RetryPolicy(max_retries=0)
on_change: Callable[[str, dict[str, Any]], None] | None = None


def configure(policy: RetryPolicy, settings: BreakerSettings) -> None:
    global _policy, _settings
    _policy, _settings = policy, settings
    for b in _breakers.values():
        b.settings = settings


def reset() -> None:
    """Forget every breaker (listeners hear them close) and go back to the defaults: a worker
    between two sessions, since each session configures its own."""
    global on_change
    for b in _breakers.values():
        if b.state != CLOSED and on_change is not None:
            with contextlib.suppress(Exception):
                on_change(b.name, {"state": CLOSED, "failures": 0})
    _breakers.clear()
    on_change = None
    configure(RetryPolicy(max_retries=0), BreakerSettings())


def policy() -> RetryPolicy:
    return _policy


def breaker(name: str) -> CircuitBreaker:
    if name not in _breakers:
        _breakers[name] = CircuitBreaker(name, _settings)
    return _breakers[name]


def states() -> dict[str, dict[str, Any]]:
    return {name: b.describe() for name, b in _breakers.items()}


def _provider_fault(err: BackendError) -> bool:
    """A failure of the provider (down, overloaded, hanging), not of our request."""
    if err.details.get("circuit") == OPEN:
        return False  # our own breaker refused: the provider was not called
    status = int(err.details.get("status", 0) or 0)
    return err.retryable or err.code is ErrorCode.TIMEOUT or status >= 500 or status == 429


async def guarded_call(
    op: str, name: str, fn: Callable[[], Awaitable[T]], retry: RetryPolicy | None = None
) -> T:
    """`fn()` under the breaker `name`, through the one retry loop: each attempt has
    `timeout_s`; a provider fault is counted and retried; an open breaker fails at once
    without calling the provider (and is not retried)."""
    return await call_with_retry(
        op,
        fn,
        retry or _policy,
        retry_if=_provider_fault,
        timeout_code=ErrorCode.CONNECTION_TIMEOUT,
        guard=breaker(name),
    )
