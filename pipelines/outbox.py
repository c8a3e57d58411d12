"""What a session sends to its client: reply audio and JSON events, in order, drained by long-polls.

A consumer (websocket relay, Python `receive_audio`/`events`) waits on an asyncio event, never
busy-polls, and takes everything of the kinds it wants in one call, so calls batch themselves under
load. The buffer is bounded: a client that stops reading loses the oldest items, not the process.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Literal

MAX_ITEMS = 4000  # ~80 s of 20 ms audio chunks
AUDIO: Literal["audio"] = "audio"
EVENT: Literal["event"] = "event"


class Outbox:
    def __init__(self) -> None:
        self._items: deque[tuple[str, Any]] = deque(maxlen=MAX_ITEMS)
        self._changed = asyncio.Event()
        self.closed = False
        self.audio_bytes_out = 0

    def put_audio(self, pcm16: bytes) -> None:
        if pcm16:
            self._items.append((AUDIO, pcm16))
            self.audio_bytes_out += len(pcm16)
            self._changed.set()

    def put_event(self, event: dict[str, Any]) -> None:
        self._items.append((EVENT, event))
        self._changed.set()

    def clear_audio(self) -> int:
        kept = [item for item in self._items if item[0] != AUDIO]
        dropped = len(self._items) - len(kept)
        self._items = deque(kept, maxlen=MAX_ITEMS)
        return dropped

    def take_audio(self, max_chunks: int = 1) -> list[bytes]:
        """Take up to `max_chunks` queued audio chunks, oldest first, without waiting; events stay
        queued. For a consumer that paces itself (a real-time media track), so the audio not yet
        due stays here, where `clear_audio` (barge-in) can drop it."""
        taken: list[bytes] = []
        while self._items and self._items[0][0] == AUDIO and len(taken) < max_chunks:
            taken.append(self._items.popleft()[1])  # the usual case: events are drained apart
        if len(taken) < max_chunks and self._has({AUDIO}):
            kept: deque[tuple[str, Any]] = deque(maxlen=MAX_ITEMS)
            for item in self._items:
                if item[0] == AUDIO and len(taken) < max_chunks:
                    taken.append(item[1])
                else:
                    kept.append(item)
            self._items = kept
        return taken

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    def _take(self, kinds: set[str]) -> list[tuple[str, Any]]:
        if len(kinds) == 2:
            taken = list(self._items)
            self._items.clear()
            return taken
        taken = [item for item in self._items if item[0] in kinds]
        if taken:
            self._items = deque((i for i in self._items if i[0] not in kinds), maxlen=MAX_ITEMS)
        return taken

    async def poll(
        self, *, audio: bool = True, events: bool = True, timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """Wait until something of the wanted kinds is queued (or timeout/close); take it all.

        Returns {"items": [(kind, payload), ...] in order, "closed": bool}.
        """
        kinds = {k for k, wanted in ((AUDIO, audio), (EVENT, events)) if wanted}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            items = self._take(kinds)
            if items or self.closed:
                return {"items": items, "closed": self.closed and not self._has(kinds)}
            remaining = deadline - loop.time()
            if remaining <= 0:
                return {"items": [], "closed": False}
            self._changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                pass

    def _has(self, kinds: set[str]) -> bool:
        return any(item[0] in kinds for item in self._items)
