"""A warm pool driven without Ray: workers are plain records, started, warmed and stopped by
the functions the pool is given (the seam the registry fills with Ray's)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from actors.profile import WorkerProfile, cpu_cores_per_call
from actors.warm_pool import WarmPool, WorkerOps
from backend.iface import Config


@dataclass
class Processes:
    """What the pool asked for, in order."""

    started: list[tuple[str, str]] = field(default_factory=list)  # (name, node)
    stopped: list[str] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)  # warming finishes when set

    def ops(self) -> WorkerOps:
        def start(name: str, node_id: str, profile: WorkerProfile) -> str:
            self.started.append((name, node_id))
            return name

        async def warm(handle: str) -> None:
            await self.gate.wait()

        return WorkerOps(start=start, warm=warm, stop=self.stopped.append)


def make_pool(
    procs: Processes, nodes: dict[str, int], cpus: float = 2.0, **config: Any
) -> WarmPool:
    pool = WarmPool(procs.ops())
    cfg = Config(**{"warm_pool_size": 0, "speech_load_threshold": 0.0, **config})
    pool.set_nodes(nodes, {n: cpus for n in nodes})
    pool.configure(cfg, WorkerProfile.from_config(cfg, {}))
    pool.cpu_share = cpu_cores_per_call(cfg)  # the local provider's: pocketsphinx declares it
    return pool


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)
