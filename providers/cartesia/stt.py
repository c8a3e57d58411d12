"""Cartesia streaming speech-to-text over its `/stt/websocket` (manual finalize), official SDK.

One websocket per session, opened when the stage starts and reopened on demand. An utterance's
audio goes out as binary `pcm_s16le` frames while the user speaks; `finish` sends `finalize` and
joins the `is_final` transcript deltas (verbatim, as the API asks) until `flush_done`. An
abandoned utterance is finalized too and its text discarded, so the next one starts clean.

Each utterance keeps its audio until it is finished: if the socket drops, `finish` reconnects and
sends it again, and a failure to do so is `connection_failed` — retried by the pipeline per
`max_retries`/`retry_delay`, then reported as the session's `error` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from backend.errors import BackendError, ErrorCode
from providers.base import STT, SttCapabilities, SttStream
from providers.cartesia.config import (
    CartesiaConfig,
    client,
    connection_error,
    error_from_event,
    parse_options,
)

log = logging.getLogger(__name__)

_DROPPED = object()


class CartesiaSttStream(SttStream):
    def __init__(self, owner: CartesiaSTT) -> None:
        self._owner = owner
        self.audio = bytearray()  # kept until finished: resent after a reconnect
        self.sent = 0  # bytes of `audio` sent on the owner's current connection
        self.conn: Any = None

    async def push(self, pcm16: bytes) -> None:
        if len(pcm16) % 2:
            raise BackendError(
                "cartesia.stt.push",
                ErrorCode.INVALID_FORMAT,
                f"PCM16 needs an even number of bytes, got {len(pcm16)}",
            )
        self.audio += pcm16
        with contextlib.suppress(BackendError):  # a drop is repaired by `finish`
            await self._owner._send_pending(self)

    async def finish(self) -> str:
        return await self._owner._finalize(self, keep=True)

    async def aclose(self) -> None:
        with contextlib.suppress(BackendError):
            await self._owner._finalize(self, keep=False)


class CartesiaSTT(STT):
    name = "cartesia"

    def __init__(self, **options: Any) -> None:
        self.cfg: CartesiaConfig = parse_options(options)
        self.cfg.key()
        self.capabilities = SttCapabilities(streaming=True, sample_rate_hz=self.cfg.stt_sample_rate)
        self._client = client(self.cfg)
        self._conn: Any = None
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one finalize at a time on the socket
        self.connections_opened = 0

    def stream(self) -> SttStream:
        return CartesiaSttStream(self)

    async def connect(self) -> None:
        await self._connection()

    async def _connection(self) -> Any:
        if self._conn is not None:
            return self._conn
        try:
            conn = await self._client.stt.manual_finalize.websocket(
                model=self.cfg.stt_model,
                encoding="pcm_s16le",
                sample_rate=self.cfg.stt_sample_rate,
                language=self.cfg.language,
            ).enter()
        except Exception as exc:
            raise connection_error("cartesia.stt.connect", exc) from None
        self._conn, self.connections_opened = conn, self.connections_opened + 1
        self._events = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(conn, self._events), name="cartesia-stt")
        return conn

    async def _read(self, conn: Any, events: asyncio.Queue[Any]) -> None:
        try:
            while True:
                events.put_nowait(conn.parse_event(await conn.recv_bytes()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("cartesia stt connection ended: %s", type(exc).__name__)
        finally:
            if self._conn is conn:
                self._conn = None
            events.put_nowait(_DROPPED)

    async def _send_pending(self, s: CartesiaSttStream) -> None:
        conn = await self._connection()
        if s.conn is not conn:  # a new connection: this utterance starts over on it
            s.conn, s.sent = conn, 0
        if s.sent < len(s.audio):
            chunk = bytes(s.audio[s.sent :])
            try:
                await conn.send_raw(chunk)
            except Exception as exc:
                raise connection_error("cartesia.stt.send", exc) from None
            s.sent += len(chunk)

    async def _finalize(self, s: CartesiaSttStream, keep: bool) -> str:
        async with self._lock:
            if not s.audio:
                return ""
            await self._send_pending(s)
            events = self._events
            try:
                await s.conn.send("finalize")
            except Exception as exc:
                raise connection_error("cartesia.stt.finalize", exc) from None
            parts: list[str] = []
            while True:
                event = await events.get()
                if event is _DROPPED:
                    raise BackendError(
                        "cartesia.stt",
                        ErrorCode.CONNECTION_FAILED,
                        "cartesia connection dropped before the transcript",
                    )
                if event.type == "transcript" and event.is_final:
                    parts.append(event.text)
                elif event.type == "error":
                    s.audio.clear()  # the service rejected it: do not send it again
                    raise error_from_event("cartesia.stt", event)
                elif event.type in ("flush_done", "done"):
                    break
            s.audio.clear()
            return "".join(parts).strip() if keep else ""

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
