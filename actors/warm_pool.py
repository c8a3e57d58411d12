"""`WarmPool`: idle, fully loaded session workers on every node, and where each session goes.

It lives inside the `SessionRegistry` actor, so taking a worker is part of the same atomic,
await-free admission step that checks the cap. Per node it tracks the `voice_session` slots and
the workers holding them: bound to a session, spare (idle or still warming, for the running
profile), or other (an old profile, on its way out). Like LiveKit Agents' `num_idle_processes`,
each node keeps up to `warm_pool_size` spares, refilled in the background with at most
`warm_pool_max_starting` workers starting at once per node; the pool shrinks as the node fills,
since a spare is never started into a slot a session could use. A session takes a ready spare,
else a warming one, else a worker is started for it (a cold start, never an error).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from actors.names import WORKER_PREFIX
from actors.profile import WorkerProfile
from backend.iface import Config

log = logging.getLogger(__name__)

WARM_FAILURE_BACKOFF_S = (1.0, 30.0)  # first and longest pause after a worker failed to load
# A session's worker goes back to the pool when it ends, so under churn the pool would refill
# and then overflow on every cycle. Spares may float up to twice the target (never into a slot
# a session could use, see `free`), and the ones above target are stopped after being idle this
# long: under steady churn returned workers serve the next sessions and few processes start.
IDLE_TRIM_S = 30.0


@dataclass(frozen=True)
class WorkerOps:
    """How the pool starts, warms and stops a worker process (the registry gives it Ray's):
    the pool itself is plain bookkeeping, tested without Ray."""

    start: Callable[[str, str, WorkerProfile], Any]  # (name, node id, profile) -> handle
    warm: Callable[[Any], Awaitable[Any]]  # load every model; raises if the worker cannot
    stop: Callable[[Any], None]


@dataclass(slots=True)
class Worker:
    name: str
    handle: Any
    node_id: str
    profile_key: str
    session_id: str | None = None
    ready: bool = False
    sessions_served: int = 0
    missed_pings: int = 0  # in a row
    answered_at: float = field(default_factory=time.monotonic)  # its last ping answer (or birth)
    created_at: float = field(default_factory=time.time)
    idle_since: float = field(default_factory=time.monotonic)


class WarmPool:
    def __init__(self, ops: WorkerOps) -> None:
        self.ops = ops
        self.workers: dict[str, Worker] = {}
        self.slots: dict[str, int] = {}  # alive node id -> voice_session units
        self.cpus: dict[str, float] = {}  # alive node id -> CPUs (for speech capacity)
        self.cpu_share = 0.0  # CPU cores a call of the running profile declares (0: hosted)
        self.load_threshold = 0.75
        # The node's shared stage hosts a worker there needs (kind -> handle), for `warm`.
        self.profile: WorkerProfile | None = None
        self.size = 0
        self.max_starting = 1
        self.max_sessions = 1
        self.max_memory_mb = 0.0
        self.stats = {"started": 0, "warm_takes": 0, "cold_starts": 0, "recycled": 0}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures = 0
        self._paused_until = 0.0
        self.changed = asyncio.Event()  # set whenever a refill might be needed

    # -- configuration ---------------------------------------------------------------------
    def configure(self, config: Config, profile: WorkerProfile | None) -> None:
        """`profile` None: the config names a provider that cannot load; keep no spares."""
        if profile is None or self.profile is None or profile.key != self.profile.key:
            self._failures, self._paused_until = 0, 0.0
        self.profile = profile
        self.size = config.warm_pool_size
        self.max_starting = config.warm_pool_max_starting
        self.max_sessions = config.worker_max_sessions
        self.max_memory_mb = float(config.worker_max_memory_mb)
        self.load_threshold = config.speech_load_threshold
        self.changed.set()

    def set_nodes(
        self, slots: dict[str, int], cpus: dict[str, float] | None = None
    ) -> list[Worker]:
        """Adopt the alive nodes' slot counts; returns the workers lost with vanished nodes."""
        self.slots = {n: s for n, s in slots.items() if s > 0}
        if cpus is not None:
            self.cpus = dict(cpus)
        lost = [w for w in self.workers.values() if w.node_id not in slots]
        for w in lost:
            self._drop(w)
        if lost:
            self.changed.set()
        return lost

    # -- accounting ------------------------------------------------------------------------
    def _on(self, node_id: str) -> list[Worker]:
        return [w for w in self.workers.values() if w.node_id == node_id]

    def _is_spare(self, w: Worker) -> bool:
        current = self.profile.key if self.profile is not None else None
        return w.session_id is None and w.profile_key == current

    def speech_capacity(self, node_id: str) -> int | None:
        """Calls of the running profile this node's CPUs can serve in time (None: no limit, the
        stages are hosted elsewhere). Like LiveKit's `load_threshold`, but declared per call
        (the provider's `cpu_cores_per_call`), so a refusal comes before the node is slow."""
        if self.cpu_share <= 0 or self.load_threshold <= 0:
            return None
        cpus = self.cpus.get(node_id, 0.0)
        return max(0, int(cpus * self.load_threshold / self.cpu_share + 1e-9))

    def node_usage(self, node_id: str) -> dict[str, Any]:
        on = self._on(node_id)
        bound = sum(1 for w in on if w.session_id is not None)
        spare = [w for w in on if self._is_spare(w)]
        other = len(on) - bound - len(spare)
        slots = self.slots.get(node_id, 0)
        free = max(0, slots - bound - other)
        speech = self.speech_capacity(node_id)
        if speech is not None:
            free = min(free, max(0, speech - bound))
        return {
            "slots": slots,
            "sessions": bound,
            "idle": sum(1 for w in spare if w.ready),
            "warming": sum(1 for w in spare if not w.ready),
            "draining": other,
            "free": free,  # sessions it can still take
            "starting": sum(1 for w in on if not w.ready),
            "speech_capacity": speech,
            "cpus": self.cpus.get(node_id, 0.0),
        }

    def speech_full(self) -> bool:
        """Every node's speech capacity is in use while session slots remain."""
        usage = [self.node_usage(n) for n in self.slots]
        return (
            bool(usage)
            and all(u["speech_capacity"] is not None and u["free"] == 0 for u in usage)
            and any(u["sessions"] + u["draining"] < u["slots"] for u in usage)
        )

    def target(self, node_id: str) -> int:
        u = self.node_usage(node_id)
        return 0 if self.profile is None else min(self.size, u["free"])

    def ceiling(self, node_id: str) -> int:
        return 2 * self.target(node_id)

    def free_slots(self) -> int:
        return sum(self.node_usage(n)["free"] for n in self.slots)

    def total_slots(self) -> int:
        return sum(self.slots.values())

    def total_capacity(self) -> int:
        """Sessions the cluster can hold: slots, bounded per node by its speech capacity."""
        total = 0
        for n, slots in self.slots.items():
            speech = self.speech_capacity(n)
            total += slots if speech is None else min(slots, speech)
        return total

    def summary(self) -> dict[str, Any]:
        nodes = {n: self.node_usage(n) for n in sorted(self.slots)}
        return {
            "warm_pool_size": self.size,
            "idle": sum(u["idle"] for u in nodes.values()),
            "warming": sum(u["warming"] for u in nodes.values()),
            "workers": len(self.workers),
            "nodes": nodes,
            **self.stats,
        }

    # -- taking and giving back (no awaits: run inside the registry's atomic admission) -----
    def take(self, session_id: str) -> Worker | None:
        """A worker for a new session on the best node, or None if no node has a free slot.
        Best: a ready spare, then a warming one, then the node with the most free slots."""
        best: tuple[tuple[int, int, int], str] | None = None
        for node_id in self.slots:
            u = self.node_usage(node_id)
            if u["free"] <= 0:
                continue
            rank = (u["idle"] > 0, u["idle"] + u["warming"] > 0, u["free"])
            if best is None or rank > best[0]:
                best = (rank, node_id)
        if best is None or self.profile is None:
            return None
        node_id = best[1]
        spares = [w for w in self._on(node_id) if self._is_spare(w)]
        if spares:
            worker = max(spares, key=lambda w: (w.ready, -w.created_at))
            self.stats["warm_takes"] += 1
        else:
            worker = self._start(node_id)
            self.stats["cold_starts"] += 1
        worker.session_id = session_id
        self.changed.set()
        return worker

    def give_back(self, name: str, report: dict[str, Any] | None) -> str:
        """A worker's session ended: keep it as a spare, or recycle it. Returns which."""
        w = self.workers.get(name)
        if w is None:
            return "gone"
        w.session_id = None
        reason = self._recycle_reason(w, report)
        self.changed.set()
        if reason:
            log.info("recycling %s: %s", name, reason)
            self.stats["recycled"] += 1
            self.kill(w)
            return f"recycled: {reason}"
        return "kept"

    def _recycle_reason(self, w: Worker, report: dict[str, Any] | None) -> str | None:
        if report is None:
            return "did not close cleanly"
        w.sessions_served = int(report.get("sessions_served", w.sessions_served))
        if w.sessions_served >= self.max_sessions:
            return f"served {w.sessions_served} sessions"
        if self.max_memory_mb and report.get("memory_mb", 0.0) > self.max_memory_mb:
            return f"{report['memory_mb']} MB resident"
        if not self._is_spare(w):
            return "profile changed"
        u = self.node_usage(w.node_id)
        if u["idle"] + u["warming"] > self.ceiling(w.node_id):
            return "pool full"
        w.idle_since = time.monotonic()
        return None

    def kill(self, w: Worker) -> None:
        self._drop(w)
        with contextlib.suppress(Exception):
            self.ops.stop(w.handle)

    def _drop(self, w: Worker) -> None:
        self.workers.pop(w.name, None)

    def by_session(self, session_id: str) -> Worker | None:
        return next((w for w in self.workers.values() if w.session_id == session_id), None)

    # -- refill ----------------------------------------------------------------------------
    def refill(self) -> int:
        """Start spares where a node is below target; stop spares above it. Returns how many
        workers it started."""
        stale = [w for w in self.workers.values() if w.session_id is None and not self._is_spare(w)]
        for w in stale:
            self.kill(w)  # an old profile: its slot is better used by a current spare
        if time.monotonic() < self._paused_until:
            return 0
        started = 0
        for node_id in list(self.slots):
            u = self.node_usage(node_id)
            target = self.target(node_id)
            excess = u["idle"] + u["warming"] - target
            if excess > 0:
                over = u["idle"] + u["warming"] - self.ceiling(node_id)
                self._trim(node_id, excess, over)
                continue
            # While calls are live here, one worker starts at a time: a process start takes a
            # core for ~1 s, and the calls' audio must not wait for the pool.
            limit = 1 if u["sessions"] else self.max_starting
            room = min(target - u["idle"] - u["warming"], limit - u["starting"])
            for _ in range(max(0, room)):
                self._start(node_id)
                started += 1
        return started

    def _trim(self, node_id: str, excess: int, over_ceiling: int) -> None:
        """Stop spares above target: at once above the ceiling, else once idle long enough.
        The most used go first (they are closest to being recycled anyway)."""
        idle = [w for w in self._on(node_id) if self._is_spare(w) and w.ready]
        idle.sort(key=lambda w: -w.sessions_served)
        now = time.monotonic()
        for i, w in enumerate(idle[:excess]):
            if i < over_ceiling or now - w.idle_since >= IDLE_TRIM_S:
                self.kill(w)

    def _start(self, node_id: str) -> Worker:
        assert self.profile is not None
        name = f"{WORKER_PREFIX}{uuid.uuid4().hex[:12]}"
        handle = self.ops.start(name, node_id, self.profile)
        w = Worker(name=name, handle=handle, node_id=node_id, profile_key=self.profile.key)
        self.workers[name] = w
        self.stats["started"] += 1
        task = asyncio.get_running_loop().create_task(self._warm(w))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return w

    async def _warm(self, w: Worker) -> None:
        try:
            await self.ops.warm(w.handle)
        except Exception as exc:
            if w.name not in self.workers:
                return  # stopped on purpose while loading
            log.warning("worker %s failed to load: %s", w.name, exc)
            self._failures += 1
            first, longest = WARM_FAILURE_BACKOFF_S
            self._paused_until = time.monotonic() + min(longest, first * 2 ** (self._failures - 1))
            if w.session_id is None:  # a bound worker is the session's to fail and undo
                self.kill(w)
        else:
            self._failures = 0
            w.ready = True
            w.idle_since = time.monotonic()
        self.changed.set()

    def shutdown(self) -> None:
        for w in list(self.workers.values()):
            self.kill(w)
        for t in self._tasks:
            t.cancel()
