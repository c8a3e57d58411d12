"""Timeout and retry policy for provider calls, owned in one place (`Config.timeout`,
`max_retries`, `retry_delay`): only retryable errors are retried, with exponential backoff."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from backend.errors import BackendError, ErrorCode

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    timeout_s: float = 30.0
    max_retries: int = 3
    retry_delay_s: float = 1.0
    max_delay_s: float = 30.0

    def delay_for(self, attempt: int) -> float:
        return min(self.retry_delay_s * (2**attempt), self.max_delay_s)


async def call_with_retry(op: str, fn: Callable[[], Awaitable[T]], policy: RetryPolicy) -> T:
    attempt = 0
    while True:
        try:
            async with asyncio.timeout(policy.timeout_s):
                return await fn()
        except TimeoutError:
            raise BackendError(
                op, ErrorCode.TIMEOUT, f"no answer within {policy.timeout_s:g} s"
            ) from None
        except BackendError as exc:
            if not exc.retryable or attempt >= policy.max_retries:
                raise
        await asyncio.sleep(policy.delay_for(attempt))
        attempt += 1
