"""Cartesia text-to-speech over its `/tts/websocket`, through the official SDK's connection.

One websocket per session, opened by `connect()` when the stage starts (before the first turn) and
reopened on demand if it drops. One `context_id` per turn (`begin_turn`/`end_turn`): each sentence
the pipeline speaks goes on it with `continue: true` and `flush: true`, and its audio — raw
`pcm_s16le` at the configured rate, in `chunk` messages — ends at that flush's `flush_done`; the
turn ends with an empty `continue: false` input. An `error` message becomes a `BackendError`; a
sentence closed before its audio is complete (a barge-in) sends `cancel` for the turn's context.

The SDK's own per-context reader stops silently when the socket drops, which would leave a turn
waiting forever, so one reader task here routes messages to the contexts and tells every waiting
context when the connection is gone (→ `connection_failed`, retried by the pipeline).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from backend.errors import BackendError, ErrorCode
from providers.base import TTS, TtsCapabilities
from providers.cartesia.config import (
    CartesiaConfig,
    client,
    connection_error,
    error_from_event,
    parse_options,
)

log = logging.getLogger(__name__)

_DROPPED = object()  # put on every context's queue when the socket goes away


@dataclass(slots=True)
class _Turn:
    """The context of one reply: every sentence of the turn goes on it."""

    turn_id: int
    context_id: str | None = None
    conn: Any = None
    flushes: int = 0
    busy: bool = False  # a sentence is being generated
    cancelled: bool = False


class CartesiaTTS(TTS):
    name = "cartesia"

    def __init__(self, **options: Any) -> None:
        self.cfg: CartesiaConfig = parse_options(options)
        self.cfg.key()  # fail at configuration time, not on the first reply
        self.capabilities = TtsCapabilities(streaming=True, sample_rate_hz=self.cfg.sample_rate)
        self._client = client(self.cfg)
        self._conn: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._contexts: dict[str, asyncio.Queue[Any]] = {}
        self._lock = asyncio.Lock()
        self.connections_opened = 0
        self._turn: _Turn | None = None
        self.word_timestamps: list[dict[str, Any]] = []  # of the last turn, when asked

    async def connect(self) -> None:
        await self._connection()

    async def _connection(self) -> Any:
        async with self._lock:
            if self._conn is not None:
                return self._conn
            try:
                conn = await self._client.tts.websocket_connect().enter()
            except Exception as exc:
                raise connection_error("cartesia.tts.connect", exc) from None
            conn._manager = None  # reconnects are ours (counted by the retry policy), not the SDK's
            self._conn, self.connections_opened = conn, self.connections_opened + 1
            self._reader = asyncio.create_task(self._read(conn), name="cartesia-tts-reader")
            return conn

    async def _read(self, conn: Any) -> None:
        try:
            while True:
                event = conn.parse_event(await conn.recv_bytes())
                ctx = getattr(event, "context_id", None)
                targets = [self._contexts[ctx]] if ctx in self._contexts else []
                if ctx is None and event.type == "error":  # a connection-level error: tell all
                    targets = list(self._contexts.values())
                for q in targets:
                    q.put_nowait(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # closed or garbled: this connection is finished
            log.info("cartesia tts connection ended: %s", type(exc).__name__)
        finally:
            if self._conn is conn:
                self._conn = None
            for q in self._contexts.values():
                q.put_nowait(_DROPPED)

    def _request(self, context_id: str, transcript: str, more: bool) -> dict[str, Any]:
        cfg = self.cfg
        req: dict[str, Any] = {
            "context_id": context_id,
            "model_id": cfg.model_id,
            "transcript": transcript,
            "voice": {"mode": "id", "id": cfg.voice_id},
            "output_format": {
                "container": "raw",
                "encoding": "pcm_s16le",
                "sample_rate": cfg.sample_rate,
            },
            "language": cfg.language,
            "continue": more,
        }
        if cfg.add_timestamps:
            req["add_timestamps"] = True
        return req

    # -- turns: one context per reply --------------------------------------------------------
    async def begin_turn(self, turn_id: int) -> None:
        await self.end_turn(self._turn.turn_id if self._turn else -1, interrupted=True)
        self._turn = _Turn(turn_id)
        self.word_timestamps = []

    async def end_turn(self, turn_id: int, interrupted: bool = False) -> None:
        """No more input for the turn's context (`continue: false`); after a barge-in (or while
        a sentence is still being generated) `cancel` it instead."""
        turn = self._turn
        if turn is None or turn.turn_id != turn_id:
            return
        self._turn = None
        if turn.context_id is None or turn.cancelled or turn.conn is not self._conn:
            return
        self._contexts.pop(turn.context_id, None)
        with contextlib.suppress(Exception):
            if turn.busy or interrupted:
                await turn.conn.send({"context_id": turn.context_id, "cancel": True})
            else:
                await turn.conn.send(self._request(turn.context_id, "", False))

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """Within a turn: the sentence goes on the turn's context with `continue: true` and
        `flush: true`, and its audio ends at that flush's `flush_done`. Outside a turn: a
        context of its own, closed by an empty `continue: false` input, ending at `done`."""
        if not text.strip():
            return
        conn = await self._connection()
        turn = self._turn
        if turn is not None and (turn.conn is not conn or turn.context_id is None):
            if turn.context_id is not None:
                self._contexts.pop(turn.context_id, None)
            turn.conn, turn.context_id, turn.flushes = conn, uuid.uuid4().hex, 0  # (re)opened
            self._contexts[turn.context_id] = asyncio.Queue()
        context_id = turn.context_id if turn is not None else uuid.uuid4().hex
        assert context_id is not None
        queue = self._contexts.setdefault(context_id, asyncio.Queue())
        if turn is None:
            self.word_timestamps = []
        finished = False
        try:
            try:
                if turn is not None:
                    turn.busy, turn.flushes = True, turn.flushes + 1
                    # Inputs on a context are joined verbatim: keep the space between sentences.
                    await conn.send({**self._request(context_id, text + " ", True), "flush": True})
                else:
                    await conn.send(self._request(context_id, text, True))
                    await conn.send(self._request(context_id, "", False))  # no more input
            except Exception as exc:
                raise connection_error("cartesia.tts.send", exc) from None
            while True:
                event = await queue.get()
                if event is _DROPPED:
                    finished = True
                    raise BackendError(
                        "cartesia.tts",
                        ErrorCode.CONNECTION_FAILED,
                        "cartesia connection dropped during synthesis",
                    )
                if event.type == "chunk":
                    audio = event.audio
                    if audio:
                        yield audio
                elif event.type == "timestamps" and event.word_timestamps is not None:
                    w = event.word_timestamps
                    self.word_timestamps += [
                        {"word": a, "start_s": b, "end_s": c}
                        for a, b, c in zip(w.words, w.start, w.end, strict=False)
                    ]
                elif event.type == "error":
                    finished = True
                    if turn is not None:
                        turn.context_id = None  # the context is dead; a retry opens another
                    raise error_from_event("cartesia.tts", event)
                if (
                    turn is not None
                    and event.type == "flush_done"
                    and (event.flush_id is None or event.flush_id >= turn.flushes)
                ):
                    finished = True
                    return
                if event.type == "done" or (event.type == "chunk" and event.done):
                    finished = True
                    return
        finally:
            if turn is not None:
                turn.busy = False
            if not finished and self._conn is conn:  # closed early: a barge-in
                if turn is not None:
                    turn.cancelled = True
                with contextlib.suppress(Exception):
                    await conn.send({"context_id": context_id, "cancel": True})
            if turn is None or turn.cancelled:
                self._contexts.pop(context_id, None)

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
