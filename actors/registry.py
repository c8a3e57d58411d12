"""`SessionRegistry`: the one place where admission happens and sessions are known.

A single named, detached actor, so the cap holds whatever the number of ingress replicas: its
methods that admit or release never await, so each runs atomically on the actor's event loop.
Admission and placement are one step: `reserve` checks the cap and takes a worker from the warm
pool (`actors/warm_pool.py`) on the node with room, so two replicas can never both fill the last
slot. The workers are owned by this actor: deleting it (undeploy) takes them all down.

It pings every worker on an interval and keeps the last round, so a health check costs one call
and no fan-out; a session whose worker died (or has not answered a ping for `MAX_MISSED_PINGS`
rounds and `UNRESPONSIVE_REAP_S` seconds, or whose node left the cluster) is reaped and its slot
freed. A late answer only marks the session unresponsive (health says so): on a saturated node
every process answers late, and killing live calls for it would make the overload worse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors import metrics
from actors.hooks import SecurityState
from actors.host_pool import Host, HostPool
from actors.names import HEAD_RESOURCE, REGISTRY_NAME, SESSION_RESOURCE, STAGE_HOST_PREFIX
from actors.profile import WorkerProfile, cpu_cores_per_call, stage_options
from actors.stage_host import SttHostActor
from actors.warm_pool import WarmPool, Worker
from backend.auth import check_rate, check_user_quota
from backend.errors import BackendError, ErrorCode
from backend.iface import Config
from providers.registry import BACKENDS, STT_PROVIDERS, TTS_PROVIDERS, VAD_PROVIDERS

log = logging.getLogger(__name__)

__all__ = ["HEAD_RESOURCE", "REGISTRY_NAME", "SessionRegistry"]
MAX_MISSED_PINGS = 3
# The shortest silence after which a worker that is alive (Ray has not declared it dead) is taken
# for hung. Three missed 1 s pings are only a busy machine: five LiveKit calls on two cores were
# reaped mid-call that way, while the sessions themselves answered in milliseconds.
UNRESPONSIVE_REAP_S = 15.0
NEAR_CAPACITY = 0.9


def alive_nodes() -> tuple[dict[str, int], dict[str, float]]:
    """`voice_session` units and CPUs per alive node (a node without slots appears, with 0)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    slots = {n["NodeID"]: int(n.get("Resources", {}).get(SESSION_RESOURCE, 0)) for n in nodes}
    cpus = {n["NodeID"]: float(n.get("Resources", {}).get("CPU", 0.0)) for n in nodes}
    return slots, cpus


def _kill(handle: Any) -> None:
    with contextlib.suppress(Exception):
        ray.kill(handle, no_restart=True)


def _profile(config: Config) -> WorkerProfile | None:
    """The workers this config needs, or None if one of its providers cannot be loaded."""
    try:
        for registry, name in (
            (STT_PROVIDERS, config.stt_provider),
            (TTS_PROVIDERS, config.tts_provider),
            (VAD_PROVIDERS, config.vad_provider),
        ):
            registry.resolve(name or "")
        options = stage_options(BACKENDS.create(config.provider, config.provider_config), config)
    except BackendError as err:
        log.warning("warm pool paused: %s", err)
        return None
    return WorkerProfile.from_config(config, options)


def _cpu_share(config: Config) -> float:
    try:
        return cpu_cores_per_call(config)
    except BackendError:
        return 0.0


def _wanted_hosts(profile: WorkerProfile | None) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """The node-shared hosts a profile needs: host key -> (kind, provider, options)."""
    if profile is None:
        return {}
    return {
        profile.host_key(kind): (kind, provider, profile.stage_options.get(provider, {}))
        for kind, provider in profile.node_stages.items()
    }


# On the head: admission state must not live on a node that hosts (and may lose) calls.
@ray.remote(num_cpus=0, max_restarts=0, resources={HEAD_RESOURCE: 0.001})
class SessionRegistry:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.config = Config()
        self.rev = 0
        self.pool = WarmPool(namespace)
        self.hosts = HostPool(self._start_host, _kill, lambda h: h._actor_id.hex())
        self.pool.hosts_for = self._hosts_for
        self.records: dict[str, dict[str, Any]] = {}
        self.reaped: list[dict[str, Any]] = []
        self.last_round: dict[str, Any] = {"at": None, "unresponsive": []}
        self.sessions_total = 0
        self.reaped_total = 0
        self.version: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._requested_slots = -1
        self.admissions_by_replica: dict[str, int] = {}  # admission attempts per ingress replica
        self.security = SecurityState()
        self.draining: str | None = None  # why admission stopped (the backend is shutting down)
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
        profile = _profile(self.config)
        self.pool.configure(self.config, profile)
        self.pool.cpu_share = _cpu_share(self.config)
        self.hosts.want(_wanted_hosts(profile))
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
        """The configured cap, bounded by the cluster's `voice_session` slots (0 = none set)."""
        slots = self.pool.total_capacity()
        cap = self.config.max_concurrent_sessions
        return min(cap, slots) if cap else slots

    # -- admission (no awaits: atomic) -----------------------------------------------------
    def reserve(self, session_id: str, record: dict[str, Any], rev: int = -1) -> dict[str, Any]:
        """Admit a session and give it a worker, or refuse at once. A caller whose config is
        older than `rev` gets the current one back instead, to validate against and retry."""
        if rev != self.rev:
            return {"config": self.get_config()}
        if self.draining is not None:
            raise BackendError(
                "create_session",
                ErrorCode.SESSION_LIMIT_EXCEEDED,
                f"draining: {self.draining}; no new sessions are admitted",
                details={"draining": True},
            )
        replica = str(record.get("ingress_replica"))
        self.admissions_by_replica[replica] = self.admissions_by_replica.get(replica, 0) + 1
        cap = self.effective_cap()
        active = len(self.records)
        configured = self.config.max_concurrent_sessions
        if self.pool.speech_full() and (not configured or active < configured):
            raise BackendError(
                "create_session",
                ErrorCode.SESSION_LIMIT_EXCEEDED,
                "at capacity: every node's speech capacity is in use (a node serves its CPUs x "
                f"speech_load_threshold={self.config.speech_load_threshold:g} / "
                f"{self.pool.cpu_share:g} cores per call of local speech models); retry later "
                "or add a node",
                details={"active_sessions": active, "max_sessions": cap, "speech_full": True},
            )
        if active >= cap:
            raise BackendError(
                "create_session",
                ErrorCode.SESSION_LIMIT_EXCEEDED,
                f"at capacity: {active} of {cap} sessions in use",
                details={"active_sessions": active, "max_sessions": cap},
            )
        if session_id in self.records:
            raise BackendError(
                "create_session", ErrorCode.SESSION_ALREADY_ACTIVE, f"{session_id} exists"
            )
        check_user_quota(self.records, record.get("user_id", ""), self.config.max_sessions_per_user)
        worker = self.pool.take(session_id)
        if worker is None:
            raise BackendError(
                "create_session",
                ErrorCode.SESSION_LIMIT_EXCEEDED,
                f"at capacity: no node has a free {SESSION_RESOURCE} slot",
                details={"active_sessions": active, "max_sessions": cap},
            )
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

    def abort(self, session_id: str) -> None:
        """Creating the session failed after `reserve`: free the slot; the half-bound worker is
        not trusted with another session."""
        rec = self.records.pop(session_id, None)
        w = self.pool.by_session(session_id)
        if w is not None:
            self.pool.kill(w)
        if rec is not None:
            self._wake_pool()

    def drain(self, reason: str) -> list[dict[str, Any]]:
        """Stop admitting (every replica asks here) and stop refilling the warm pool; returns
        the live sessions, which the supervisor lets finish up to `drain_timeout`."""
        self.draining = reason
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
            metrics.session_ended(reason)
            self.reaped.append({**rec, "reason": reason, "reaped_at": time.time()})
            del self.reaped[:-1000]
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

    # -- security: hooks for every replica, and the cluster-wide rate limit -----------------
    def set_hooks(self, hooks: dict[str, bytes]) -> int:
        return self.security.set_hooks(hooks)

    def auth_view(self, config_rev: int, hooks_rev: int) -> dict[str, Any]:
        """What an ingress replica needs to authenticate a request: the config and the hooks,
        each only if it changed since the revision the replica holds."""
        out: dict[str, Any] = {"hooks_rev": self.security.hooks_rev}
        if config_rev != self.rev:
            out["config"] = self.get_config()
        if hooks_rev != self.security.hooks_rev:
            out["hooks"] = dict(self.security.hooks)
        return out

    async def check_rate(self, user_id: str, hooks_rev: int = -1) -> dict[str, Any]:
        """Session creation rate per user: one limiter for the whole cluster. Returns the hooks
        if the caller's are older than `hooks_rev` (a session's spec carries its retention hook)."""
        await check_rate(self.security.limiter(self.config.session_rate_per_user), user_id)
        return self.auth_view(self.rev, hooks_rev)

    def provider_state(self, worker: str, provider: str, state: dict[str, Any]) -> None:
        """A worker's circuit breaker for `provider` changed state (`providers/resilience.py`)."""
        by_worker = self.breakers.setdefault(provider, {})
        if state.get("state") == "closed":
            by_worker.pop(worker, None)
        else:
            by_worker[worker] = {**state, "at": time.time()}
        if not by_worker:
            self.breakers.pop(provider, None)

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
            "admissions_by_replica": dict(self.admissions_by_replica),
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
        if self.draining is not None:
            reasons.append(f"draining: {self.draining}")
        live = {w.name for w in self.pool.workers.values()}
        failing = {
            provider: states
            for provider, by_worker in self.breakers.items()
            if (states := {w: s for w, s in by_worker.items() if w in live})
        }
        reasons += [f"provider {p}: circuit open in {len(s)} worker(s)" for p, s in failing.items()]
        loop_alive = bool(self._tasks) and not any(t.done() for t in self._tasks)
        status = "healthy" if not reasons else "degraded"
        if not loop_alive:
            status, reasons = "unhealthy", [*reasons, "health monitor not running"]
        capacity = self.capacity()
        return {
            "status": status,
            "active_sessions": active,
            "max_concurrent_sessions": cap,
            "last_check": self.last_round["at"] or datetime.now(UTC).isoformat(),
            "details": {
                "active_sessions": active,
                "max_sessions": cap,
                "session_slots": capacity["session_slots"],
                "free_slots": capacity["free_slots"],
                "warm_pool_idle": capacity["warm_pool"]["idle"],
                "warm_pool_size": self.config.warm_pool_size,
                "nodes": len(capacity["nodes"]),
                "session_utilization": round(utilization, 4),
                "connection_state": "connected" if loop_alive else "disconnected",
                "unresponsive_sessions": len(unresponsive),
                "unresponsive_session_ids": unresponsive,
                "sessions_total": self.sessions_total,
                "reaped_total": self.reaped_total,
                "circuit_breakers": failing,
                "speech_capacity_by_node": capacity["speech"]["capacity_by_node"],
                "stage_hosts": capacity["stage_hosts"],
                "stage_host_failovers": self.hosts.failovers,
                "reasons": reasons,
            },
        }

    def shutdown(self) -> int:
        """Stop every worker (undeploy, after the sessions were closed)."""
        n = len(self.pool.workers)
        for t in self._tasks:
            t.cancel()
        self.pool.shutdown()
        self.hosts.stop_all()
        return n

    # -- node-shared stage hosts -------------------------------------------------------------
    def _start_host(self, node_id: str, kind: str, provider: str, options: dict[str, Any]) -> Any:
        # Up to twice the node's CPUs recognisers: decoding releases the GIL, and an utterance
        # holds one from its first audio to its final, part of which is waiting for speech.
        cpus = max(1, int(self.pool.cpus.get(node_id, 1)))
        return SttHostActor.options(
            name=f"{STAGE_HOST_PREFIX}{kind}:{node_id[:12]}:{uuid.uuid4().hex[:8]}",
            namespace=self.namespace,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
        ).remote(provider, options, max_streams=2 * cpus)

    def _hosts_for(self, node_id: str) -> dict[str, Any]:
        """Stage kind -> the node's live host, for a worker starting there (started now if the
        profile changed since the pool's last pass)."""
        self._ensure_hosts()
        return {h.kind: h.handle for h in self.hosts.for_node(node_id).values()}

    def stage_host_failover(self, node_id: str, key: str, dead_actor_id: str) -> Any:
        """A call found its node's host dead: promote the spare (once, whoever asks first) and
        hand back the live host. No awaits: concurrent askers see one promotion."""
        live = self.hosts.live(node_id, key)
        if live is not None and live.actor_id == dead_actor_id:
            live = self.hosts.lost(dead_actor_id)
            self._wake_pool()
        return None if live is None else live.handle

    def _ensure_hosts(self) -> None:
        current = self.pool.profile.key if self.pool.profile is not None else None
        old_calls = any(
            w.session_id is not None and w.profile_key != current
            for w in self.pool.workers.values()
        )
        keep = {h.key for h in self.hosts.hosts()} if old_calls else set()
        self.hosts.ensure(list(self.pool.slots), keep)

    async def _ping_hosts(self, deadline_s: float) -> None:
        hosts = self.hosts.hosts()
        results = await asyncio.gather(*(self._host_stats(h, deadline_s) for h in hosts))
        for h, stats in zip(hosts, results, strict=True):
            if stats == "dead":
                self.hosts.lost(h.actor_id)
                self._wake_pool()
            elif isinstance(stats, dict):
                h.stats, h.pid, h.ready = stats, stats.get("pid"), True

    async def _host_stats(self, h: Host, deadline_s: float) -> dict[str, Any] | str:
        try:
            return await asyncio.wait_for(h.handle.stats.remote(), deadline_s)
        except (TimeoutError, GetTimeoutError):
            return "timeout"  # loading its first model, or a busy node
        except RayActorError:
            return "dead"

    # -- warm pool -------------------------------------------------------------------------
    def _wake_pool(self) -> None:
        self.pool.changed.set()

    async def _pool_loop(self) -> None:
        while True:
            await self.pool.changed.wait()
            self.pool.changed.clear()
            if self.draining is not None:
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
            if outcome == "dead":
                self.pool.kill(w)
                if sid is not None:
                    self._reap(sid, "session actor died")
                self._wake_pool()
            elif outcome == "timeout":
                w.missed_pings += 1
                if sid is not None:
                    unresponsive.append(sid)
                silent_s = time.monotonic() - w.answered_at
                if w.missed_pings >= MAX_MISSED_PINGS and silent_s >= UNRESPONSIVE_REAP_S:
                    self.pool.kill(w)
                    if sid is not None:
                        self._reap(sid, f"no answer to health pings for {silent_s:.0f} s")
                    self._wake_pool()
            else:
                w.missed_pings = 0
                w.answered_at = time.monotonic()
                rec = self.records.get(sid) if sid is not None else None
                if rec is not None and rec.get("status") == "active":
                    rec["state"] = outcome
        self.last_round = {
            "at": datetime.now(UTC).isoformat(),
            "unresponsive": [s for s in unresponsive if s in self.records],
        }
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
        metrics.session_ended(reason)
        self.reaped_total += 1
        self.reaped.append({**rec, "reason": reason, "reaped_at": time.time()})
        del self.reaped[:-1000]
