"""Health rules without Ray: what one ping round concludes about a worker, and the report."""

from __future__ import annotations

from typing import Any

from actors import health
from actors.warm_pool import Worker
from backend.iface import Config


def worker(answered_at: float = 0.0) -> Worker:
    return Worker("worker:a", "handle", "n1", "profile", "s1", ready=True, answered_at=answered_at)


def test_a_dead_worker_is_reaped_at_once() -> None:
    assert health.judge(worker(), "dead", now=1.0).reap == "session actor died"


def test_a_late_worker_is_unresponsive_until_it_has_been_silent_long_enough() -> None:
    w = worker(answered_at=100.0)
    for _ in range(health.MAX_MISSED_PINGS):  # three missed pings within seconds: only busy
        verdict = health.judge(w, "timeout", now=105.0)
        assert verdict.unresponsive and verdict.reap is None
    late = health.judge(w, "timeout", now=100.0 + health.UNRESPONSIVE_REAP_S + 1)
    assert late.reap is not None and "no answer to health pings" in late.reap


def test_an_answer_resets_the_count_and_reports_the_state() -> None:
    w = worker(answered_at=0.0)
    health.judge(w, "timeout", now=5.0)
    verdict = health.judge(w, "listening", now=6.0)
    assert verdict == health.Verdict(state="listening")
    assert w.missed_pings == 0 and w.answered_at == 6.0


def capacity() -> dict[str, Any]:
    return {
        "session_slots": 10,
        "free_slots": 1,
        "warm_pool": {"idle": 0},
        "nodes": {"n1": {}},
        "speech": {"capacity_by_node": {"n1": 6}},
        "stage_hosts": [],
    }


def report(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "config": Config(max_concurrent_sessions=10),
        "active": 1,
        "last_round": {"at": "2026-12-04T00:00:00+00:00", "unresponsive": []},
        "draining": None,
        "failing": {},
        "monitor_alive": True,
        "capacity": capacity(),
        "totals": {"sessions_total": 1, "reaped_total": 0},
    }
    return health.report(**{**values, **overrides})


def test_healthy_degraded_and_unhealthy_say_why() -> None:
    assert report()["status"] == "healthy"
    near = report(active=9)
    assert near["status"] == "degraded" and "90% of max_concurrent_sessions" in str(near)
    late = report(last_round={"at": None, "unresponsive": ["s1"]})
    assert late["details"]["unresponsive_session_ids"] == ["s1"]
    assert "1 session(s) unresponsive" in late["details"]["reasons"]
    breaker = report(failing={"cartesia": {"worker:a": {"state": "open"}}})
    assert "provider cartesia: circuit open in 1 worker(s)" in breaker["details"]["reasons"]
    down = report(monitor_alive=False)
    assert down["status"] == "unhealthy" and down["details"]["connection_state"] == "disconnected"


def test_breakers_of_workers_that_are_gone_do_not_count() -> None:
    breakers = {"cartesia": {"worker:a": {"state": "open"}, "worker:gone": {"state": "open"}}}
    assert health.open_breakers(breakers, {"worker:a"}) == {
        "cartesia": {"worker:a": {"state": "open"}}
    }
    assert health.open_breakers(breakers, set()) == {}
