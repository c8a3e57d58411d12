"""The registry's side of the nodes' shared stage hosts (the `node` placement): starting them on
each node with a spare, handing them to workers, promoting a spare when a host dies, and pinging
them with the sessions. Mixed into `SessionRegistry`; the bookkeeping is `HostPool`'s.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.host_pool import Host, HostPool
from actors.names import STAGE_HOST_PREFIX
from actors.stage_host import SttHostActor
from actors.warm_pool import WarmPool


class NodeHostsMixin:
    namespace: str
    pool: WarmPool
    hosts: HostPool

    def _wake_pool(self) -> None: ...

    def _start_host(self, node_id: str, kind: str, provider: str, options: dict[str, Any]) -> Any:
        # Up to twice the node's CPUs recognisers (~50 MB each), all loaded up front: decoding
        # releases the GIL, an utterance holds one from its first audio to its final, and a
        # spare taking over must have one ready for every call replaying its utterance.
        cpus = max(1, int(self.pool.cpus.get(node_id, 1)))
        return SttHostActor.options(
            name=f"{STAGE_HOST_PREFIX}{kind}:{node_id[:12]}:{uuid.uuid4().hex[:8]}",
            namespace=self.namespace,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
        ).remote(provider, options, max_streams=2 * cpus, preload=2 * cpus)

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
