"""A loopback Cartesia API server for tests: `/tts/websocket` and `/stt/websocket`.

Written from Cartesia's API reference. Both need `Authorization: Bearer <key>` (or `X-API-Key`)
and a `Cartesia-Version` header at the handshake (401 otherwise).

TTS: JSON generation requests `{context_id, model_id, transcript, voice: {mode: "id", id},
output_format: {container: "raw", encoding, sample_rate}, continue, flush?, add_timestamps?}`;
inputs on one context are concatenated verbatim. `flush: true` speaks what came so far and ends
with `{"type": "flush_done", "flush_id"}`; `continue: false` speaks the rest and ends the context.
Audio goes back as `{"type": "chunk", "data": <base64>, "done": false, "status_code": 206,
"step_time", "context_id", "flush_id"?}` messages, then `{"type": "done", "done": true,
"status_code": 200, "context_id"}`;
`{"context_id", "cancel": true}` stops a context's generation; failures are `{"type": "error",
"title", "message", "status_code", "error_code", "done": true, "context_id"}`. Speech is real:
espeak-ng, resampled to the requested rate, streamed faster than real time.

STT: query `model`, `encoding=pcm_s16le`, `sample_rate`; binary audio frames; the text command
`finalize` answers `{"type": "transcript", "is_final": true, "text", "duration", "request_id"}`
then `{"type": "flush_done", "request_id"}`; `close` ends with `{"type": "done"}`. Speech is
recognised by pocketsphinx.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import soxr
from aiohttp import WSMsgType, web

from tests.fakes.loopback import serving

VALID_KEY = "sk_car_test"
CHUNK_S = 0.05
SPEEDUP = 4.0  # audio is streamed this much faster than real time: a barge-in can catch it


class FakeCartesia:
    def __init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_get("/tts/websocket", self._tts)
        self.app.router.add_get("/stt/websocket", self._stt)
        self.base_url = ""
        self.handshakes: list[dict[str, str]] = []  # headers/query of each accepted connection
        self.tts_requests: list[dict[str, Any]] = []
        self.cancels: list[str] = []  # context ids cancelled by the client
        self.finished_contexts: list[str] = []
        self.stt_queries: list[dict[str, str]] = []
        self.stt_audio_bytes = 0
        self.transcripts: list[str] = []
        self.fail_tts: dict[str, Any] | None = None  # the next TTS context gets this error
        self.fail_stt: dict[str, Any] | None = None  # the next finalize gets this error
        # Close every socket of these endpoints ("tts", "stt") at its first message (1011).
        self.drop: set[str] = set()
        self.dropped: dict[str, int] = {"tts": 0, "stt": 0}
        self._tts_engine: Any = None
        self._stt_engine: Any = None

    # -- helpers ---------------------------------------------------------------------------
    def _authorised(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        key = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        key = key or request.headers.get("X-API-Key", "")
        return key == VALID_KEY and bool(request.headers.get("Cartesia-Version"))

    async def _accept(self, request: web.Request) -> web.WebSocketResponse | web.Response:
        if not self._authorised(request):
            return web.json_response(
                {"title": "Unauthorized", "message": "invalid API key or missing version"},
                status=401,
            )
        self.handshakes.append(
            {"path": request.path, "version": request.headers["Cartesia-Version"]}
        )
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        return ws

    async def _speech(self, text: str, rate: int) -> bytes:
        from providers.espeak.tts import EspeakTTS

        if self._tts_engine is None:
            self._tts_engine = EspeakTTS()
        tts = self._tts_engine
        pcm = b"".join([c async for c in tts.synthesize(text)])
        src = tts.capabilities.sample_rate_hz
        samples = np.frombuffer(pcm, dtype="<i2")
        if src != rate:
            samples = soxr.resample(samples, src, rate)
        return np.asarray(samples, dtype="<i2").tobytes()

    async def _recognise(self, pcm: bytes, rate: int) -> str:
        from providers.pocketsphinx.stt import PocketsphinxSTT

        if self._stt_engine is None:
            self._stt_engine = PocketsphinxSTT()
        samples = np.frombuffer(pcm, dtype="<i2")
        if rate != 16000:
            samples = np.asarray(soxr.resample(samples, rate, 16000), dtype="<i2")
        return await self._stt_engine.recognize(samples.tobytes())

    # -- TTS -------------------------------------------------------------------------------
    async def _tts(self, request: web.Request) -> web.StreamResponse:
        ws = await self._accept(request)
        if not isinstance(ws, web.WebSocketResponse):
            return ws
        pending: dict[str, list[str]] = {}
        flushes: dict[str, int] = {}
        jobs: dict[str, asyncio.Queue[tuple[dict[str, Any], str, int | None]]] = {}
        workers: dict[str, asyncio.Task[None]] = {}
        lock = asyncio.Lock()  # one writer at a time
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                if "tts" in self.drop:
                    self.dropped["tts"] += 1
                    await ws.close(code=1011, message=b"simulated failure")
                    break
                req = json.loads(msg.data)
                ctx = req.get("context_id", "")
                if req.get("cancel"):
                    self.cancels.append(ctx)
                    if ctx in workers:
                        workers.pop(ctx).cancel()
                    continue
                self.tts_requests.append(req)
                pending.setdefault(ctx, []).append(req.get("transcript", ""))
                more = req.get("continue", False)
                if not (req.get("flush") or not more):
                    continue
                if ctx not in jobs:
                    jobs[ctx] = asyncio.Queue()
                    workers[ctx] = asyncio.create_task(self._context_worker(ws, lock, jobs[ctx]))
                flush_id = None
                if more:  # a flush: speak what came so far, then `flush_done`
                    flush_id = flushes[ctx] = flushes.get(ctx, 0) + 1
                jobs[ctx].put_nowait((req, "".join(pending.pop(ctx)), flush_id))
        finally:
            for t in workers.values():
                t.cancel()
        return ws

    async def _context_worker(
        self,
        ws: web.WebSocketResponse,
        lock: asyncio.Lock,
        jobs: asyncio.Queue[tuple[dict[str, Any], str, int | None]],
    ) -> None:
        while True:
            req, text, flush_id = await jobs.get()
            if not await self._generate(ws, lock, req, text, flush_id):
                return

    async def _generate(
        self,
        ws: web.WebSocketResponse,
        lock: asyncio.Lock,
        req: dict[str, Any],
        text: str,
        flush_id: int | None,
    ) -> bool:
        """Speak `text` on the request's context; False once the context is over."""
        ctx = req["context_id"]

        async def send(obj: dict[str, Any]) -> None:
            async with lock:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(json.dumps(obj))

        fmt = req.get("output_format") or {}
        error = None
        if self.fail_tts is not None:
            error, self.fail_tts = self.fail_tts, None
        elif fmt.get("container") != "raw" or fmt.get("encoding") != "pcm_s16le":
            error = {
                "status_code": 400,
                "title": "Invalid output format",
                "message": "this fake speaks raw pcm_s16le only",
            }
        if error is not None:
            await send({"type": "error", "done": True, "context_id": ctx, **error})
            return False
        rate = int(fmt.get("sample_rate", 24000))
        pcm = await self._speech(text, rate) if text.strip() else b""
        step = int(rate * CHUNK_S) * 2
        if req.get("add_timestamps") and text.strip():
            words = text.split()
            span = len(pcm) / 2 / rate / max(1, len(words))
            await send(
                {
                    "type": "timestamps",
                    "context_id": ctx,
                    "done": False,
                    "status_code": 206,
                    "word_timestamps": {
                        "words": words,
                        "start": [i * span for i in range(len(words))],
                        "end": [(i + 1) * span for i in range(len(words))],
                    },
                }
            )
        for i in range(0, len(pcm), step):
            chunk = {
                "type": "chunk",
                "data": base64.b64encode(pcm[i : i + step]).decode(),
                "done": False,
                "status_code": 206,
                "step_time": 1.0,
                "context_id": ctx,
            }
            if flush_id is not None:
                chunk["flush_id"] = flush_id
            await send(chunk)
            await asyncio.sleep(CHUNK_S / SPEEDUP)
        if flush_id is not None:
            await send(
                {
                    "type": "flush_done",
                    "done": False,
                    "flush_done": True,
                    "flush_id": flush_id,
                    "status_code": 206,
                    "context_id": ctx,
                }
            )
            return True
        self.finished_contexts.append(ctx)
        await send({"type": "done", "done": True, "status_code": 200, "context_id": ctx})
        return False

    # -- STT -------------------------------------------------------------------------------
    async def _stt(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        if q.get("encoding") != "pcm_s16le" or not q.get("model") or not q.get("sample_rate"):
            return web.json_response(
                {"title": "Bad Request", "message": "model, encoding, sample_rate required"},
                status=400,
            )
        ws = await self._accept(request)
        if not isinstance(ws, web.WebSocketResponse):
            return ws
        self.stt_queries.append(dict(q))
        rate = int(q["sample_rate"])
        request_id = uuid.uuid4().hex
        buf = bytearray()
        async for msg in ws:
            if "stt" in self.drop:
                self.dropped["stt"] += 1
                await ws.close(code=1011, message=b"simulated failure")
                break
            if msg.type == WSMsgType.BINARY:
                buf += msg.data
                self.stt_audio_bytes += len(msg.data)
                continue
            if msg.type != WSMsgType.TEXT or msg.data not in ("finalize", "close"):
                continue
            if self.fail_stt is not None:
                err, self.fail_stt = self.fail_stt, None
                await ws.send_str(json.dumps({"type": "error", "request_id": request_id, **err}))
                buf.clear()
                continue
            if buf:
                text = await self._recognise(bytes(buf), rate)
                self.transcripts.append(text)
                duration = len(buf) / 2 / rate
                buf.clear()
                await ws.send_str(
                    json.dumps(
                        {
                            "type": "transcript",
                            "is_final": True,
                            "text": text,
                            "duration": duration,
                            "request_id": request_id,
                        }
                    )
                )
            kind = "flush_done" if msg.data == "finalize" else "done"
            await ws.send_str(json.dumps({"type": kind, "request_id": request_id}))
            if kind == "done":
                await ws.close()
        return ws


@asynccontextmanager
async def running_fake_cartesia() -> AsyncIterator[FakeCartesia]:
    fake = FakeCartesia()
    async with serving(fake.app) as url:
        fake.base_url = url
        yield fake
