"""A hosted provider that hangs or fails, behind a real loopback HTTP server that counts what it
receives: per-attempt timeouts and retries apply, and the circuit breaker stops the calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from backend.errors import BackendError, ErrorCode
from providers import resilience
from providers.agents import build_agent
from providers.base import AgentContext
from providers.resilience import BreakerSettings, CircuitBreaker
from providers.retry import RetryPolicy


class Endpoint:
    """A webhook agent's endpoint: `mode` is "ok", "500" or "hang"; `requests` counts calls."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "500":
            return web.Response(status=500, text="boom")
        return web.json_response({"reply": "fine"})

    async def serve(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/agent", self.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}/agent"
        return runner


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    ep = Endpoint()
    runner = await ep.serve()
    resilience.reset()
    yield ep
    resilience.reset()
    await runner.cleanup()


def ctx() -> AgentContext:
    return AgentContext("s", "u")


async def test_a_hanging_provider_is_timed_out_and_retried(endpoint: Endpoint) -> None:
    endpoint.mode = "hang"
    resilience.configure(
        RetryPolicy(timeout_s=0.3, max_retries=2, retry_delay_s=0.1), BreakerSettings(10, 60)
    )
    agent = build_agent(spec={"type": "webhook", "url": endpoint.url})
    with pytest.raises(BackendError) as err:
        await agent.reply("hi", ctx())
    assert err.value.code is ErrorCode.CONNECTION_TIMEOUT
    assert "no answer within 0.3 s" in err.value.message
    assert endpoint.requests == 3  # the first try and max_retries=2 more
    await agent.aclose()


async def test_the_breaker_stops_hammering_a_failing_provider_then_lets_it_back(
    endpoint: Endpoint,
) -> None:
    endpoint.mode = "500"
    changes: list[tuple[str, str]] = []
    resilience.configure(
        RetryPolicy(timeout_s=2.0, max_retries=1, retry_delay_s=0.1), BreakerSettings(4, 0.5)
    )
    resilience.on_change = lambda name, state: changes.append((name, state["state"]))
    agent = build_agent(spec={"type": "webhook", "url": endpoint.url})
    for _ in range(2):  # two turns, each tried twice: four failures in a row
        with pytest.raises(BackendError) as err:
            await agent.reply("hi", ctx())
        assert err.value.code is ErrorCode.AGENT_ERROR and "500" in err.value.message
    assert endpoint.requests == 4
    name = agent.breaker_name
    assert changes == [(name, "open")]

    for _ in range(10):  # open: refused at once, the provider sees nothing
        with pytest.raises(BackendError) as err:
            await agent.reply("hi", ctx())
        assert "circuit open" in err.value.message and name in err.value.message
    assert endpoint.requests == 4

    endpoint.mode = "ok"
    await asyncio.sleep(0.6)  # the configured cool-down: one trial call goes through
    assert await agent.reply("hi", ctx()) == "fine"
    assert endpoint.requests == 5
    assert changes == [(name, "open"), (name, "half_open"), (name, "closed")]
    await agent.aclose()


async def test_a_request_the_provider_refuses_is_not_a_provider_fault(endpoint: Endpoint) -> None:
    async def bad_request() -> None:
        raise BackendError("x", ErrorCode.INVALID_CONFIG, "bad key", details={"status": 400})

    resilience.configure(
        RetryPolicy(timeout_s=1.0, max_retries=3, retry_delay_s=0.1), BreakerSettings(1, 60)
    )
    for _ in range(3):
        with pytest.raises(BackendError):
            await resilience.guarded_call("x", "strict", bad_request)
    assert resilience.states()["strict"]["state"] == "closed"


def test_half_open_lets_one_trial_through_and_a_failure_reopens() -> None:
    now = [0.0]
    b = CircuitBreaker(
        "p", BreakerSettings(failure_threshold=2, reset_timeout_s=10), lambda: now[0]
    )
    b.failure()
    assert b.allow()
    b.failure()
    assert b.state == "open" and not b.allow()
    now[0] = 10.0
    assert b.allow() and b.state == "half_open"
    assert not b.allow()  # only one trial at a time
    b.failure()
    assert b.state == "open" and not b.allow()
    now[0] = 20.0
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow() and b.allow()
