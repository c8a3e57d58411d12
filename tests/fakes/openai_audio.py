"""OpenAI's audio endpoints on loopback, from the API reference.

`POST /v1/audio/transcriptions`: multipart/form-data with `file` (an audio file; WAV here) and
`model` (required), optional `language`, `prompt`, `response_format` (`json` default → `{"text"}`,
or `text`). `POST /v1/audio/speech`: JSON `model`, `input`, `voice` (required), optional
`response_format` (`pcm` = raw 24 kHz 16-bit little-endian mono), `speed`, `instructions`;
the audio comes back chunked as it is made. Errors: `{"error": {"message","type","param","code"}}`
with 400 / 401 / 429 / 500. The "models" are PocketSphinx and espeak-ng.
"""

from __future__ import annotations

import io
import wave
from typing import Any

import numpy as np
import soxr
from aiohttp import web

SPEECH_RATE = 24000


def error(status: int, kind: str, message: str, param: str | None = None) -> web.Response:
    code = {401: "invalid_api_key"}.get(status)
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status)


class AudioFake:
    def __init__(self, valid_key: str) -> None:
        self.valid_key = valid_key
        self.transcriptions: list[dict[str, Any]] = []  # form fields received (file: its size)
        self.speech: list[dict[str, Any]] = []  # bodies received
        self.spoken: list[bytes] = []  # the audio each speech request was answered with
        self.fail_next: list[int] = []  # statuses for the next requests (500 / 429 ...)
        self.attempts = {"transcriptions": 0, "speech": 0}  # requests, refused ones included
        self._models: tuple[Any, Any] | None = None

    def _models_loaded(self) -> tuple[Any, Any]:
        if self._models is None:
            from providers.espeak.tts import EspeakTTS
            from providers.pocketsphinx.stt import PocketsphinxSTT

            self._models = (PocketsphinxSTT(), EspeakTTS())
        return self._models

    def _refused(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.valid_key}":
            return error(401, "invalid_request_error", "Incorrect API key provided.")
        if self.fail_next:
            status = self.fail_next.pop(0)
            kind = "rate_limit_exceeded" if status == 429 else "server_error"
            return error(status, kind, "The server had an error while processing your request.")
        return None

    async def transcriptions_create(self, request: web.Request) -> web.StreamResponse:
        self.attempts["transcriptions"] += 1
        if (refused := self._refused(request)) is not None:
            return refused
        if not request.content_type.startswith("multipart/form-data"):
            return error(400, "invalid_request_error", "Expected multipart/form-data.")
        fields: dict[str, Any] = {}
        audio = b""
        reader = await request.multipart()
        async for part in reader:
            if part.name == "file":
                audio = await part.read()
                fields["file"] = len(audio)
            elif part.name:
                fields[part.name] = await part.text()
        self.transcriptions.append(fields)
        if not fields.get("model"):
            return error(
                400, "invalid_request_error", "Missing required parameter: 'model'.", "model"
            )
        try:
            with wave.open(io.BytesIO(audio)) as w:
                rate, pcm = w.getframerate(), w.readframes(w.getnframes())
                if w.getsampwidth() != 2 or w.getnchannels() != 1:
                    raise wave.Error("not 16-bit mono")
        except (wave.Error, EOFError):
            return error(400, "invalid_request_error", "Invalid file format.", "file")
        samples = np.frombuffer(pcm, dtype="<i2")
        if rate != 16000:
            samples = np.asarray(soxr.resample(samples, rate, 16000), dtype="<i2")
        stt, _ = self._models_loaded()
        text = await stt.recognize(samples.tobytes())
        if fields.get("response_format") == "text":
            return web.Response(text=text + "\n")
        return web.json_response(
            {"text": text, "usage": {"type": "duration", "seconds": round(len(samples) / 16000)}}
        )

    async def speech_create(self, request: web.Request) -> web.StreamResponse:
        self.attempts["speech"] += 1
        if (refused := self._refused(request)) is not None:
            return refused
        try:
            body = await request.json()
            text, model, voice = body["input"], body["model"], body["voice"]
        except (ValueError, KeyError, TypeError):
            return error(400, "invalid_request_error", "'input', 'model' and 'voice' are required")
        self.speech.append(body)
        if not isinstance(text, str) or not text or not model or not voice:
            return error(400, "invalid_request_error", "Invalid 'input'.", "input")
        fmt = body.get("response_format", "mp3")
        if fmt != "pcm":
            return error(400, "invalid_request_error", f"This fake speaks only pcm, not {fmt!r}")
        resp = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        _, tts = self._models_loaded()
        src = tts.capabilities.sample_rate_hz
        stream = soxr.ResampleStream(src, SPEECH_RATE, 1, dtype="int16")
        sent = bytearray()
        async for chunk in tts.synthesize(text):
            out = stream.resample_chunk(np.frombuffer(chunk, dtype="<i2"))
            if out.size:
                sent += (data := np.asarray(out, dtype="<i2").tobytes())
                await resp.write(data)
        tail = stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        if tail.size:
            sent += (data := np.asarray(tail, dtype="<i2").tobytes())
            await resp.write(data)
        self.spoken.append(bytes(sent))
        await resp.write_eof()
        return resp
