"""Health: what a ping round concludes about each worker, and the report built from the last
round. Pure (no Ray): the registry pings, this module judges and reports, so a health check
costs no fan-out and its rules are tested on their own.

A late answer only marks a session unresponsive: on a saturated node every process answers
late, and killing live calls for it would make the overload worse. A worker is taken for hung
after `MAX_MISSED_PINGS` missed rounds and `UNRESPONSIVE_REAP_S` seconds of silence.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from actors.warm_pool import Worker
from backend.iface import Config

MAX_MISSED_PINGS = 3
# The shortest silence after which a worker that is alive (Ray has not declared it dead) is taken
# for hung. Three missed 1 s pings are only a busy machine: five LiveKit calls on two cores were
# reaped mid-call that way, while the sessions themselves answered in milliseconds.
UNRESPONSIVE_REAP_S = 15.0
NEAR_CAPACITY = 0.9


@dataclass(frozen=True, slots=True)
class Verdict:
    reap: str | None = None  # why the worker must go (its session is reaped), or None
    unresponsive: bool = False  # late this round: reported, not reaped
    state: str | None = None  # the session's state, from its answer


def judge(w: Worker, outcome: str, now: float | None = None) -> Verdict:
    """One ping's outcome ("dead", "timeout", "starting" or the session's state)."""
    now = time.monotonic() if now is None else now
    if outcome == "dead":
        return Verdict(reap="session actor died")
    if outcome == "timeout":
        w.missed_pings += 1
        silent_s = now - w.answered_at
        if w.missed_pings >= MAX_MISSED_PINGS and silent_s >= UNRESPONSIVE_REAP_S:
            return Verdict(reap=f"no answer to health pings for {silent_s:.0f} s")
        return Verdict(unresponsive=True)
    w.missed_pings = 0
    w.answered_at = now
    return Verdict(state=None if outcome == "starting" else outcome)


def round_summary(unresponsive: list[str], records: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "at": datetime.now(UTC).isoformat(),
        "unresponsive": [s for s in unresponsive if s in records],
    }


def open_breakers(
    breakers: Mapping[str, Mapping[str, Any]], live_workers: set[str]
) -> dict[str, dict[str, Any]]:
    """Circuit breakers open in workers still alive, by provider."""
    return {
        provider: states
        for provider, by_worker in breakers.items()
        if (states := {w: s for w, s in by_worker.items() if w in live_workers})
    }


def report(
    *,
    config: Config,
    active: int,
    last_round: Mapping[str, Any],
    draining: str | None,
    failing: Mapping[str, Mapping[str, Any]],
    monitor_alive: bool,
    capacity: Mapping[str, Any],
    totals: Mapping[str, int],
) -> dict[str, Any]:
    """`healthy`, `degraded` (near the cap, sessions unresponsive, draining, a breaker open) or
    `unhealthy` (the monitor itself stopped), with the figures behind it."""
    cap = config.max_concurrent_sessions
    utilization = active / cap if cap else 0.0
    unresponsive = list(last_round["unresponsive"])
    reasons = []
    if cap and utilization >= NEAR_CAPACITY:
        reasons.append(f"{utilization:.0%} of max_concurrent_sessions in use")
    if unresponsive:
        reasons.append(f"{len(unresponsive)} session(s) unresponsive")
    if draining is not None:
        reasons.append(f"draining: {draining}")
    reasons += [f"provider {p}: circuit open in {len(s)} worker(s)" for p, s in failing.items()]
    status = "healthy" if not reasons else "degraded"
    if not monitor_alive:
        status, reasons = "unhealthy", [*reasons, "health monitor not running"]
    return {
        "status": status,
        "active_sessions": active,
        "max_concurrent_sessions": cap,
        "last_check": last_round["at"] or datetime.now(UTC).isoformat(),
        "details": {
            "active_sessions": active,
            "max_sessions": cap,
            "session_slots": capacity["session_slots"],
            "free_slots": capacity["free_slots"],
            "warm_pool_idle": capacity["warm_pool"]["idle"],
            "warm_pool_size": config.warm_pool_size,
            "nodes": len(capacity["nodes"]),
            "session_utilization": round(utilization, 4),
            "connection_state": "connected" if monitor_alive else "disconnected",
            "unresponsive_sessions": len(unresponsive),
            "unresponsive_session_ids": unresponsive,
            "circuit_breakers": dict(failing),
            "speech_capacity_by_node": capacity["speech"]["capacity_by_node"],
            "stage_hosts": capacity["stage_hosts"],
            **totals,
            "reasons": reasons,
        },
    }
