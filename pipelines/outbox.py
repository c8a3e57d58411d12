"""What a session sends to its client: reply audio and events, in order, drained by long-polls.

Items are typed (`providers.messages`): `AudioChunk`s and `Message`s; each consumer turns them
into its own wire (binary frames and JSON, a provider's codec, a media track). A consumer
(websocket relay, Python `receive_audio`/`events`) waits on an asyncio event, never busy-polls,
and takes everything of the kinds it wants in one call, so calls batch themselves under load. The
buffer is bounded: a client that stops reading loses the oldest items, not the process.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from providers.messages import AudioChunk, Message

MAX_ITEMS = 4000  # ~80 s of 20 ms audio chunks
MAX_AUDIO_BYTES = 8 << 20  # ~4 min of 16 kHz audio; also bounds a few very large chunks

Item = AudioChunk | Message


class Outbox:
    def __init__(self) -> None:
        self._items: deque[Item] = deque(maxlen=MAX_ITEMS)
        self._changed = asyncio.Event()
        self.closed = False
        self.audio_bytes_out = 0
        self.audio_dropped_bytes = 0  # dropped unread: the client was not reading

    def put_audio(self, chunk: AudioChunk) -> None:
        if chunk.pcm16:
            self._items.append(chunk)
            self.audio_bytes_out += len(chunk.pcm16)
            self._bound_audio()
            self._changed.set()

    def _bound_audio(self) -> None:
        queued = sum(len(i.pcm16) for i in self._items if isinstance(i, AudioChunk))
        if queued <= MAX_AUDIO_BYTES:
            return
        kept: deque[Item] = deque(maxlen=MAX_ITEMS)
        for item in self._items:  # the oldest audio goes first, events stay
            if isinstance(item, AudioChunk) and queued > MAX_AUDIO_BYTES:
                queued -= len(item.pcm16)
                self.audio_dropped_bytes += len(item.pcm16)
            else:
                kept.append(item)
        self._items = kept

    def put_event(self, message: Message) -> None:
        if not isinstance(message, Message):  # a dict here would reach a client's wire as-is
            raise TypeError(f"an outbox event is a providers.messages.Message, not {message!r}")
        self._items.append(message)
        self._changed.set()

    def clear_audio(self) -> int:
        kept = [item for item in self._items if not isinstance(item, AudioChunk)]
        dropped = len(self._items) - len(kept)
        self._items = deque(kept, maxlen=MAX_ITEMS)
        return dropped

    def take_audio(self, max_chunks: int = 1) -> list[AudioChunk]:
        """Take up to `max_chunks` queued audio chunks, oldest first, without waiting; events stay
        queued. For a consumer that paces itself (a real-time media track), so the audio not yet
        due stays here, where `clear_audio` (barge-in) can drop it."""
        taken: list[AudioChunk] = []
        items = self._items
        while items and isinstance(items[0], AudioChunk) and len(taken) < max_chunks:
            taken.append(items.popleft())  # type: ignore[arg-type]  # the usual case
        if len(taken) < max_chunks and self._has(audio=True, events=False):
            kept: deque[Item] = deque(maxlen=MAX_ITEMS)
            for item in self._items:
                if isinstance(item, AudioChunk) and len(taken) < max_chunks:
                    taken.append(item)
                else:
                    kept.append(item)
            self._items = kept
        return taken

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    def _take(self, *, audio: bool, events: bool) -> list[Item]:
        if audio and events:
            taken = list(self._items)
            self._items.clear()
            return taken
        taken = [item for item in self._items if _wanted(item, audio, events)]
        if taken:
            self._items = deque(
                (i for i in self._items if not _wanted(i, audio, events)), maxlen=MAX_ITEMS
            )
        return taken

    def _take_budget(self, max_audio_bytes: int) -> list[Item]:
        """Items in order, stopping before the audio chunk that would pass the budget (a first
        chunk larger than a non-zero budget still goes, so nothing starves)."""
        taken: list[Item] = []
        spent = 0
        while self._items:
            item = self._items[0]
            if isinstance(item, AudioChunk):
                size = len(item.pcm16)
                if spent + size > max_audio_bytes and (spent or max_audio_bytes <= 0):
                    break
                spent += size
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
        Returns {"items": [AudioChunk | Message, ...] in order, "closed": bool}.
        """
        budgeted = max_audio_bytes is not None and audio and events
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if budgeted:
                assert max_audio_bytes is not None
                items = self._take_budget(max_audio_bytes)
                if not items and self.closed and self._items:
                    return {"items": [], "closed": False}  # held back: not closed for the reader
            else:
                items = self._take(audio=audio, events=events)
            if items or self.closed:
                return {"items": items, "closed": self.closed and not self._has(audio, events)}
            remaining = deadline - loop.time()
            if remaining <= 0:
                return {"items": [], "closed": False}
            self._changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                pass

    def _has(self, audio: bool, events: bool) -> bool:
        return any(_wanted(item, audio, events) for item in self._items)


def _wanted(item: Item, audio: bool, events: bool) -> bool:
    return audio if isinstance(item, AudioChunk) else events
