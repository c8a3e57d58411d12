"""Node-shared stage hosts (the `node` placement): one actor per node and model, with a spare.

`SttHostActor` serves every call on its node from a `StreamPool` of recognisers; decoding runs
in threads (pocketsphinx releases the GIL), so one long decode never holds up another call's
audio. A call's session worker talks to it through `HostedSTT`, an ordinary `STT` whose streams
keep the utterance's audio: if the host dies, the registry promotes the node's spare and the
utterance is replayed there (`HostSlot`), so the transcript still comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
import ray

from actors.stage_actors import RemoteSTT, ReplayingSttStream, placement
from actors.stage_failover import StageSlot
from actors.stream_pool import StreamPool
from actors.task_events import untracked
from providers.base import SttCapabilities, SttStream
from providers.registry import STT_PROVIDERS

log = logging.getLogger(__name__)

REAP_EVERY_S = 10.0


@ray.remote(num_cpus=0, max_restarts=0)
class SttHostActor:
    def __init__(
        self, provider: str, options: dict[str, Any], max_streams: int, preload: int = 1
    ) -> None:
        self.provider = provider
        self.pool = StreamPool(lambda: STT_PROVIDERS.create(provider, **options), max_streams)
        self._ready = asyncio.get_event_loop().create_task(self._load(preload))
        self._started = time.time()

    async def _load(self, preload: int) -> SttCapabilities:
        await asyncio.gather(*(self.pool.grow() for _ in range(max(1, preload))))
        self._reaping = asyncio.get_running_loop().create_task(self._reaper())
        return STT_PROVIDERS.resolve(self.provider).capabilities

    async def _reaper(self) -> None:
        while True:
            await asyncio.sleep(REAP_EVERY_S)
            with contextlib.suppress(Exception):
                await self.pool.reap_abandoned()

    async def describe(self) -> tuple[SttCapabilities, dict[str, Any]]:
        """Waits until the first recogniser is loaded and warmed up."""
        caps = await asyncio.shield(self._ready)
        return caps, placement()

    @untracked
    async def push(self, stream_id: str, pcm16: bytes) -> None:
        await self.pool.push(stream_id, pcm16)

    @untracked
    async def finish(self, stream_id: str) -> str:
        return await self.pool.finish(stream_id)

    async def release(self, owner: str) -> None:
        await self.pool.release(owner)

    @untracked
    def ping(self) -> str:
        return "ok"

    @untracked
    def stats(self) -> dict[str, Any]:
        rss = psutil.Process().memory_info().rss / 2**20
        return {**self.pool.summary(), "pid": os.getpid(), "rss_mb": round(rss, 1)}


class HostSlot(StageSlot):
    """The node's live host for one model. A death is handled once per node by the registry
    (`failover(dead)` promotes the spare); this slot only learns the new host, and never stops
    a host: it is shared."""

    def __init__(
        self,
        kind: str,
        actor: Any,
        pid: int | None,
        failover: Callable[[Any], Awaitable[tuple[Any, int | None]]],
    ) -> None:
        super().__init__(kind, actor, pid)
        self._failover = failover

    async def replace(self, dead: Any) -> Any:
        detected_at = time.time()
        async with self._lock:
            if self.actor is not dead:
                return self.actor
            self.actor, self.pid = await self._failover(dead)
            self.failovers += 1
        log.warning("%s stage host died; the node's spare took over (pid %s)", self.kind, self.pid)
        self._last = {"stage": self.kind, "via": "node_spare", "detected_at": detected_at}
        return self.actor

    def prepare_spare(self) -> None:
        return None

    def stop(self) -> None:
        return None


class HostedSTT(RemoteSTT):
    """The STT a call uses when its recogniser lives in the node's host: stream ids carry the
    call's name, so the host can tell calls apart and free what a call left behind."""

    def __init__(self, slot: StageSlot, capabilities: SttCapabilities, name: str, owner: str):
        super().__init__(slot, capabilities, name)
        self.owner = owner
        self._ids = itertools.count(1)

    def stream(self) -> SttStream:
        return ReplayingSttStream(self, f"{self.owner}/{next(self._ids)}")

    async def release(self) -> None:
        """The call ended: anything it left open on the host goes back to the pool."""
        with contextlib.suppress(Exception):
            await self.slot.actor.release.remote(self.owner)
