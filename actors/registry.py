"""`SessionRegistry`: the one place where admission happens and sessions are known.

A single named, detached actor, so the cap holds whatever the number of ingress replicas: its
methods that admit or release never await, so each runs atomically on the actor's event loop.
Admission and placement are one step: `reserve` checks the cap and takes a worker from the warm
pool (`actors/warm_pool.py`) on the node with room, so two replicas can never both fill the last
slot. The workers are owned by this actor: deleting it (undeploy) takes them all down.

It composes the runtime's parts, each plain Python tested without Ray: `Admission` (who may
start), `WarmPool` (idle workers per node), `HostPool` (the nodes' shared stage hosts, with
`actors/node_hosts.py`) and `health` (what a ping round concludes, and the report). It pings
every worker and host on an interval and keeps the last round, so a health check costs one call
and no fan-out; a session whose worker died, hung or left with its node is reaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors import health, metrics
from actors.admission import Admission
from actors.hooks import SecurityState
from actors.host_pool import HostPool
from actors.names import HEAD_RESOURCE, REGISTRY_NAME, SESSION_RESOURCE
from actors.node_hosts import NodeHostsMixin
from actors.profile import WorkerProfile, cpu_share_or_zero, hosts_wanted, profile_for
from actors.registry_security import RegistrySecurityMixin
from actors.session_actor import SessionActor
from actors.task_events import untracked
from actors.warm_pool import WarmPool, Worker, WorkerOps
from backend.iface import Config

log = logging.getLogger(__name__)

__all__ = ["HEAD_RESOURCE", "REGISTRY_NAME", "SessionRegistry"]


def alive_nodes() -> tuple[dict[str, int], dict[str, float]]:
    """`voice_session` units and CPUs per alive node (a node without slots appears, with 0)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    slots = {n["NodeID"]: int(n.get("Resources", {}).get(SESSION_RESOURCE, 0)) for n in nodes}
    cpus = {n["NodeID"]: float(n.get("Resources", {}).get("CPU", 0.0)) for n in nodes}
    return slots, cpus


async def _warm_worker(handle: Any) -> Any:
    return await handle.warm.remote()


def _kill(handle: Any) -> None:
    with contextlib.suppress(Exception):
        ray.kill(handle, no_restart=True)


# On the head: admission state must not live on a node that hosts (and may lose) calls.
@ray.remote(num_cpus=0, max_restarts=0, resources={HEAD_RESOURCE: 0.001})
class SessionRegistry(RegistrySecurityMixin, NodeHostsMixin):
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.config = Config()
        self.rev = 0
        self.pool = WarmPool(WorkerOps(self._start_worker, _warm_worker, _kill))
        self.hosts = HostPool(self._start_host, _kill, lambda h: h._actor_id.hex())
        self.records: dict[str, dict[str, Any]] = {}
        self.reaped: list[dict[str, Any]] = []
        self.last_round: dict[str, Any] = {"at": None, "unresponsive": []}
        self.sessions_total = 0
        self.reaped_total = 0
        self.version: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._requested_slots = -1
        self.admission = Admission()
        self.security = SecurityState()
        self.breakers: dict[str, dict[str, Any]] = {}  # provider -> worker -> breaker state

    # -- configuration ---------------------------------------------------------------------
    async def configure(self, config: dict[str, Any], version: str | None = None) -> dict[str, Any]:
        """Replace the config; takes effect for what follows (live sessions stay).

        `version` identifies a deployment's config: a replica that starts later with the same
        version leaves runtime changes (`update_config`) alone; a new deployment applies its own.
        Returns the config and its revision (the supervisor caches both).
        """
        if version is not None and version == self.version and self._tasks:
            return self.get_config()
        self.version = version or self.version
        self.config = Config(**config)
        metrics.set_provider(self.config.provider)
        self.rev += 1
        if not self.pool.slots:
            self.pool.set_nodes(*await asyncio.to_thread(alive_nodes))
        profile = profile_for(self.config)
        self.pool.configure(self.config, profile)
        self.pool.cpu_share = cpu_share_or_zero(self.config)
        self.hosts.want(hosts_wanted(profile))
        if not self._tasks or any(t.done() for t in self._tasks):
            for t in self._tasks:
                t.cancel()
            self._tasks = [
                asyncio.create_task(self._health_loop()),
                asyncio.create_task(self._pool_loop()),
            ]
        self._wake.set()
        return self.get_config()

    def get_config(self) -> dict[str, Any]:
        return {**self.config.model_dump(mode="json"), "_rev": self.rev}

    def effective_cap(self) -> int:
        return Admission.effective_cap(self.config, self.pool)

    # -- admission (no awaits: atomic) -----------------------------------------------------
    def reserve(self, session_id: str, record: dict[str, Any], rev: int = -1) -> dict[str, Any]:
        """Admit a session and give it a worker, or refuse at once. A caller whose config is
        older than `rev` gets the current one back instead, to validate against and retry."""
        if rev != self.rev:
            return {"config": self.get_config()}
        self.admission.admit(self.config, self.pool, self.records, session_id, record)
        worker = self.pool.take(session_id)
        if worker is None:
            raise Admission.no_worker(len(self.records), self.effective_cap(), SESSION_RESOURCE)
        warm = worker.ready
        self.records[session_id] = {
            **record,
            "status": "starting",
            "reserved_at": time.time(),
            "worker": worker.name,
            "node_id": worker.node_id,
            "warm_start": warm,
        }
        self._wake_pool()
        return {"worker": worker.handle, "worker_name": worker.name, "warm": warm}

    def commit(self, session_id: str, updates: dict[str, Any]) -> bool:
        rec = self.records.get(session_id)
        if rec is None:
            return False
        rec.update(updates, status="active")
        self.sessions_total += 1
        return True

    def abort(self, session_id: str, node_gone: bool = False) -> None:
        """Creating the session failed after `reserve`: free the slot; the half-bound worker is
        not trusted with another session. `node_gone`: its node left the cluster before the
        next ping round noticed; the nodes are read again now, so the retry goes elsewhere."""
        if node_gone:
            for w in self.pool.set_nodes(*alive_nodes()):
                if w.session_id is not None and w.session_id != session_id:
                    self._reap(w.session_id, f"node {w.node_id[:12]} left the cluster")
        rec = self.records.pop(session_id, None)
        w = self.pool.by_session(session_id)
        if w is not None:
            self.pool.kill(w)
        if rec is not None:
            self._wake_pool()

    def drain(self, reason: str) -> list[dict[str, Any]]:
        """Stop admitting (every replica asks here) and stop refilling the warm pool; returns
        the live sessions, which the supervisor lets finish up to `drain_timeout`."""
        self.admission.draining = reason
        return self.list()

    def claim_close(self, session_id: str) -> dict[str, Any] | None:
        """Mark a session closing; None if unknown or already closing (so a close wins once)."""
        rec = self.records.get(session_id)
        if rec is None or rec.get("status") == "closing":
            return None
        rec["status"] = "closing"
        return dict(rec)

    def finish(self, session_id: str, report: dict[str, Any] | None) -> str:
        """A session closed: free its slot; its worker returns to the pool or is recycled."""
        rec = self.records.pop(session_id, None)
        w = self.pool.by_session(session_id)
        outcome = self.pool.give_back(w.name, report) if w is not None else "gone"
        if rec is not None:
            metrics.session_ended("closed by request")
            self._wake_pool()
        return outcome

    def session_closed_here(self, session_id: str, reason: str, worker: str) -> None:
        """A session closed itself (its direct websocket's client stalled): free the slot and
        leave the record for the supervisor to release provider-side (`take_reaped`). Its
        worker stays out of the pool until `worker_released` (its socket is saying goodbye)."""
        rec = self.records.pop(session_id, None)
        w = self.pool.workers.get(worker)
        if w is not None and w.session_id == session_id:
            w.session_id = f"closing:{session_id}"
        if rec is not None:
            self._hand_over(rec, reason)
            self._wake_pool()

    def worker_released(self, worker: str, report: dict[str, Any] | None) -> str:
        """The worker of a self-closed session is free again: keep it or recycle it."""
        w = self.pool.workers.get(worker)
        if w is None or not str(w.session_id or "").startswith("closing:"):
            return "gone"
        return self.pool.give_back(worker, report)

    def worker_handle(self, session_id: str) -> Any:
        w = self.pool.by_session(session_id)
        return None if w is None else w.handle

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

    @untracked
    def take_reaped(self) -> list[dict[str, Any]]:
        """Reaped sessions since the last call, for the supervisor to release provider-side."""
        out, self.reaped = self.reaped, []
        return out

    def capacity(self) -> dict[str, Any]:
        """What an autoscaler needs: sessions, free slots, the warm pool, per node."""
        pool = self.pool.summary()
        cap = self.config.max_concurrent_sessions
        active = len(self.records)
        free = self.pool.free_slots()
        return {
            "active_sessions": active,
            "max_concurrent_sessions": cap,
            "session_slots": self.pool.total_slots(),
            "free_slots": min(free, max(0, cap - active)) if cap else free,
            "warm_pool": {k: v for k, v in pool.items() if k != "nodes"},
            "nodes": pool["nodes"],
            "admissions_by_replica": dict(self.admission.by_replica),
            "placements": self.pool.profile.placements if self.pool.profile else {},
            "speech": {
                "cpu_cores_per_call": self.pool.cpu_share,
                "speech_load_threshold": self.config.speech_load_threshold,
                "capacity_by_node": {
                    n: self.pool.speech_capacity(n) for n in sorted(self.pool.slots)
                },
            },
            "stage_hosts": self.hosts.summary(),
        }

    @untracked
    def health(self) -> dict[str, Any]:
        live = {w.name for w in self.pool.workers.values()}
        return health.report(
            config=self.config,
            active=len(self.records),
            last_round=self.last_round,
            draining=self.admission.draining,
            failing=health.open_breakers(self.breakers, live),
            monitor_alive=bool(self._tasks) and not any(t.done() for t in self._tasks),
            capacity=self.capacity(),
            totals={
                "sessions_total": self.sessions_total,
                "reaped_total": self.reaped_total,
                "stage_host_failovers": self.hosts.failovers,
            },
        )

    def shutdown(self) -> int:
        """Stop every worker (undeploy, after the sessions were closed)."""
        n = len(self.pool.workers)
        for t in self._tasks:
            t.cancel()
        self.pool.shutdown()
        self.hosts.stop_all()
        return n

    # -- session worker processes ------------------------------------------------------------
    def _start_worker(self, name: str, node_id: str, profile: WorkerProfile) -> Any:
        return SessionActor.options(
            name=name,
            namespace=self.namespace,
            resources={SESSION_RESOURCE: 1},
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
        ).remote(name, profile, self.namespace, self._hosts_for(node_id))

    # -- warm pool -------------------------------------------------------------------------
    def _wake_pool(self) -> None:
        self.pool.changed.set()

    async def _pool_loop(self) -> None:
        while True:
            await self.pool.changed.wait()
            self.pool.changed.clear()
            if self.admission.draining is not None:
                continue  # shutting down: no new spares
            try:
                self._ensure_hosts()
                self.pool.refill()
                self._request_autoscaler_slots()
                metrics.capacity(len(self.records), self.pool.summary()["nodes"])
            except Exception:  # the pool must outlive any one bad pass
                log.exception("warm pool refill failed")
            await asyncio.sleep(0.05)  # coalesce bursts of changes into one pass

    def _request_autoscaler_slots(self) -> None:
        """Tell the Ray autoscaler how many `voice_session` slots we want: the sessions plus a
        warm pool's worth of headroom (a hint; a cluster without an autoscaler ignores it)."""
        want = len(self.records) + self.config.warm_pool_size
        if want == self._requested_slots:
            return
        from ray.autoscaler.sdk import request_resources

        with contextlib.suppress(Exception):
            request_resources(bundles=[{SESSION_RESOURCE: 1}] * want)
            self._requested_slots = want

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
        for w in self.pool.set_nodes(*await asyncio.to_thread(alive_nodes)):
            if w.session_id is not None:
                self._reap(w.session_id, f"node {w.node_id[:12]} left the cluster")
        deadline = min(self.config.health_check_interval, 5.0)
        await self._ping_hosts(deadline)
        workers = list(self.pool.workers.values())
        results = await asyncio.gather(*(self._ping(w, deadline) for w in workers))
        unresponsive = []
        for w, outcome in zip(workers, results, strict=True):
            sid = w.session_id
            verdict = health.judge(w, outcome)
            if verdict.reap is not None:
                self.pool.kill(w)
                if sid is not None:
                    self._reap(sid, verdict.reap)
                self._wake_pool()
            elif verdict.unresponsive and sid is not None:
                unresponsive.append(sid)
            elif verdict.state is not None and sid in self.records:
                rec = self.records[sid]
                if rec.get("status") == "active":
                    rec["state"] = verdict.state
        self.last_round = health.round_summary(unresponsive, self.records)
        self._wake_pool()  # idle spares above target are trimmed on a clock

    async def _ping(self, w: Worker, deadline_s: float) -> str:
        if not w.ready:
            return "starting"  # a process starting and loading models; warm() reports failure
        try:
            return await asyncio.wait_for(w.handle.ping.remote(), deadline_s)
        except (TimeoutError, GetTimeoutError):
            return "timeout"
        except RayActorError:
            return "dead"

    def _reap(self, session_id: str, reason: str) -> None:
        rec = self.records.pop(session_id, None)
        w = self.pool.by_session(session_id)
        if w is not None:
            self.pool.kill(w)
        if rec is None:
            return
        log.warning("reaping session %s: %s", session_id, reason)
        self.reaped_total += 1
        self._hand_over(rec, reason)

    def _hand_over(self, rec: dict[str, Any], reason: str) -> None:
        """A session ended without the control plane: its record waits for it (`take_reaped`)
        to release the provider's side."""
        metrics.session_ended(reason)
        self.reaped.append({**rec, "reason": reason, "reaped_at": time.time()})
        del self.reaped[:-1000]
