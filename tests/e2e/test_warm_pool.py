"""The warm pool: sessions start on idle, loaded workers; workers are reused, isolated between
sessions, recycled; a cold start is the fallback; capacity is exposed for autoscaling."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import httpx
import pytest

from backend.errors import BackendError, ErrorCode
from backend.iface import SessionConfig
from tests.conftest import TEST_SLOTS, make_config, wait_for, worker_actor_names

pytestmark = pytest.mark.ray


def echo(user: str) -> SessionConfig:
    return SessionConfig(user_id=user, agent={"type": "echo"})


async def idle_workers(backend: Any, n: int) -> bool:
    return (await backend.capacity())["warm_pool"]["idle"] == n


async def one_idle_worker(backend: Any) -> list[str]:
    """The pool's one worker, once it is all there is (spares above target go after 30 s)."""
    names = [n for n in worker_actor_names() if "/" not in n]
    return names if len(names) == 1 and await idle_workers(backend, 1) else []


async def test_sessions_take_warm_workers_which_are_reused_but_never_shared(
    backend: Any, hello_16k: bytes
) -> None:
    await backend.update_config(make_config(warm_pool_size=1))
    assert await wait_for(lambda: one_idle_worker(backend), timeout_s=90)
    first = await backend.create_session(echo("pool-1"))
    assert first.info["warm_start"] is True
    worker = first.info["worker"]
    await first.stop()

    # Returned to the pool, the same (oldest) worker serves the next session.
    second = await backend.create_session(echo("pool-2"))
    assert second.info["warm_start"] is True
    served = first.info["sessions_served"]  # the shared backend's workers may have served before
    assert second.info["worker"] == worker and second.info["sessions_served"] == served + 1
    # A handle kept from the first session can never reach the second one.
    with pytest.raises(BackendError) as stale:
        await first.process_audio(hello_16k)
    assert stale.value.code is ErrorCode.SESSION_NOT_ACTIVE
    with pytest.raises(BackendError):
        await first.update_metadata({"leak": True})
    info = await second.get_info()
    assert info["audio_bytes_in"] == 0 and "leak" not in info["metadata"]
    # ...and the reused worker still talks.
    await second.process_audio(hello_16k + bytes(32000))
    async with asyncio.timeout(60):
        async for event in second.events():
            if event["type"] == "agent_reply":
                assert "hello" in event["text"].lower()
                break
    await second.stop()


async def test_workers_are_recycled_after_max_sessions_and_past_the_memory_bound(
    backend: Any,
) -> None:
    await backend.update_config(make_config(warm_pool_size=1, worker_max_sessions=1))
    assert await wait_for(lambda: idle_workers(backend, 1), timeout_s=60)
    sess = await backend.create_session(echo("recycle-n"))
    worker = sess.info["worker"]
    await sess.stop()
    assert await wait_for(lambda: _gone(worker)), worker_actor_names()

    await backend.update_config(make_config(warm_pool_size=1, worker_max_memory_mb=1))
    assert await wait_for(lambda: idle_workers(backend, 1), timeout_s=60)
    sess = await backend.create_session(echo("recycle-mem"))
    worker = sess.info["worker"]
    await sess.stop()
    assert await wait_for(lambda: _gone(worker)), worker_actor_names()
    assert (await backend.capacity())["warm_pool"]["recycled"] >= 2


async def _gone(worker: str) -> bool:
    return not [n for n in worker_actor_names() if n.startswith(worker)]


async def test_a_warm_worker_killed_as_it_is_taken_costs_the_caller_nothing(
    backend: Any,
) -> None:
    import ray

    import serve_app

    await backend.update_config(make_config(warm_pool_size=1))
    (name,) = await wait_for(lambda: one_idle_worker(backend), timeout_s=90)
    worker = ray.get_actor(name, namespace=serve_app.NAMESPACE)
    os.kill((await worker.describe.remote())["pid"], signal.SIGKILL)
    # At once, before the registry's pings can notice: the dead spare is handed out, fails to
    # start the session, and another worker (here a cold start) serves it instead.
    sess = await backend.create_session(echo("after-a-dead-spare"))
    assert sess.info["worker"] != name
    assert (await sess.get_info())["state"] in ("idle", "listening")
    await sess.stop()


async def test_without_a_warm_worker_a_session_starts_cold(backend: Any) -> None:
    await backend.update_config(make_config(warm_pool_size=0))
    assert await wait_for(lambda: idle_workers(backend, 0))
    assert await wait_for(lambda: _no_workers())
    sess = await backend.create_session(echo("cold"))
    assert sess.info["warm_start"] is False
    info = (await backend.get_session(sess.id)).info
    assert {info["stages"]["stt"]["node_id"], info["stages"]["tts"]["node_id"]} == {info["node_id"]}
    await sess.stop()
    assert await wait_for(lambda: _no_workers()), worker_actor_names()  # no pool: not kept


async def _no_workers() -> bool:
    return not worker_actor_names()


async def test_capacity_reports_sessions_free_slots_and_the_pool(
    backend: Any, base_url: str
) -> None:
    await backend.update_config(make_config(warm_pool_size=2))
    assert await wait_for(lambda: idle_workers(backend, 2), timeout_s=60)
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        before = (await http.get("/v1/capacity")).json()
        assert before["session_slots"] == TEST_SLOTS and before["active_sessions"] == 0
        assert before["warm_pool"]["idle"] == 2 and len(before["nodes"]) == 1
        created = (await http.post("/v1/sessions", json={"user_id": "cap"})).json()
        after = (await http.get("/v1/capacity")).json()
        assert after["active_sessions"] == 1
        assert after["free_slots"] == before["free_slots"] - 1
        node = after["nodes"][created["node_id"]]
        assert node["sessions"] == 1 and node["slots"] == TEST_SLOTS
        health = (await http.get("/v1/health")).json()["details"]
        assert health["free_slots"] == after["free_slots"] and health["warm_pool_size"] == 2
        await http.delete(f"/v1/sessions/{created['session_id']}")
