"""Wire codecs: what another ecosystem's clients send and expect on a session's websocket.

A codec is a pure translation, one instance per connection, between that ecosystem's messages
and the session's own currency — PCM16 audio at the session's rates in, and out the typed items of
`providers.messages` (`AudioChunk`, and `StateChanged`, `Transcript`, `Interruption`, ...: the
native protocol's events, whose JSON is their `to_wire()`). The relay (actors/) moves bytes and
calls the codec; it never parses a wire format itself. A backend provider names the codec its
sessions speak (`BackendProvider.wire_codec`).

Also here: the small audio helpers codecs share (WAV headers, G.711 mu-law); the streaming
resampler is `providers.resample`. numpy only; `audioop` is gone in Python 3.13.
"""

from __future__ import annotations

import io
import struct
import wave
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from providers.messages import AudioChunk, Message

Outgoing = bytes | str  # a binary or a text websocket message


@dataclass(frozen=True, slots=True)
class SessionMedia:
    """What a codec needs to know of the session it serves."""

    session_id: str
    user_id: str
    sample_rate_hz: int  # PCM16 the session expects in
    output_sample_rate_hz: int  # PCM16 the session sends out


@dataclass(slots=True)
class Decoded:
    """What one client message means for the session."""

    audio: list[bytes] = field(default_factory=list)  # PCM16 at the session's input rate
    replies: list[Outgoing] = field(default_factory=list)  # sent straight back to the client
    close: bool = False  # the client ended the conversation


class WireCodec(ABC):
    """One connection's translation; stateful (resamplers, handshake, what was said)."""

    name: str = "wire"

    def __init__(self, media: SessionMedia) -> None:
        self.media = media

    def on_connect(self) -> list[Outgoing]:
        """Messages sent as soon as the client is connected."""
        return []

    @abstractmethod
    def decode(self, message: bytes | str) -> Decoded:
        """A client message → audio for the session and/or replies. Never raises on bad input:
        a malformed message becomes an error reply in the ecosystem's own error shape."""

    @abstractmethod
    def encode_audio(self, chunk: AudioChunk) -> list[Outgoing]:
        """Reply audio (PCM16 at the session's output rate) → client messages."""

    @abstractmethod
    def encode_event(self, event: Message) -> list[Outgoing]:
        """A session event → client messages (maybe none)."""


# -- audio helpers ---------------------------------------------------------------------------


class WireFormatError(ValueError):
    """A client message that does not parse; the message says what was wrong."""


def strip_wav(data: bytes) -> tuple[bytes, int | None, int | None]:
    """(PCM, rate, channels) of a WAV chunk, or (data, None, None) when it has no RIFF header.
    Pipecat's Python client transport and Vocode's synthesizers wrap each chunk in one."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return data, None, None
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            if w.getsampwidth() != 2:
                raise WireFormatError(f"WAV audio must be 16-bit, not {8 * w.getsampwidth()}-bit")
            return w.readframes(w.getnframes()), w.getframerate(), w.getnchannels()
    except (wave.Error, EOFError, struct.error) as exc:
        raise WireFormatError(f"malformed WAV header: {exc}") from None


def to_mono(pcm16: bytes, channels: int) -> bytes:
    if channels <= 1:
        return pcm16
    samples = np.frombuffer(pcm16[: len(pcm16) // (2 * channels) * 2 * channels], dtype="<i2")
    return samples.reshape(-1, channels).mean(axis=1).astype("<i2").tobytes()


# G.711 mu-law (ITU-T G.711, the telephony codec): 8-bit log-companded samples.
_MULAW_BIAS = 0x84


def _mulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _MULAW_BIAS) << exponent) - _MULAW_BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _mulaw_encode_table() -> np.ndarray:
    """Every int16 value's code, computed once the way the reference (Sun's g711.c, which
    `audioop.lin2ulaw` used) does: 14-bit magnitude, bias 33, segment search."""
    x = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(x), 8159) + 33
    segment = np.searchsorted(
        np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), magnitude
    )
    code = (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code)  # beyond the last segment: the extreme code
    return ((code ^ mask) & 0xFF).astype(np.uint8)


_MULAW_TO_LINEAR = _mulaw_decode_table()
_LINEAR_TO_MULAW = _mulaw_encode_table()


def mulaw_decode(data: bytes) -> bytes:
    """mu-law bytes → PCM16 little-endian (the values `audioop.ulaw2lin` gave)."""
    return _MULAW_TO_LINEAR[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def mulaw_encode(pcm16: bytes) -> bytes:
    """PCM16 little-endian → mu-law bytes (the values `audioop.lin2ulaw` gave)."""
    samples = np.frombuffer(pcm16[: len(pcm16) // 2 * 2], dtype="<i2").astype(np.int32)
    return _LINEAR_TO_MULAW[samples + 32768].tobytes()
