"""OpenAI Realtime as the s2s stage (`s2s_provider="openai_realtime"`), through the official SDK's
websocket client (`AsyncOpenAI.realtime.connect`), GA protocol.

The session is configured once per connection (`session.update`: pcm16 24 kHz both ways, voice,
instructions, `server_vad`/`semantic_vad`, input transcription); user audio goes out as
`input_audio_buffer.append`; server events come back as `S2sEvent`s. Barge-ins are decided by the
session side, which knows what the user heard: the server is told not to cancel on its own
(`interrupt_response: false`), and `interrupt(played_ms)` sends `response.cancel` (if the reply
is still being generated) and `conversation.item.truncate` at what was heard.

The conversation is mirrored here as text, item by item, so that a new connection can carry it:
after a dropped connection (re-opened `max_retries` times with backoff from `retry_delay`, then a
clean `error` event) and before the service's session-length limit (`max_session_s`, at the first
quiet moment), a fresh connection is opened, configured and given the history as items.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import openai
from websockets.exceptions import ConnectionClosed

from backend.errors import BackendError, ErrorCode
from providers.base import S2S, S2sCapabilities, S2sEvent, S2sOptions, S2sSession
from providers.openai.config import (
    REALTIME_ERROR_CODES,
    RealtimeOptions,
    openai_error,
    parse_options,
)
from providers.retry import RetryPolicy, call_with_retry

log = logging.getLogger(__name__)

RATE_HZ = 24000  # the API's pcm16 rate
_QUIET_POLL_S = 0.2
# Server event names: GA first, then the beta API's, which some compatible servers still speak.
_AUDIO_DELTA = {"response.output_audio.delta", "response.audio.delta"}
_TRANSCRIPT_DELTA = {"response.output_audio_transcript.delta", "response.audio_transcript.delta"}
_BENIGN_ERRORS = {"response_cancel_not_active"}  # a cancel racing the reply's own end


class OpenAIRealtimeS2S(S2S):
    name = "openai_realtime"
    capabilities = S2sCapabilities(sample_rate_hz=RATE_HZ, server_turn_detection=True)

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(RealtimeOptions, self.name, options)

    async def connect(self, options: S2sOptions) -> S2sSession:
        session = OpenAIRealtimeSession(self.options, options)
        await session.start()
        return session


class OpenAIRealtimeSession(S2sSession):
    def __init__(self, cfg: RealtimeOptions, options: S2sOptions) -> None:
        self.cfg = cfg
        self.options = options
        self.retry: RetryPolicy = options.retry
        self._client = cfg.client(
            timeout_s=self.retry.timeout_s, websocket_base_url=cfg.websocket_base_url
        )
        self._conn: Any = None
        self._connected_at = 0.0
        self._events: asyncio.Queue[S2sEvent | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._failed = False
        # The conversation as text, in item order: carried over to a new connection.
        self._carried: list[tuple[str, str]] = list(options.history)
        self._items: dict[str, list[str]] = {}  # item id → [role, text]
        self._response_id = ""  # the reply being generated, "" when none
        self._audio_item = ""  # the last assistant item with audio, and how much it has
        self._audio_ms: dict[str, float] = {}
        self._user_speaking = False
        self._turn_pending = False  # the user's turn ended, the reply has not started yet
        self.connections = 0  # opened so far (first one included)

    # -- connection ------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            self._conn = await call_with_retry("openai_realtime.connect", self._open, self.retry)
        except BaseException:
            await self._client.close()
            raise
        self._tasks = [
            asyncio.create_task(self._read(), name="openai-realtime-reader"),
            asyncio.create_task(self._rotate_before_expiry(), name="openai-realtime-rotator"),
        ]

    async def _open(self) -> Any:
        """One connection, configured and carrying the conversation so far."""
        manager = self._client.realtime.connect(model=self.cfg.model)
        try:
            conn = await manager.enter()
        except Exception as exc:
            raise openai_error("openai_realtime.connect", exc) from None
        try:
            first = json.loads(await conn.recv_bytes())  # `session.created`, or why not
            if first.get("type") == "error":
                raise _error_from_event(first)
            await conn.session.update(session=self._session_config())
            for role, text in self.history():
                kind = "output_text" if role == "assistant" else "input_text"
                await conn.conversation.item.create(
                    item={
                        "type": "message",
                        "role": role,
                        "content": [{"type": kind, "text": text}],
                    }
                )
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await conn.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise openai_error("openai_realtime.connect", exc) from None
        self.connections += 1
        self._connected_at = time.monotonic()
        self._carried = self.history()
        self._items.clear()
        self._audio_ms.clear()
        self._response_id = self._audio_item = ""
        self._user_speaking = self._turn_pending = False
        return conn

    def _session_config(self) -> dict[str, Any]:
        cfg, opts = self.cfg, self.options
        turn: dict[str, Any] = {
            "type": cfg.turn_detection or opts.turn_detection,
            "create_response": True,
            "interrupt_response": False,  # barge-ins are decided by the session, see above
        }
        if turn["type"] == "server_vad":
            turn["silence_duration_ms"] = int(opts.min_silence_s * 1000)
            if cfg.vad_threshold is not None:
                turn["threshold"] = cfg.vad_threshold
        pcm = {"type": "audio/pcm", "rate": RATE_HZ}
        audio_in: dict[str, Any] = {"format": pcm, "turn_detection": turn}
        if cfg.transcription_model:
            audio_in["transcription"] = {"model": cfg.transcription_model}
        return {
            "type": "realtime",
            "output_modalities": ["audio"],
            "instructions": cfg.instructions or opts.instructions,
            "audio": {
                "input": audio_in,
                "output": {"format": pcm, "voice": opts.voice or cfg.voice},
            },
        }

    def history(self) -> list[tuple[str, str]]:
        """The conversation as (role, text): what a new connection is given."""
        current = [(r, t.strip()) for r, t in self._items.values() if t.strip()]
        return [*self._carried, *current]

    async def _reconnect(self, why: str) -> bool:
        """After a lost connection: retry per the policy, then end with a clear error."""
        if self._response_id:  # the reply in flight is lost: let the session finish its turn
            self._put(S2sEvent("response_done", response_id=self._response_id))
        lost = BackendError("openai_realtime.reconnect", ErrorCode.CONNECTION_FAILED, why)
        tried = 0

        async def attempt() -> Any:
            nonlocal tried
            tried += 1
            return await self._open()

        try:
            self._conn = await call_with_retry(
                "openai_realtime.reconnect",
                attempt,
                self.retry,
                timeout_code=ErrorCode.CONNECTION_TIMEOUT,
                after_failure=lost,
            )
        except BackendError as last:
            reason = f" (last attempt: {last.message})" if tried else ""
            code = ErrorCode.CONNECTION_FAILED if last.retryable else last.code
            self._put(
                S2sEvent(
                    "error",
                    code=code.value,
                    message=f"OpenAI Realtime connection lost ({why}) and not restored after "
                    f"{tried} retries{reason}",
                )
            )
            return False
        log.info("openai_realtime: reconnected after %s (attempt %d)", why, tried)
        return True

    async def _rotate_before_expiry(self) -> None:
        """Move to a fresh connection before the service's session-length limit."""
        while not self._closing:
            age = time.monotonic() - self._connected_at
            await asyncio.sleep(max(self.cfg.max_session_s - age, 0.0))
            if self._closing or time.monotonic() - self._connected_at < self.cfg.max_session_s:
                continue  # reconnected meanwhile: a new deadline
            waited = 0.0  # never cut a turn; past the timeout, the turn is presumed dead
            while self._busy() and waited < self.retry.timeout_s:
                await asyncio.sleep(_QUIET_POLL_S)
                waited += _QUIET_POLL_S
            old = self._conn
            try:
                self._conn = await call_with_retry("openai_realtime.rotate", self._open, self.retry)
            except BackendError as exc:  # the old one lives on; the service's close will tell
                log.warning("openai_realtime: rotation failed: %s", exc)
                self._connected_at = time.monotonic()
                continue
            log.info("openai_realtime: rotated to a fresh session before the length limit")
            with contextlib.suppress(Exception):
                await old.close()

    def _busy(self) -> bool:
        return bool(self._response_id or self._user_speaking or self._turn_pending)

    # -- server events ---------------------------------------------------------------------
    async def _read(self) -> None:
        try:
            while not self._closing:
                conn = self._conn
                try:
                    raw = await conn.recv_bytes()
                except ConnectionClosed as exc:
                    if self._closing:
                        break
                    if conn is not self._conn:
                        continue  # rotated: read the new connection
                    why = f"closed {exc.rcvd.code if exc.rcvd else 1006}"
                    if exc.rcvd and exc.rcvd.reason:
                        why += f": {exc.rcvd.reason}"
                    if not await self._reconnect(why):
                        self._failed = True
                        break
                    continue
                try:
                    event = json.loads(raw)
                except ValueError:
                    log.warning("openai_realtime: ignoring a non-JSON message")
                    continue
                self._dispatch(event)
        finally:
            self._events.put_nowait(None)

    def _dispatch(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type", "")
        if kind in _AUDIO_DELTA:
            pcm = base64.b64decode(ev.get("delta", ""))
            item = ev.get("item_id", "")
            self._audio_item = item
            self._audio_ms[item] = self._audio_ms.get(item, 0.0) + len(pcm) / 2 / RATE_HZ * 1000
            self._put(S2sEvent("audio", audio=pcm, response_id=ev.get("response_id", "")))
        elif kind in _TRANSCRIPT_DELTA:
            delta = ev.get("delta", "")
            self._item(ev.get("item_id", ""), "assistant")[1] += delta
            self._put(
                S2sEvent("agent_transcript", text=delta, response_id=ev.get("response_id", ""))
            )
        elif kind == "input_audio_buffer.speech_started":
            self._user_speaking = True
            self._item(ev.get("item_id", ""), "user")
            self._put(S2sEvent("speech_started"))
        elif kind == "input_audio_buffer.speech_stopped":
            self._user_speaking = False
            self._turn_pending = True
            self._put(S2sEvent("speech_stopped"))
        elif kind == "conversation.item.input_audio_transcription.completed":
            text = ev.get("transcript", "")
            self._item(ev.get("item_id", ""), "user")[1] = text
            self._put(S2sEvent("user_transcript", text=text))
        elif kind == "response.created":
            self._response_id = ev.get("response", {}).get("id", "")
            self._turn_pending = False
        elif kind == "response.output_item.added":
            item = ev.get("item", {})
            if item.get("type") == "message":
                self._item(item.get("id", ""), item.get("role", "assistant"))
        elif kind == "response.done":
            self._response_done(ev.get("response", {}))
        elif kind == "error":
            err = ev.get("error", {})
            if err.get("code") == "session_expired":
                log.info("openai_realtime: session expired; the close will reconnect")
            elif err.get("code") not in _BENIGN_ERRORS:
                e = _error_from_event(ev)
                self._put(S2sEvent("error", code=e.code.value, message=e.message))

    def _response_done(self, response: dict[str, Any]) -> None:
        rid = response.get("id", "") or self._response_id
        if rid == self._response_id:
            self._response_id = ""
        if response.get("status") == "failed":
            err = (response.get("status_details") or {}).get("error") or {}
            self._put(
                S2sEvent(
                    "error",
                    code=ErrorCode.PIPELINE_ERROR.value,
                    message=f"OpenAI Realtime reply failed: {err.get('message') or 'no detail'}",
                )
            )
        self._put(S2sEvent("response_done", response_id=rid))

    def _item(self, item_id: str, role: str) -> list[str]:
        return self._items.setdefault(item_id, [role, ""])

    def _put(self, event: S2sEvent) -> None:
        self._events.put_nowait(event)

    # -- S2sSession ------------------------------------------------------------------------
    async def send_audio(self, pcm16: bytes) -> None:
        if self._failed or self._closing:
            return  # the failure was reported once, as an `error` event
        with contextlib.suppress(ConnectionClosed, openai.OpenAIError):  # the reader reconnects
            await self._conn.input_audio_buffer.append(audio=base64.b64encode(pcm16).decode())

    async def events(self) -> AsyncIterator[S2sEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    async def interrupt(self, played_ms: int) -> None:
        conn = self._conn
        try:
            if self._response_id:
                await conn.response.cancel(response_id=self._response_id)
            item = self._audio_item
            if item:
                total = self._audio_ms.get(item, 0.0)
                end_ms = max(0, min(int(played_ms), int(total)))
                await conn.conversation.item.truncate(
                    item_id=item, content_index=0, audio_end_ms=end_ms
                )
                self._cut_text(item, end_ms / total if total else 0.0)
        except (ConnectionClosed, openai.OpenAIError):
            pass  # the reader reconnects; the new connection gets the cut history

    def _cut_text(self, item_id: str, heard: float) -> None:
        """Keep the share of the reply's words the user heard (the server cuts its own copy)."""
        entry = self._items.get(item_id)
        if entry is not None:
            words = entry[1].split()
            entry[1] = " ".join(words[: round(len(words) * heard)])

    async def aclose(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        with contextlib.suppress(Exception):
            await self._client.close()


def _error_from_event(ev: dict[str, Any]) -> BackendError:
    err = ev.get("error") or {}
    code = REALTIME_ERROR_CODES.get(str(err.get("code")), ErrorCode.PIPELINE_ERROR)
    label = err.get("code") or err.get("type") or "error"
    return BackendError(
        "openai_realtime", code, f"OpenAI Realtime {label}: {err.get('message', 'no message')}"
    )
