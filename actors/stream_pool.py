"""`StreamPool`: a node's recognisers, shared by all its calls (the `node` stage placement).

A recogniser (a pocketsphinx decoder holds ~90 MB of model) is taken when an utterance starts
and given back at its final, so an idle call holds none. The pool grows up to `max_size`, what
the node's CPUs can decode at once; beyond that an utterance waits for one (the queue is
reported). Pure asyncio, no Ray: the stage host actor wraps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backend.errors import BackendError, ErrorCode
from providers.base import STT, SttStream

log = logging.getLogger(__name__)

ABANDONED_S = 30.0  # an utterance with no audio for this long was left by a call that died


@dataclass(slots=True)
class _Open:
    owner: str  # the call: a new utterance of the same call ends its older ones
    stt: STT
    stream: SttStream
    used_at: float


def owner_of(stream_id: str) -> str:
    """Stream ids are `<call>/<utterance>`."""
    return stream_id.rpartition("/")[0]


class StreamPool:
    def __init__(self, create: Callable[[], STT], max_size: int) -> None:
        self._create = create
        self.max_size = max(1, max_size)
        self._free: list[STT] = []
        self._size = 0  # recognisers loaded or loading
        self._open: dict[str, _Open] = {}
        self._available = asyncio.Condition()
        self.waiting = 0  # utterances queued for a recogniser
        self._growing: set[asyncio.Task[None]] = set()
        self.stats = {"utterances": 0, "queued": 0, "abandoned": 0}

    async def grow(self) -> None:
        """Load one more recogniser (in a thread: loading takes ~0.5 s) and warm it up."""
        self._size += 1
        try:
            stt = await asyncio.to_thread(self._create)
            await stt.connect()
            warm_up = getattr(stt, "warm_up", None)
            if warm_up is not None:
                await warm_up()
        except BaseException:
            self._size -= 1
            raise
        async with self._available:
            self._free.append(stt)
            self._available.notify()

    async def _take(self) -> STT:
        async with self._available:
            if not self._free and self._size < self.max_size:
                task = asyncio.get_running_loop().create_task(self._grow_quietly())
                self._growing.add(task)  # kept referenced until done (asyncio holds it weakly)
                task.add_done_callback(self._growing.discard)
            if not self._free:
                self.waiting += 1
                self.stats["queued"] += 1
                try:
                    await self._available.wait_for(lambda: bool(self._free))
                finally:
                    self.waiting -= 1
            return self._free.pop()

    async def _grow_quietly(self) -> None:
        try:
            await self.grow()
        except Exception as exc:  # the waiting utterance gets the next free one instead
            log.warning("could not load another recogniser: %s", exc)

    async def _give_back(self, entry: _Open) -> None:
        async with self._available:
            self._free.append(entry.stt)
            self._available.notify()

    async def push(self, stream_id: str, pcm16: bytes) -> None:
        entry = self._open.get(stream_id)
        if entry is None:
            owner = owner_of(stream_id)
            for old in [k for k, e in self._open.items() if e.owner == owner]:
                await self.drop(old)  # one utterance at a time per call
            stt = await self._take()
            entry = _Open(owner, stt, stt.stream(), time.monotonic())
            self._open[stream_id] = entry
            self.stats["utterances"] += 1
        entry.used_at = time.monotonic()
        await entry.stream.push(pcm16)

    async def finish(self, stream_id: str) -> str:
        entry = self._open.get(stream_id)
        if entry is None:
            return ""
        try:
            text = await entry.stream.finish()
        except BackendError:
            raise  # kept open: the pipeline's retry policy may finish it again
        except Exception as exc:
            await self.drop(stream_id)
            raise BackendError("stt.finish", ErrorCode.PIPELINE_ERROR, str(exc)) from exc
        if self._open.pop(stream_id, None) is not None:
            await self._give_back(entry)
        return text

    async def drop(self, stream_id: str) -> None:
        entry = self._open.pop(stream_id, None)
        if entry is None:
            return
        with contextlib.suppress(Exception):
            await entry.stream.aclose()
        await self._give_back(entry)

    async def release(self, owner: str) -> None:
        """A call ended: whatever it left open goes back to the pool."""
        for stream_id in [k for k, e in self._open.items() if e.owner == owner]:
            await self.drop(stream_id)

    async def reap_abandoned(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        stale = [k for k, e in self._open.items() if now - e.used_at > ABANDONED_S]
        for stream_id in stale:
            await self.drop(stream_id)
        self.stats["abandoned"] += len(stale)
        return len(stale)

    def summary(self) -> dict[str, Any]:
        return {
            "recognisers": self._size,
            "max_recognisers": self.max_size,
            "in_use": len(self._open),
            "free": len(self._free),
            "queue": self.waiting,
            **self.stats,
        }

    async def aclose(self) -> None:
        for stream_id in list(self._open):
            await self.drop(stream_id)
        for stt in self._free:
            with contextlib.suppress(Exception):
                await stt.aclose()
        self._free.clear()
