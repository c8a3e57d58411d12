"""Admission without Ray: the cap, draining, a node's speech capacity and per-user quotas each
refuse at once, with a message that says which."""

from __future__ import annotations

from typing import Any

import pytest

from actors.admission import Admission
from backend.errors import BackendError, ErrorCode
from backend.iface import Config
from tests.actors.pool_fixtures import Processes, make_pool


def admit_all(admission: Admission, config: Config, pool: Any, n: int) -> dict[str, Any]:
    records: dict[str, Any] = {}
    for i in range(n):
        record = {"user_id": f"u{i}", "ingress_replica": "r1"}
        admission.admit(config, pool, records, f"s{i}", record)
        assert pool.take(f"s{i}") is not None
        records[f"s{i}"] = record
    return records


async def test_the_cap_refuses_the_next_session_and_names_the_count() -> None:
    config = Config(max_concurrent_sessions=3)
    pool = make_pool(Processes(), {"n1": 10})
    admission = Admission()
    records = admit_all(admission, config, pool, 3)
    with pytest.raises(BackendError) as refused:
        admission.admit(config, pool, records, "s9", {"user_id": "x"})
    assert refused.value.code is ErrorCode.SESSION_LIMIT_EXCEEDED
    assert "3 of 3" in refused.value.message
    assert admission.by_replica == {"r1": 3, "None": 1}


async def test_the_nodes_slots_bound_the_cap() -> None:
    pool = make_pool(Processes(), {"n1": 2, "n2": 1})
    assert Admission.effective_cap(Config(max_concurrent_sessions=100), pool) == 3
    assert Admission.effective_cap(Config(max_concurrent_sessions=0), pool) == 3  # no cap set


async def test_draining_refuses_everyone() -> None:
    admission = Admission()
    admission.draining = "the backend is shutting down"
    with pytest.raises(BackendError) as refused:
        admission.admit(Config(), make_pool(Processes(), {"n1": 5}), {}, "s1", {})
    assert refused.value.details["draining"] and "shutting down" in refused.value.message


async def test_a_node_admits_only_the_local_calls_its_cpus_can_decode() -> None:
    """2 CPUs x 0.75 / 0.25 cores per call = 6 calls, though the node has 100 slots."""
    config = Config(speech_load_threshold=0.75)
    pool = make_pool(Processes(), {"n1": 100}, cpus=2.0, speech_load_threshold=0.75)
    assert pool.speech_capacity("n1") == 6 and pool.total_capacity() == 6
    admission = Admission()
    records = admit_all(admission, config, pool, 6)
    with pytest.raises(BackendError) as refused:
        admission.admit(config, pool, records, "s7", {"user_id": "late"})
    assert refused.value.code is ErrorCode.SESSION_LIMIT_EXCEEDED
    assert "speech capacity" in refused.value.message and refused.value.details["speech_full"]


async def test_a_second_node_takes_the_calls_a_busy_one_cannot() -> None:
    config = Config(speech_load_threshold=0.75)
    pool = make_pool(Processes(), {"busy": 100, "spare": 100}, speech_load_threshold=0.75)
    records = admit_all(Admission(), config, pool, 12)
    nodes = [w.node_id for w in pool.workers.values() if w.session_id in records]
    assert sorted(nodes).count("busy") == 6 and sorted(nodes).count("spare") == 6


async def test_a_users_quota_counts_their_open_sessions() -> None:
    config = Config(max_sessions_per_user=1)
    pool = make_pool(Processes(), {"n1": 10})
    admission = Admission()
    admission.admit(config, pool, {}, "s1", {"user_id": "ann"})
    with pytest.raises(BackendError) as refused:
        admission.admit(config, pool, {"s1": {"user_id": "ann"}}, "s2", {"user_id": "ann"})
    assert refused.value.code is ErrorCode.RATE_LIMIT_EXCEEDED
    admission.admit(config, pool, {"s1": {"user_id": "ann"}}, "s2", {"user_id": "bob"})
