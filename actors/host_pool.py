"""Which node-shared stage hosts exist, per node and model, and which one is live.

Pure bookkeeping, no Ray: the registry gives it functions to start and stop a host. Every node
that hosts calls keeps, per model its profile places on the node, a live host and a loaded
spare; when the live one dies, the spare is promoted at once and a new spare starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# start(node_id, kind, provider, options) -> handle; stop(handle); actor_id(handle) -> str
StartHost = Callable[[str, str, str, dict[str, Any]], Any]


@dataclass(slots=True)
class Host:
    handle: Any
    actor_id: str
    node_id: str
    key: str
    kind: str
    ready: bool = False
    pid: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)


@dataclass(slots=True)
class _Pair:
    live: Host | None = None
    spare: Host | None = None


class HostPool:
    def __init__(
        self, start: StartHost, stop: Callable[[Any], None], actor_id: Callable[[Any], str]
    ) -> None:
        self._start, self._stop, self._actor_id = start, stop, actor_id
        self._pairs: dict[tuple[str, str], _Pair] = {}  # (node, host key) -> hosts
        self._wanted: dict[str, tuple[str, str, dict[str, Any]]] = {}  # key -> kind, provider, opts
        self.failovers = 0

    def want(self, wanted: dict[str, tuple[str, str, dict[str, Any]]]) -> None:
        """The models the running profile places on nodes (host key → kind, provider, options)."""
        self._wanted = dict(wanted)

    def ensure(self, nodes: list[str], keep_keys: set[str] | None = None) -> list[Host]:
        """Start what is missing on each node; stop hosts of models no longer wanted (unless a
        live call still uses that key). Returns the hosts started."""
        started = []
        alive = set(nodes)
        keep = set(self._wanted) | (keep_keys or set())
        for (node, key), pair in list(self._pairs.items()):
            if node not in alive or key not in keep:
                for h in (pair.live, pair.spare):
                    if h is not None:
                        self._stop(h.handle)
                del self._pairs[(node, key)]
        for node in nodes:
            for key, (kind, provider, options) in self._wanted.items():
                pair = self._pairs.setdefault((node, key), _Pair())
                if pair.live is None and pair.spare is not None:
                    pair.live, pair.spare = pair.spare, None
                if pair.live is None:
                    pair.live = self._new(node, key, kind, provider, options)
                    started.append(pair.live)
                if pair.spare is None:
                    pair.spare = self._new(node, key, kind, provider, options)
                    started.append(pair.spare)
        return started

    def _new(self, node: str, key: str, kind: str, provider: str, options: dict[str, Any]) -> Host:
        handle = self._start(node, kind, provider, options)
        return Host(handle, self._actor_id(handle), node, key, kind)

    def live(self, node: str, key: str) -> Host | None:
        pair = self._pairs.get((node, key))
        return None if pair is None else pair.live

    def for_node(self, node: str) -> dict[str, Host]:
        """Host key → live host on `node`."""
        return {k: p.live for (n, k), p in self._pairs.items() if n == node and p.live is not None}

    def hosts(self) -> list[Host]:
        return [h for p in self._pairs.values() for h in (p.live, p.spare) if h is not None]

    def lost(self, actor_id: str) -> Host | None:
        """A host died (a failed ping, or a call that found it dead): promote its node's spare
        if it was the live one, forget it, and start a replacement spare. Returns the live host
        of that node and model afterwards."""
        for (node, key), pair in self._pairs.items():
            if pair.live is not None and pair.live.actor_id == actor_id:
                log.warning("stage host %s on node %s died; promoting the spare", key, node[:12])
                self._stop(pair.live.handle)
                pair.live, pair.spare = pair.spare, None
                self.failovers += 1
            elif pair.spare is not None and pair.spare.actor_id == actor_id:
                self._stop(pair.spare.handle)
                pair.spare = None
            else:
                continue
            kind, provider, options = self._wanted.get(key, (pair_kind(pair), "", {}))
            if provider:
                if pair.live is None:
                    pair.live = self._new(node, key, kind, provider, options)
                pair.spare = self._new(node, key, kind, provider, options)
            return pair.live
        return None

    def summary(self) -> list[dict[str, Any]]:
        out = []
        for (node, key), pair in sorted(self._pairs.items()):
            for role, h in (("live", pair.live), ("spare", pair.spare)):
                if h is not None:
                    out.append(
                        {
                            "node_id": node,
                            "kind": h.kind,
                            "model": key,
                            "role": role,
                            "ready": h.ready,
                            "pid": h.pid,
                            **h.stats,
                        }
                    )
        return out

    def stop_all(self) -> None:
        for h in self.hosts():
            self._stop(h.handle)
        self._pairs.clear()


def pair_kind(pair: _Pair) -> str:
    h = pair.live or pair.spare
    return h.kind if h is not None else "stt"
