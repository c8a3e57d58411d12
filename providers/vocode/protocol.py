"""Vocode's self-hosted conversation websocket (`vocode.streaming.client_backend`'s
`ConversationRouter`, message models in `vocode/streaming/models/websocket.py`), server side, so
Vocode's client SDKs talk to a session unchanged. All messages are JSON text with a `type`:

  client → `websocket_audio_config_start` {input_audio_config: {sampling_rate, audio_encoding,
           chunk_size}, output_audio_config: {sampling_rate, audio_encoding}, conversation_id,
           subscribe_transcript}  (the hosted-style `websocket_start` with transcriber_config /
           synthesizer_config is read the same way)
  server → `websocket_ready`
  client → `websocket_audio` {data: base64}  (linear16 or G.711 mu-law, e.g. 8 kHz telephony)
  server → `websocket_audio` {data: base64}  (linear16: a WAV chunk each, as Vocode's router
           sends; mulaw: raw mu-law bytes), `websocket_transcript` {text, sender, timestamp}
           when subscribed
  client → `websocket_stop`; server → `websocket_stop` when the session closes

Vocode's protocol has no message telling a client to drop queued audio: on barge-in the session
stops sending (reply audio is paced at real time, so little is queued). A malformed client
message gets `websocket_error` {code, message} — our addition; Vocode has no error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from backend.wav import wav_bytes
from providers.messages import (
    AgentText,
    AudioChunk,
    Closed,
    ErrorEvent,
    Interruption,
    Message,
    StateChanged,
    Transcript,
)
from providers.resample import StreamResampler
from providers.wire import (
    Decoded,
    Outgoing,
    SessionMedia,
    WireCodec,
    WireFormatError,
    mulaw_decode,
    mulaw_encode,
    strip_wav,
)

Encoding = Literal["linear16", "mulaw"]
RATES_HZ = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send fields we do not need


class AudioConfig(_Loose):
    sampling_rate: int
    audio_encoding: Encoding


class AudioConfigStart(_Loose):
    input_audio_config: AudioConfig
    output_audio_config: AudioConfig
    conversation_id: str | None = None
    subscribe_transcript: bool | None = None


class HostedStart(_Loose):
    transcriber_config: AudioConfig
    synthesizer_config: AudioConfig
    conversation_id: str | None = None


class VocodeCodec(WireCodec):
    name = "vocode"

    def __init__(self, media: SessionMedia) -> None:
        super().__init__(media)
        self.input: AudioConfig | None = None
        self.output: AudioConfig | None = None
        self.subscribe_transcript = False
        self._in_resampler: StreamResampler | None = None
        self._out_resampler: StreamResampler | None = None

    # -- client → session ------------------------------------------------------------------
    def decode(self, message: bytes | str) -> Decoded:
        try:
            msg = json.loads(message)
        except ValueError:
            return _error("messages must be JSON text (Vocode websocket messages)")
        kind = msg.get("type") if isinstance(msg, dict) else None
        try:
            if kind in ("websocket_audio_config_start", "websocket_start"):
                return self._start(msg)
            if kind == "websocket_audio":
                pcm = self._audio_in(msg.get("data"))
                return Decoded(audio=[pcm] if pcm else [])  # the resampler may hold it back
            if kind == "websocket_stop":
                return Decoded(close=True)
        except WireFormatError as exc:
            return _error(str(exc))
        return _error(
            f"unknown message type {kind!r}; expected websocket_audio_config_start, "
            "websocket_audio or websocket_stop"
        )

    def _start(self, msg: dict[str, Any]) -> Decoded:
        try:
            if msg["type"] == "websocket_start":
                hosted = HostedStart.model_validate(msg)
                inp, out, subscribe = hosted.transcriber_config, hosted.synthesizer_config, None
            else:
                start = AudioConfigStart.model_validate(msg)
                inp, out = start.input_audio_config, start.output_audio_config
                subscribe = start.subscribe_transcript
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err.get("loc", ()))
            raise WireFormatError(f"{msg['type']}: {where}: {err.get('msg')}") from None
        for name, cfg in (("input", inp), ("output", out)):
            if cfg.sampling_rate not in RATES_HZ:
                raise WireFormatError(
                    f"{name} sampling_rate {cfg.sampling_rate} is not one of "
                    f"{', '.join(map(str, RATES_HZ))}"
                )
        self.input, self.output, self.subscribe_transcript = inp, out, bool(subscribe)
        self._in_resampler = StreamResampler(inp.sampling_rate, self.media.sample_rate_hz)
        self._out_resampler = StreamResampler(self.media.output_sample_rate_hz, out.sampling_rate)
        return Decoded(replies=[json.dumps({"type": "websocket_ready"})])

    def _audio_in(self, data: Any) -> bytes:
        if self.input is None or self._in_resampler is None:
            raise WireFormatError("send websocket_audio_config_start before any audio")
        if not isinstance(data, str):
            raise WireFormatError("websocket_audio.data must be a base64 string")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise WireFormatError("websocket_audio.data is not valid base64") from None
        raw, _, _ = strip_wav(raw)  # browser recorders send WAV-wrapped chunks
        if not raw:
            raise WireFormatError("empty websocket_audio message")
        if self.input.audio_encoding == "mulaw":
            raw = mulaw_decode(raw)
        elif len(raw) % 2:
            raise WireFormatError(f"linear16 audio has an odd byte count ({len(raw)})")
        return self._in_resampler(raw)

    # -- session → client ------------------------------------------------------------------
    def encode_audio(self, chunk: AudioChunk) -> list[Outgoing]:
        return self._audio_out(chunk.pcm16)

    def _audio_out(self, pcm16: bytes, last: bool = False) -> list[Outgoing]:
        if self.output is None or self._out_resampler is None:
            return []  # not started: Vocode clients get audio only after websocket_ready
        pcm = self._out_resampler(pcm16, last=last)
        if not pcm:
            return []
        if self.output.audio_encoding == "mulaw":
            payload = mulaw_encode(pcm)
        else:
            payload = wav_bytes(pcm, self.output.sampling_rate)
        data = base64.b64encode(payload).decode("ascii")
        return [json.dumps({"type": "websocket_audio", "data": data})]

    def encode_event(self, event: Message) -> list[Outgoing]:
        match event:
            case StateChanged(state=state) if state != "speaking":
                return self._audio_out(b"", last=True)  # the reply's tail, held by the resampler
            case Interruption() if self.output is not None:
                self._out_resampler = StreamResampler(
                    self.media.output_sample_rate_hz, self.output.sampling_rate
                )  # drop what it holds: the user talked over it
            case Transcript(text=text) if text:
                return self._transcript(text, "human")
            case AgentText(text=text) if text:
                return self._transcript(text, "bot")
            case ErrorEvent(code=code, message=message):
                return [_error_json(code, message)]
            case Closed():
                return [json.dumps({"type": "websocket_stop"})]
        return []

    def _transcript(self, text: str, sender: str) -> list[Outgoing]:
        if not self.subscribe_transcript:
            return []
        msg = {"type": "websocket_transcript", "text": text, "sender": sender}
        return [json.dumps({**msg, "timestamp": time.time()})]


def _error_json(code: str, message: str) -> str:
    return json.dumps({"type": "websocket_error", "code": code, "message": message})


def _error(message: str) -> Decoded:
    return Decoded(replies=[_error_json("invalid_format", message)])
