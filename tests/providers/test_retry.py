"""The one retry loop (`providers.retry.call_with_retry`): jittered backoff, Retry-After, only
retryable errors, per-attempt timeouts. Waits go to a fake sleep: nothing depends on wall time."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import httpx
import pytest

from backend.errors import BackendError, ErrorCode, as_backend_error
from backend.retry_after import retry_after_s
from providers.retry import RetryPolicy, call_with_retry, retry_after_details


class FakeSleep:
    """Records the waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def failing(errors: list[BaseException], result: str = "ok") -> Callable[[], Awaitable[str]]:
    """A call that raises `errors` one by one, then returns `result`; counts its calls."""
    calls = {"n": 0}

    async def fn() -> str:
        calls["n"] += 1
        if errors:
            raise errors.pop(0)
        return result

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def dropped(**details: object) -> BackendError:
    return BackendError("x", ErrorCode.CONNECTION_FAILED, "dropped", details=dict(details))


POLICY = RetryPolicy(timeout_s=5.0, max_retries=3, retry_delay_s=1.0, max_delay_s=30.0)


async def test_retryable_errors_are_retried_with_jittered_exponential_backoff() -> None:
    sleep = FakeSleep()
    fn = failing([dropped(), dropped(), dropped()])
    assert await call_with_retry("x", fn, POLICY, sleep=sleep, rng=random.Random(1)) == "ok"
    assert fn.calls["n"] == 4  # type: ignore[attr-defined]
    assert len(sleep.waits) == 3
    for attempt, wait in enumerate(sleep.waits):  # full jitter: anywhere up to the ceiling
        assert 0.0 <= wait <= POLICY.retry_delay_s * 2**attempt


async def test_jitter_spreads_the_retries_of_callers_that_failed_together() -> None:
    rng = random.Random(7)
    firsts = []
    for _ in range(200):  # 200 callers hit by the same outage
        sleep = FakeSleep()
        await call_with_retry("x", failing([dropped()]), POLICY, sleep=sleep, rng=rng)
        firsts.append(sleep.waits[0])
    assert all(0.0 <= w <= POLICY.retry_delay_s for w in firsts)
    assert len({round(w, 3) for w in firsts}) > 150  # not in step
    spread = sorted(firsts)
    assert spread[20] < 0.25 and spread[-20] > 0.75  # across the whole window


def test_the_backoff_ceiling_grows_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(retry_delay_s=0.5, max_delay_s=3.0)
    assert [policy.backoff_ceiling(a) for a in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_a_servers_retry_after_is_honoured() -> None:
    sleep = FakeSleep()
    fn = failing([dropped(retry_after_s=7.0), dropped(retry_after_s=2.5)])
    await call_with_retry("x", fn, POLICY, sleep=sleep, rng=random.Random(3))
    assert 7.0 <= sleep.waits[0] <= 7.0 + 1.0  # never sooner; jitter on top, up to the ceiling
    assert 2.5 <= sleep.waits[1] <= 2.5 + 2.0


async def test_a_retry_after_beyond_the_bound_ends_the_retries() -> None:
    sleep = FakeSleep()
    fn = failing([dropped(retry_after_s=120.0)])
    with pytest.raises(BackendError) as info:
        await call_with_retry("x", fn, POLICY, sleep=sleep)
    assert info.value.details["retry_after_s"] == 120.0  # the caller can pass it on
    assert sleep.waits == [] and fn.calls["n"] == 1  # type: ignore[attr-defined]


async def test_a_wait_with_retry_after_never_passes_the_bound() -> None:
    policy = RetryPolicy(max_retries=1, retry_delay_s=10.0, max_delay_s=12.0)
    for seed in range(20):
        sleep = FakeSleep()
        fn = failing([dropped(retry_after_s=11.0)])
        await call_with_retry("x", fn, policy, sleep=sleep, rng=random.Random(seed))
        assert 11.0 <= sleep.waits[0] <= 12.0


@pytest.mark.parametrize(
    "code", [ErrorCode.INVALID_CONFIG, ErrorCode.AUTHENTICATION_FAILED, ErrorCode.PIPELINE_ERROR]
)
async def test_errors_not_marked_retryable_are_raised_at_once(code: ErrorCode) -> None:
    sleep = FakeSleep()
    fn = failing([BackendError("x", code, "no")])
    with pytest.raises(BackendError) as info:
        await call_with_retry("x", fn, POLICY, sleep=sleep)
    assert info.value.code is code
    assert fn.calls["n"] == 1 and sleep.waits == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "code",
    [ErrorCode.CONNECTION_TIMEOUT, ErrorCode.RATE_LIMIT_EXCEEDED, ErrorCode.CONNECTION_FAILED],
)
async def test_the_retryable_codes_are_retried_max_retries_times(code: ErrorCode) -> None:
    sleep = FakeSleep()
    fn = failing([BackendError("x", code, "busy") for _ in range(10)])
    with pytest.raises(BackendError) as info:
        await call_with_retry("x", fn, RetryPolicy(max_retries=2), sleep=sleep)
    assert info.value.code is code
    assert fn.calls["n"] == 3 and len(sleep.waits) == 2  # type: ignore[attr-defined]


async def test_other_exceptions_pass_through_untouched() -> None:
    fn = failing([KeyError("bug")])
    with pytest.raises(KeyError):
        await call_with_retry("x", fn, POLICY, sleep=FakeSleep())


async def test_an_attempt_that_outlives_the_timeout_fails_with_timeout_and_is_final() -> None:
    calls = 0

    async def hang() -> str:
        nonlocal calls
        calls += 1
        await asyncio.Event().wait()
        return "never"

    policy = RetryPolicy(timeout_s=0.01, max_retries=3)
    with pytest.raises(BackendError) as info:
        await call_with_retry("stt.finish", hang, policy, sleep=FakeSleep())
    assert info.value.code is ErrorCode.TIMEOUT and "no answer within 0.01 s" in info.value.message
    assert calls == 1


async def test_a_timeout_marked_repeatable_is_retried() -> None:
    calls = 0

    async def slow_then_fast() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()
        return "ok"

    sleep = FakeSleep()
    policy = RetryPolicy(timeout_s=0.01, max_retries=1)
    got = await call_with_retry(
        "x", slow_then_fast, policy, timeout_code=ErrorCode.CONNECTION_TIMEOUT, sleep=sleep
    )
    assert got == "ok" and calls == 2 and len(sleep.waits) == 1


async def test_after_a_failure_the_loop_waits_first_and_makes_max_retries_attempts() -> None:
    lost = dropped()
    sleep = FakeSleep()
    fn = failing([dropped(), dropped()])
    with pytest.raises(BackendError):
        await call_with_retry("x", fn, RetryPolicy(max_retries=2), after_failure=lost, sleep=sleep)
    assert fn.calls["n"] == 2 and len(sleep.waits) == 2  # type: ignore[attr-defined]
    with pytest.raises(BackendError) as info:  # no retries allowed: the failure itself
        await call_with_retry("x", fn, RetryPolicy(max_retries=0), after_failure=lost)
    assert info.value is lost


def test_retry_after_headers_parse_seconds_milliseconds_and_dates() -> None:
    assert retry_after_s({"Retry-After": "3"}) == 3.0
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_s({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480) == 10
    assert retry_after_s({"Retry-After": "soon"}) is None
    assert retry_after_s({"Retry-After": "-1"}) is None
    assert retry_after_s({}) is None and retry_after_s(None) is None


def test_hosted_providers_carry_retry_after_from_an_http_answer() -> None:
    resp = httpx.Response(429, headers={"Retry-After": "4"})
    assert retry_after_details(resp, status=429) == {"status": 429, "retry_after_s": 4.0}
    assert retry_after_details(httpx.Response(503), status=503) == {"status": 503}


def test_openai_sdk_errors_carry_the_servers_retry_after() -> None:
    import openai

    from providers.openai.config import openai_error

    request = httpx.Request("POST", "https://api.openai.test/v1/audio/speech")
    for status, code in ((429, ErrorCode.RATE_LIMIT_EXCEEDED), (503, ErrorCode.CONNECTION_FAILED)):
        resp = httpx.Response(status, headers={"retry-after": "2"}, request=request)
        exc = (openai.RateLimitError if status == 429 else openai.InternalServerError)(
            "busy", response=resp, body=None
        )
        err = openai_error("openai.tts", exc)
        assert err.code is code and err.retryable and err.details["retry_after_s"] == 2.0


def test_one_mapping_of_generic_failures() -> None:
    err = BackendError("a", ErrorCode.AGENT_ERROR, "x")
    assert as_backend_error("b", err) is err
    assert as_backend_error("b", TimeoutError()).code is ErrorCode.TIMEOUT
    repeatable = as_backend_error("b", TimeoutError(), timeout_code=ErrorCode.CONNECTION_TIMEOUT)
    assert repeatable.code is ErrorCode.CONNECTION_TIMEOUT and repeatable.retryable
    other = as_backend_error("b", ValueError("bad"))
    assert other.code is ErrorCode.PIPELINE_ERROR and other.message == "ValueError: bad"
