"""Cartesia text-to-speech over its `/tts/websocket`, through the official SDK's connection.

One websocket per session, opened by `connect()` when the stage starts (before the first turn) and
reopened on demand if it drops. Each `synthesize()` is one `context_id`: its text is sent with
`continue: true` and closed by an empty `continue: false` input, audio comes back as raw
`pcm_s16le` at the configured rate in `chunk` messages until `done`; an `error` message becomes a
`BackendError`. A generation closed before `done` (a barge-in) sends `cancel` for its context.

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
        self.word_timestamps: list[dict[str, Any]] = []  # of the last generation, when asked

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

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        if not text.strip():
            return
        conn = await self._connection()
        context_id = uuid.uuid4().hex
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._contexts[context_id] = queue
        self.word_timestamps = []
        finished = False
        try:
            try:
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
                    raise error_from_event("cartesia.tts", event)
                if getattr(event, "done", False) and event.type in ("chunk", "done"):
                    finished = True
                    return
        finally:
            self._contexts.pop(context_id, None)
            if not finished and self._conn is conn:  # closed early: a barge-in
                with contextlib.suppress(Exception):
                    await conn.send({"context_id": context_id, "cancel": True})

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
