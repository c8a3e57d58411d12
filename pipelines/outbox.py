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
MAX_AUDIO_BYTES = 8 << 20  # ~4 min of 16 kHz audio; also bounds a few very large chunks
AUDIO: Literal["audio"] = "audio"
EVENT: Literal["event"] = "event"


class Outbox:
    def __init__(self) -> None:
        self._items: deque[tuple[str, Any]] = deque(maxlen=MAX_ITEMS)
        self._changed = asyncio.Event()
        self.closed = False
        self.audio_bytes_out = 0
        self.audio_dropped_bytes = 0  # dropped unread: the client was not reading

    def put_audio(self, pcm16: bytes) -> None:
        if pcm16:
            self._items.append((AUDIO, pcm16))
            self.audio_bytes_out += len(pcm16)
            self._bound_audio()
            self._changed.set()

    def _bound_audio(self) -> None:
        queued = sum(len(p) for k, p in self._items if k == AUDIO)
        if queued <= MAX_AUDIO_BYTES:
            return
        kept: deque[tuple[str, Any]] = deque(maxlen=MAX_ITEMS)
        for item in self._items:  # the oldest audio goes first, events stay
            if item[0] == AUDIO and queued > MAX_AUDIO_BYTES:
                queued -= len(item[1])
                self.audio_dropped_bytes += len(item[1])
            else:
                kept.append(item)
        self._items = kept

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

    def _take_budget(self, max_audio_bytes: int) -> list[tuple[str, Any]]:
        """Items in order, stopping before the audio chunk that would pass the budget (a first
        chunk larger than a non-zero budget still goes, so nothing starves)."""
        taken: list[tuple[str, Any]] = []
        spent = 0
        while self._items:
            kind, payload = self._items[0]
            if kind == AUDIO:
                if spent + len(payload) > max_audio_bytes and (spent or max_audio_bytes <= 0):
                    break
                spent += len(payload)
            taken.append(self._items.popleft())
        return taken

    async def poll(
        self,
        *,
        audio: bool = True,
        events: bool = True,
        timeout_s: float = 10.0,
        max_audio_bytes: int | None = None,
    ) -> dict[str, Any]:
        """Wait until something of the wanted kinds is queued (or timeout/close); take it all.

        `max_audio_bytes` (both kinds wanted): a paced consumer's budget; audio past it, and
        whatever follows it, stays queued — bounded here, and still droppable on barge-in.
        Returns {"items": [(kind, payload), ...] in order, "closed": bool}.
        """
        kinds = {k for k, wanted in ((AUDIO, audio), (EVENT, events)) if wanted}
        budgeted = max_audio_bytes is not None and len(kinds) == 2
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if budgeted:
                assert max_audio_bytes is not None
                items = self._take_budget(max_audio_bytes)
                if not items and self.closed and self._items:
                    return {"items": [], "closed": False}  # held back: not closed for the reader
            else:
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
