"""A client's view of a session in-process: drains the outbox continuously."""

from __future__ import annotations

import asyncio
from typing import Any

from pipelines.session import SessionRuntime
from providers.messages import AudioChunk

RATE = 16000
FRAME = 640  # 20 ms at 16 kHz


def frames(pcm: bytes, silence_s: float = 1.0) -> list[bytes]:
    """`pcm` then `silence_s` of silence, in 20 ms frames."""
    pcm = pcm + bytes(int(RATE * silence_s) * 2)
    return [pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME)]


class Listener:
    """Drains the outbox continuously, like a connected client: events in order, audio bytes
    counted by the event they followed."""

    def __init__(self, rt: SessionRuntime) -> None:
        self.rt = rt
        self.events: list[dict[str, Any]] = []
        self.audio_after: dict[int, int] = {}  # event index → audio bytes received after it
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            out = await self.rt.outbox.poll(timeout_s=5)
            for item in out["items"]:  # kept as a client sees them: bytes and JSON dicts
                if isinstance(item, AudioChunk):
                    last = len(self.events) - 1
                    self.audio_after[last] = self.audio_after.get(last, 0) + len(item.pcm16)
                else:
                    self.events.append(item.to_wire())
            self._changed.set()

    async def until(self, pred: Any, timeout_s: float = 90) -> dict[str, Any]:
        seen = 0
        async with asyncio.timeout(timeout_s):
            while True:
                for event in self.events[seen:]:
                    if pred(event):
                        return event
                seen = len(self.events)
                self._changed.clear()
                await self._changed.wait()

    def audio_between(self, first: int, last: int) -> int:
        return sum(n for i, n in self.audio_after.items() if first <= i < last)

    def index(self, kind: str, start: int = 0) -> int:
        return next(i for i, e in enumerate(self.events) if i >= start and e["type"] == kind)

    def stop(self) -> None:
        self._task.cancel()
