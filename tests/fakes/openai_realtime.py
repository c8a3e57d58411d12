"""The Realtime API's websocket (`GET /v1/realtime?model=...`), GA protocol, on loopback.

Written from OpenAI's Realtime reference and guides: auth by `Authorization: Bearer`; a bad key
gets an `error` event (`invalid_request_error` / `invalid_api_key`) and close code 3000; first
event `session.created`; `session.update` (needs `session.type`) answered by `session.updated`;
`input_audio_buffer.append` (base64 pcm16 24 kHz) with server VAD → `speech_started` /
`speech_stopped` (with `audio_start_ms`/`audio_end_ms` and the user item's id), `committed`,
`conversation.item.added`/`done`, `conversation.item.input_audio_transcription.completed` when
transcription is on, and, with `create_response`, a response: `response.created`,
`response.output_item.added`, `response.content_part.added`, `response.output_audio_transcript.
delta` and `response.output_audio.delta` (base64), the `.done` events, `response.done` with
`status` and `status_details`. `response.cancel` (an error `response_cancel_not_active` when
nothing runs), `conversation.item.truncate` → `conversation.item.truncated` (an `invalid_value`
error past the audio's end), `conversation.item.create`. Every server event has an `event_id`;
errors are `{"type":"error","event_id","error":{"type","code","message","param","event_id"}}`.
At the session-length limit: an `error` with code `session_expired`, then close 1001.

Its "model" is real speech processing: Silero VAD for turn detection, PocketSphinx for the
transcript, and espeak-ng (resampled to 24 kHz) speaking `reply(transcript)`, generated at
`pace` × real time, so a barge-in can land while a reply is still being generated.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import soxr
from aiohttp import WSMsgType, web

from tests.fakes.openai_realtime_model import RATE, RealtimeModel, _id, _merge, _public


class RealtimeFake:
    """Shared state of the websocket endpoint; one `_Connection` per socket."""

    def __init__(self, valid_key: str) -> None:
        self.valid_key = valid_key
        self.reply: Callable[[str], str] = lambda transcript: f"You said: {transcript}"
        self.pace = 2.0  # reply audio generated at this multiple of real time
        self.max_session_s = 3600.0
        self.refuse = False  # answer upgrades with HTTP 503 (the service is down)
        self.inject_error: dict[str, Any] | None = None  # sent instead of the next response
        self.attempts = 0  # upgrade requests seen
        self.connections: list[_Connection] = []
        self.errors: list[dict[str, Any]] = []  # `error` events sent, for assertions
        self._models: tuple[Any, Any] | None = None
        self._stt_lock = asyncio.Lock()

    def events(self, kind: str) -> list[dict[str, Any]]:
        """Client events of one type received so far, over every connection."""
        return [e for c in self.connections for e in c.received if e.get("type") == kind]

    async def drop(self) -> None:
        """Cut every open connection without a close frame, as a network failure does."""
        for conn in self.connections:
            conn.abort()

    def models(self) -> tuple[Any, Any]:
        if self._models is None:
            from providers.espeak.tts import EspeakTTS
            from providers.pocketsphinx.stt import PocketsphinxSTT

            self._models = (PocketsphinxSTT(), EspeakTTS())
        return self._models

    async def transcribe(self, pcm24: bytes) -> str:
        stt, _ = self.models()
        pcm16k = soxr.resample(np.frombuffer(pcm24, dtype="<i2"), RATE, 16000)
        async with self._stt_lock:  # one decoder, one utterance at a time
            return await stt.recognize(np.asarray(pcm16k, dtype="<i2").tobytes())

    async def speak(self, text: str) -> bytes:
        _, tts = self.models()
        pcm = b"".join([c async for c in tts.synthesize(text)])
        out = soxr.resample(np.frombuffer(pcm, dtype="<i2"), tts.capabilities.sample_rate_hz, RATE)
        return np.asarray(out, dtype="<i2").tobytes()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        if self.refuse:
            body = {"error": {"message": "The server is overloaded.", "type": "server_error"}}
            return web.json_response(body, status=503)
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        conn = _Connection(self, ws, request)
        if request.headers.get("Authorization") != f"Bearer {self.valid_key}":
            await conn.error(
                "invalid_request_error", "invalid_api_key", "Incorrect API key provided."
            )
            await ws.close(code=3000, message=b"invalid_request_error.invalid_api_key")
            return ws
        if not request.query.get("model"):
            await conn.error("invalid_request_error", "missing_model", "Missing 'model'.")
            await ws.close(code=3000, message=b"invalid_request_error.missing_model")
            return ws
        self.connections.append(conn)
        await conn.run()
        return ws


class _Connection(RealtimeModel):
    def __init__(self, fake: RealtimeFake, ws: web.WebSocketResponse, request: web.Request):
        self.fake = fake
        self.ws = ws
        self.request = request
        self.received: list[dict[str, Any]] = []  # client events (audio replaced by its length)
        self.items: dict[str, dict[str, Any]] = {}  # conversation, by item id
        self.session: dict[str, Any] = {
            "type": "realtime",
            "object": "realtime.session",
            "id": _id("sess"),
            "model": request.query.get("model"),
            "output_modalities": ["audio"],
            "instructions": "",
            "expires_at": int(time.time() + fake.max_session_s),
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "transcription": None,
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": 300,
                        "silence_duration_ms": 200,
                        "create_response": True,
                        "interrupt_response": True,
                    },
                },
                "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "alloy"},
            },
        }
        self.buffer = bytearray()  # input audio since the last commit
        self.audio_ms = 0.0  # all input audio of the session
        self.speech_item = ""
        self.last_item = ""
        self.response: dict[str, Any] | None = None  # the one in progress
        self.tasks: set[asyncio.Task[None]] = set()
        self._vad_setup()

    # -- plumbing --------------------------------------------------------------------------
    async def send(self, event: dict[str, Any]) -> None:
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(json.dumps({"event_id": _id("event"), **event}))

    async def error(
        self, kind: str, code: str | None, message: str, param: str | None = None, cause: str = ""
    ) -> None:
        err = {"type": kind, "code": code, "message": message, "param": param}
        self.fake.errors.append(err)
        await self.send({"type": "error", "error": {**err, "event_id": cause or None}})

    def abort(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self) -> None:
        await self.send({"type": "session.created", "session": self.session})
        self.spawn(self._expire())
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    event = json.loads(msg.data)
                    kind = event["type"]
                except (ValueError, KeyError, TypeError):
                    await self.error("invalid_request_error", "invalid_json", "Invalid JSON.")
                    continue
                await self._on_event(kind, event)
        finally:
            for task in list(self.tasks):
                task.cancel()

    async def _expire(self) -> None:
        await asyncio.sleep(self.fake.max_session_s)
        minutes = f"{self.fake.max_session_s / 60:g}"
        message = f"Your session hit the maximum duration of {minutes} minutes."
        await self.error("invalid_request_error", "session_expired", message)
        await self.ws.close(code=1001, message=message.encode())

    # -- client events ---------------------------------------------------------------------
    async def _on_event(self, kind: str, ev: dict[str, Any]) -> None:
        record = dict(ev)
        if kind == "input_audio_buffer.append":
            record["audio"] = len(ev.get("audio", ""))
        self.received.append(record)
        cause = ev.get("event_id", "")
        match kind:
            case "session.update":
                session = ev.get("session") or {}
                if session.get("type") not in ("realtime",):
                    await self.error(
                        "invalid_request_error",
                        "missing_required_parameter",
                        "Missing required parameter: 'session.type'.",
                        "session.type",
                        cause,
                    )
                    return
                if (bad := _unknown_turn_parameter(session)) is not None:
                    await self.error(
                        "invalid_request_error",
                        "unknown_parameter",
                        f"Unknown parameter: '{bad}'.",
                        bad,
                        cause,
                    )
                    return
                _merge(self.session, session)
                self._vad_setup()
                await self.send({"type": "session.updated", "session": self.session})
            case "input_audio_buffer.append":
                try:
                    pcm = base64.b64decode(ev["audio"], validate=True)
                except (KeyError, binascii.Error, TypeError):
                    await self.error(
                        "invalid_request_error", "invalid_value", "Invalid audio.", "audio", cause
                    )
                    return
                await self._on_audio(pcm[: len(pcm) - len(pcm) % 2])
            case "input_audio_buffer.commit":
                await self._commit()
            case "input_audio_buffer.clear":
                self.buffer.clear()
                await self.send({"type": "input_audio_buffer.cleared"})
            case "response.create":
                users = [i for i in self.items.values() if i.get("role") == "user"]
                last = users[-1]["content"][0] if users and users[-1].get("content") else {}
                self.spawn(self._respond(last.get("transcript") or last.get("text") or ""))
            case "response.cancel":
                if self.response is None or self.response["cancel"]:
                    await self.error(
                        "invalid_request_error",
                        "response_cancel_not_active",
                        "Cancellation failed: no active response found",
                        cause=cause,
                    )
                else:
                    self.response["cancel"] = "client_cancelled"
            case "conversation.item.truncate":
                await self._truncate(ev, cause)
            case "conversation.item.create":
                item = {"object": "realtime.item", "status": "completed", **(ev.get("item") or {})}
                item.setdefault("id", _id("item"))
                await self._add_item(item)
            case _:
                await self.error(
                    "invalid_request_error",
                    "invalid_value",
                    f"Invalid value: '{kind}'.",
                    "type",
                    cause,
                )

    async def _add_item(self, item: dict[str, Any]) -> None:
        self.items[item["id"]] = item
        previous, self.last_item = self.last_item or None, item["id"]
        public = _public(item)
        await self.send(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": public}
        )
        await self.send(
            {"type": "conversation.item.done", "previous_item_id": previous, "item": public}
        )

    async def _truncate(self, ev: dict[str, Any], cause: str) -> None:
        item = self.items.get(ev.get("item_id", ""))
        end_ms = ev.get("audio_end_ms")
        if item is None or item.get("role") != "assistant":
            await self.error(
                "invalid_request_error",
                "item_not_found",
                f"Item with item_id not found: {ev.get('item_id')}",
                "item_id",
                cause,
            )
            return
        have_ms = item.get("_audio_ms", 0.0)
        if not isinstance(end_ms, int) or end_ms < 0 or end_ms > have_ms:
            await self.error(
                "invalid_request_error",
                "invalid_value",
                f"Audio content of {have_ms:.0f}ms is already shorter than {end_ms}ms",
                "audio_end_ms",
                cause,
            )
            return
        item["_truncated_ms"] = end_ms
        await self.send(
            {
                "type": "conversation.item.truncated",
                "item_id": item["id"],
                "content_index": ev.get("content_index", 0),
                "audio_end_ms": end_ms,
            }
        )


# Turn-detection parameters by type (the reference's `server_vad` and `semantic_vad` objects).
_TURN_PARAMETERS = {
    "server_vad": {
        "type",
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
        "create_response",
        "interrupt_response",
        "idle_timeout_ms",
    },
    "semantic_vad": {"type", "eagerness", "create_response", "interrupt_response"},
}


def _unknown_turn_parameter(session: dict[str, Any]) -> str | None:
    turn = ((session.get("audio") or {}).get("input") or {}).get("turn_detection")
    if not turn:
        return None
    allowed = _TURN_PARAMETERS.get(turn.get("type"))
    if allowed is None:
        return "session.audio.input.turn_detection.type"
    extra = sorted(set(turn) - allowed)
    return f"session.audio.input.turn_detection.{extra[0]}" if extra else None
