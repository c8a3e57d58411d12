"""The warm pool without Ray: spares per node, warm takes before cold starts, recycling, and a
pool that never crowds live calls (it starts one worker at a time where calls are live)."""

from __future__ import annotations

from actors.warm_pool import WarmPool
from tests.actors.pool_fixtures import Processes, make_pool, settle


async def test_a_session_takes_a_ready_spare_before_starting_a_process() -> None:
    procs = Processes()
    pool = make_pool(procs, {"n1": 4}, warm_pool_size=2, warm_pool_max_starting=2)
    assert pool.refill() == 2
    procs.gate.set()
    await settle()
    assert pool.summary()["idle"] == 2
    worker = pool.take("s1")
    assert worker is not None and worker.ready and pool.stats["warm_takes"] == 1
    assert len(procs.started) == 2  # no process started for the session


async def test_without_a_spare_the_session_gets_a_cold_start_not_an_error() -> None:
    procs = Processes()
    pool = make_pool(procs, {"n1": 4})
    worker = pool.take("s1")
    assert worker is not None and not worker.ready and pool.stats["cold_starts"] == 1
    assert procs.started == [(worker.name, "n1")]


async def test_no_slot_left_is_none_never_a_queue() -> None:
    pool = make_pool(Processes(), {"n1": 1})
    assert pool.take("s1") is not None
    assert pool.take("s2") is None


async def test_a_worker_is_recycled_after_max_sessions_and_kept_before() -> None:
    procs = Processes()
    pool = make_pool(procs, {"n1": 4}, worker_max_sessions=2, warm_pool_size=2)
    procs.gate.set()
    w = pool.take("s1")
    assert w is not None
    await settle()
    assert pool.give_back(w.name, {"sessions_served": 1, "memory_mb": 80.0}) == "kept"
    assert pool.take("s2") is w
    outcome = pool.give_back(w.name, {"sessions_served": 2, "memory_mb": 80.0})
    assert outcome.startswith("recycled") and procs.stopped == [w.name]


async def test_a_worker_past_its_memory_limit_is_recycled() -> None:
    procs = Processes()
    pool = make_pool(procs, {"n1": 4}, worker_max_memory_mb=100, warm_pool_size=2)
    w = pool.take("s1")
    assert w is not None
    assert "MB resident" in pool.give_back(w.name, {"sessions_served": 1, "memory_mb": 150.0})


async def test_where_calls_are_live_the_pool_starts_one_worker_at_a_time() -> None:
    procs = Processes()
    pool: WarmPool = make_pool(procs, {"n1": 10}, warm_pool_size=4, warm_pool_max_starting=4)
    assert pool.take("live-call") is not None  # a cold start, still warming
    procs.started.clear()
    pool.refill()
    assert len(procs.started) == 0  # the call's own worker is the one starting
    procs.gate.set()
    await settle()
    pool.refill()
    assert len(procs.started) == 1
    await settle()
    pool.refill()
    assert len(procs.started) == 2


async def test_a_node_that_left_takes_its_workers_with_it() -> None:
    pool = make_pool(Processes(), {"n1": 2, "n2": 2})
    a, b = pool.take("s1"), pool.take("s2")
    assert a is not None and b is not None
    lost = pool.set_nodes({"n1": 2})
    assert {w.session_id for w in lost} <= {"s1", "s2"} and len(lost) == 1
