"""Pipecat's websocket transport, server side: protobuf frames (`frames.py`) with RTVI messages
inside `MessageFrame`s — what a Pipecat bot behind `FastAPIWebsocketTransport` with
`ProtobufFrameSerializer` and an `RTVIProcessor` speaks, so Pipecat's client SDKs (the JS/React
`WebSocketTransport`, Python's `WebsocketClientTransport`) talk to a session unchanged.

In:  `audio` frames (raw PCM16 or WAV-wrapped, any rate/channel count: resampled to the
     session's rate), RTVI `client-ready` (→ `bot-ready`) and `disconnect-bot` (→ close).
Out: reply audio as `audio` frames; the user's transcript as a `transcription` frame and RTVI
     `user-transcription`; each spoken sentence as a `text` frame and RTVI `bot-output` /
     `bot-transcription`; RTVI user/bot started/stopped speaking, `metrics`, `error`; on
     barge-in an `interruption` frame (the client transport drops queued audio) and RTVI
     `bot-interrupted`. Other session events go out as RTVI `server-message`s.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.message import DecodeError

from providers.messages import AgentText, AudioChunk, Interruption, Message, Transcript
from providers.pipecat import frames as pb
from providers.pipecat import rtvi
from providers.resample import StreamResampler
from providers.wire import (
    Decoded,
    Outgoing,
    SessionMedia,
    WireCodec,
    WireFormatError,
    strip_wav,
    to_mono,
)

MAX_CHANNELS = 8


class PipecatCodec(WireCodec):
    name = "pipecat"

    def __init__(self, media: SessionMedia) -> None:
        super().__init__(media)
        self._resampler: StreamResampler | None = None
        self._rtvi = rtvi.RtviEvents(media.user_id)
        self._frame_id = 0

    # -- client → session ------------------------------------------------------------------
    def decode(self, message: bytes | str) -> Decoded:
        if isinstance(message, str):
            return self._error(
                "text websocket messages are not Pipecat frames; this transport carries binary "
                "protobuf `pipecat.Frame` messages (ProtobufFrameSerializer)"
            )
        try:
            frame = pb.Frame.FromString(message)
        except DecodeError:
            return self._error(f"not a protobuf pipecat.Frame ({len(message)} bytes)")
        kind = frame.WhichOneof("frame")
        try:
            if kind == "audio":
                pcm = self._audio_in(frame.audio)
                return Decoded(audio=[pcm] if pcm else [])  # the resampler may hold it back
            if kind == "message":
                return self._message_in(frame.message.data)
        except WireFormatError as exc:
            return self._error(str(exc))
        if kind is None:
            return self._error("empty pipecat.Frame: set one of audio, message")
        return self._error(f"a {kind} frame is not accepted from clients; send audio frames")

    def _audio_in(self, f: Any) -> bytes:
        pcm, wav_rate, wav_channels = strip_wav(f.audio)
        rate = f.sample_rate or wav_rate
        channels = f.num_channels or wav_channels or 1
        if not pcm:
            raise WireFormatError("empty audio frame")
        if not rate:
            raise WireFormatError("audio frame has no sample_rate")
        if not 1 <= channels <= MAX_CHANNELS:
            raise WireFormatError(f"audio frame has {channels} channels")
        if len(pcm) % (2 * channels):
            raise WireFormatError(
                f"audio frame has {len(pcm)} bytes: not whole 16-bit samples on "
                f"{channels} channel(s)"
            )
        if self._resampler is None or self._resampler.in_rate_hz != rate:
            self._resampler = StreamResampler(rate, self.media.sample_rate_hz)
        return self._resampler(to_mono(pcm, channels))

    def _message_in(self, data: str) -> Decoded:
        try:
            msg = json.loads(data)
        except ValueError:
            raise WireFormatError("message frame data is not JSON") from None
        try:
            replies, close = rtvi.answer(msg)
        except WireFormatError as exc:
            raise WireFormatError(f"message frame is {exc}") from None
        return Decoded(replies=[self._message(m) for m in replies], close=close)

    # -- session → client ------------------------------------------------------------------
    def encode_audio(self, chunk: AudioChunk) -> list[Outgoing]:
        frame = pb.Frame()
        frame.audio.id = self._next_id()
        frame.audio.audio = chunk.pcm16
        frame.audio.sample_rate = chunk.sample_rate_hz
        frame.audio.num_channels = 1
        return [frame.SerializeToString()]

    def encode_event(self, event: Message) -> list[Outgoing]:
        # Pipecat's own frames first (the client transport acts on them), then RTVI.
        frames = []
        if isinstance(event, Transcript) and event.text:
            frame = pb.Frame()
            t = frame.transcription
            t.id, t.text, t.user_id = self._next_id(), event.text, self.media.user_id
            t.timestamp = rtvi.now_iso()
            frames.append(frame.SerializeToString())
        elif isinstance(event, AgentText):
            frame = pb.Frame()
            frame.text.id, frame.text.text = self._next_id(), event.text
            frames.append(frame.SerializeToString())
        elif isinstance(event, Interruption):
            frame = pb.Frame()
            frame.interruption.id = self._next_id()
            frames.append(frame.SerializeToString())
        return [*frames, *(self._message(m) for m in self._rtvi.messages(event))]

    # -- helpers ---------------------------------------------------------------------------
    def _message(self, msg: dict[str, Any]) -> bytes:
        frame = pb.Frame()
        frame.message.data = json.dumps(msg)
        return frame.SerializeToString()

    def _error(self, text: str) -> Decoded:
        return Decoded(replies=[self._message(rtvi.error(f"invalid_format: {text}"))])

    def _next_id(self) -> int:
        self._frame_id += 1
        return self._frame_id
