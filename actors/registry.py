"""`SessionRegistry`: the one place where admission happens and sessions are known.

A single named, detached actor, so the cap holds whatever the number of ingress replicas: its
methods that admit or release never await, so each runs atomically on the actor's event loop.
It also pings every session on an interval and keeps the last round, so a health check costs one
call and no fan-out; a session whose actor died (or missed `MAX_MISSED_PINGS` pings in a row) is
reaped and its slot freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from actors.session_actor import SESSION_RESOURCE
from backend.errors import BackendError, ErrorCode
from backend.iface import Config

log = logging.getLogger(__name__)

REGISTRY_NAME = "voice_registry"
MAX_MISSED_PINGS = 3
NEAR_CAPACITY = 0.9


@ray.remote(num_cpus=0, max_restarts=0)
class SessionRegistry:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.config = Config()
        self.records: dict[str, dict[str, Any]] = {}
        self.missed: dict[str, int] = {}
        self.handles: dict[str, Any] = {}
        self.reaped: list[dict[str, Any]] = []
        self.node_capacity = 0.0
        self.last_round: dict[str, Any] = {"at": None, "unresponsive": [], "ok": 0}
        self.sessions_total = 0
        self.reaped_total = 0
        self.version: str | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # -- configuration ---------------------------------------------------------------------
    async def configure(self, config: dict[str, Any], version: str | None = None) -> dict[str, Any]:
        """Replace the config; takes effect for what follows (live sessions stay).

        `version` identifies a deployment's config: a replica that starts later with the same
        version leaves runtime changes (`update_config`) alone; a new deployment applies its own.
        """
        if version is not None and version == self.version and self._loop_task is not None:
            return self.config.model_dump(mode="json")
        self.version = version or self.version
        self.config = Config(**config)
        self._refresh_capacity()
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._health_loop())
        self._wake.set()
        return self.config.model_dump(mode="json")

    def get_config(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    def _refresh_capacity(self) -> None:
        self.node_capacity = float(ray.cluster_resources().get(SESSION_RESOURCE, 0.0))

    def effective_cap(self) -> int:
        """The configured cap, bounded by the cluster's `voice_session` slots (0 = none set)."""
        slots = int(self.node_capacity)
        cap = self.config.max_concurrent_sessions
        return min(cap, slots) if cap else slots

    # -- admission (no awaits: atomic) -----------------------------------------------------
    def reserve(self, session_id: str, record: dict[str, Any]) -> None:
        cap = self.effective_cap()
        if len(self.records) >= cap:
            raise BackendError(
                "create_session",
                ErrorCode.SESSION_LIMIT_EXCEEDED,
                f"at capacity: {len(self.records)} of {cap} sessions in use",
                details={"active_sessions": len(self.records), "max_sessions": cap},
            )
        if session_id in self.records:
            raise BackendError(
                "create_session", ErrorCode.SESSION_ALREADY_ACTIVE, f"{session_id} exists"
            )
        self.records[session_id] = {**record, "status": "starting", "reserved_at": time.time()}

    def commit(self, session_id: str, updates: dict[str, Any]) -> bool:
        rec = self.records.get(session_id)
        if rec is None:
            return False
        rec.update(updates, status="active")
        self.sessions_total += 1
        return True

    def claim_close(self, session_id: str) -> dict[str, Any] | None:
        """Mark a session closing; None if unknown or already closing (so a close wins once)."""
        rec = self.records.get(session_id)
        if rec is None or rec.get("status") == "closing":
            return None
        rec["status"] = "closing"
        return dict(rec)

    def release(self, session_id: str) -> bool:
        self.missed.pop(session_id, None)
        self.handles.pop(session_id, None)
        return self.records.pop(session_id, None) is not None

    def session_ended(self, session_id: str, reason: str) -> bool:
        """A session ended on its own (its client left): free the slot now, and leave the record
        for the supervisor to release provider-side (`take_reaped`)."""
        known = session_id in self.records
        self._reap(session_id, reason)
        return known

    def annotate(self, session_id: str, updates: dict[str, Any]) -> bool:
        """Record what is learnt about a live session from outside (e.g. a provider webhook)."""
        rec = self.records.get(session_id)
        if rec is None or rec.get("status") == "closing":
            return False
        rec.update(updates)
        return True

    # -- queries ---------------------------------------------------------------------------
    def get(self, session_id: str) -> dict[str, Any] | None:
        return self.records.get(session_id)

    def list(self) -> list[dict[str, Any]]:
        return list(self.records.values())

    def count(self) -> int:
        return len(self.records)

    def take_reaped(self) -> list[dict[str, Any]]:
        """Reaped sessions since the last call, for the supervisor to release provider-side."""
        out, self.reaped = self.reaped, []
        return out

    def health(self) -> dict[str, Any]:
        active = len(self.records)
        cap = self.config.max_concurrent_sessions
        utilization = active / cap if cap else 0.0
        unresponsive = list(self.last_round["unresponsive"])
        reasons = []
        if cap and utilization >= NEAR_CAPACITY:
            reasons.append(f"{utilization:.0%} of max_concurrent_sessions in use")
        if unresponsive:
            reasons.append(f"{len(unresponsive)} session(s) unresponsive")
        loop_alive = self._loop_task is not None and not self._loop_task.done()
        status = "healthy" if not reasons else "degraded"
        if not loop_alive:
            status, reasons = "unhealthy", [*reasons, "health monitor not running"]
        return {
            "status": status,
            "active_sessions": active,
            "max_concurrent_sessions": cap,
            "last_check": self.last_round["at"] or datetime.now(UTC).isoformat(),
            "details": {
                "active_sessions": active,
                "max_sessions": cap,
                "session_slots": int(self.node_capacity),
                "session_utilization": round(utilization, 4),
                "connection_state": "connected" if loop_alive else "disconnected",
                "unresponsive_sessions": len(unresponsive),
                "unresponsive_session_ids": unresponsive,
                "sessions_total": self.sessions_total,
                "reaped_total": self.reaped_total,
                "reasons": reasons,
            },
        }

    # -- health monitor --------------------------------------------------------------------
    async def _health_loop(self) -> None:
        while True:
            try:
                await self._ping_round()
            except Exception:  # the monitor must outlive any one bad round
                log.exception("health round failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.health_check_interval):
                    await self._wake.wait()

    async def _ping_round(self) -> None:
        self._refresh_capacity()
        deadline = min(self.config.health_check_interval, 5.0)
        active = [sid for sid, r in self.records.items() if r.get("status") == "active"]
        results = await asyncio.gather(*(self._ping(sid, deadline) for sid in active))
        unresponsive = []
        for sid, outcome in zip(active, results, strict=True):
            if outcome == "dead":
                self._reap(sid, "session actor died")
            elif outcome == "timeout":
                self.missed[sid] = self.missed.get(sid, 0) + 1
                unresponsive.append(sid)
                if self.missed[sid] >= MAX_MISSED_PINGS:
                    self._kill(sid)
                    self._reap(sid, f"missed {MAX_MISSED_PINGS} health pings")
            else:
                self.missed.pop(sid, None)
                if sid in self.records:
                    self.records[sid]["state"] = outcome
        self.last_round = {
            "at": datetime.now(UTC).isoformat(),
            "unresponsive": [s for s in unresponsive if s in self.records],
        }

    async def _ping(self, session_id: str, deadline_s: float) -> str:
        try:
            actor = self.handles.get(session_id)
            if actor is None:
                actor = ray.get_actor(f"session:{session_id}", namespace=self.namespace)
                self.handles[session_id] = actor
            return await asyncio.wait_for(actor.ping.remote(), deadline_s)
        except (TimeoutError, GetTimeoutError):
            return "timeout"
        except (RayActorError, ValueError):  # ValueError: no actor by that name any more
            return "dead"

    def _kill(self, session_id: str) -> None:
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(f"session:{session_id}", namespace=self.namespace))

    def _reap(self, session_id: str, reason: str) -> None:
        rec = self.records.get(session_id)
        if rec is None:
            return
        log.warning("reaping session %s: %s", session_id, reason)
        self.release(session_id)
        self.reaped_total += 1
        self.reaped.append({**rec, "reason": reason, "reaped_at": time.time()})
        del self.reaped[:-1000]
