"""Churn: 100 sessions created, spoken to and closed by 10 concurrent clients under a cap of 5."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from backend.errors import BackendError, ErrorCode
from backend.http_client import HttpClient
from tests.conftest import make_config, only_warm_pool_left, wait_for, worker_actor_names

pytestmark = pytest.mark.ray

SESSIONS, CLIENTS, CAP = 100, 10, 5


async def test_churn_under_cap(backend: Any, base_url: str, hello_16k: bytes) -> None:
    await backend.update_config(make_config(max_concurrent_sessions=CAP))
    ids: list[str] = []
    live = 0
    peak = 0
    refusals = 0
    heard = 0
    todo = iter(range(SESSIONS))

    async def client(n: int) -> None:
        nonlocal live, peak, refusals, heard
        async with HttpClient(base_url, timeout_s=120) as http:
            for i in todo:
                while True:
                    try:
                        session = await http.create_session(user_id=f"churn-{n}-{i}")
                        break
                    except BackendError as err:
                        assert err.code is ErrorCode.SESSION_LIMIT_EXCEEDED, err
                        refusals += 1
                        await asyncio.sleep(0.2)
                live += 1
                peak = max(peak, live)
                ids.append(session["session_id"])
                try:
                    result = await http.talk(
                        session,
                        hello_16k,
                        16000,
                        realtime=False,
                        trailing_silence_s=1.0,
                        timeout_s=120,
                    )
                    heard += any("hello" in t.lower() for t in result.transcripts)
                finally:
                    live -= 1  # counted down before the close: the cap holds on the server side
                    await http.close_session(session["session_id"])

    async def watch_cap() -> None:
        while True:
            health = await backend.health_check()
            assert health.details["active_sessions"] <= CAP
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch_cap())
    try:
        await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    finally:
        watcher.cancel()
    assert len(ids) == SESSIONS and len(set(ids)) == SESSIONS
    assert peak <= CAP
    assert refusals > 0, "10 clients against a cap of 5 must have been refused sometimes"
    assert heard >= SESSIONS * 0.95, f"only {heard} of {SESSIONS} calls were understood"
    assert (await backend.health_check()).details["active_sessions"] == 0
    assert await wait_for(only_warm_pool_left, timeout_s=30), worker_actor_names()
