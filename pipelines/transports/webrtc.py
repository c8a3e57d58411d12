"""The WebRTC transport: one peer connection (aiortc), terminated inside the session — no SFU.

- Signalling: `answer(offer)` takes the client's SDP offer with its candidates and returns the
  answer with all of ours (no trickle needed on loopback or a LAN; STUN/TURN servers configurable).
- Inbound: the client's Opus track → 48 kHz frames → mono → soxr to the session's input rate →
  `runtime.push_audio`.
- Outbound: `OutboxTrack` takes reply audio from the outbox 20 ms at a time on the track's own
  clock, buffering at most ~40 ms itself: the rest stays in the outbox, where a barge-in drops it
  (`Outbox.clear_audio`); on the `interrupted` event the track drops its own few ms too.
- Events: the same JSON events as the websocket, on the data channel the client opens (any
  label); messages from the client: `{"type": "ping"}`, `{"type": "hangup"}`. With a `codec`
  (a provider's data channel protocol, e.g. Pipecat's SmallWebRTC) the channel speaks that
  instead: client messages go through `codec.decode`, events through `codec.encode_event`.
- Renegotiation: `renegotiate(offer)` answers a new offer for the call (its `pc_id`) on the same
  peer connection, or with `restart` on a new one; the session and its outbox carry on. Trickled
  ICE candidates: `add_candidate`. Video the client offers is declined (`inactive`).
- The peer going away (hang-up, connection closed or failed) calls `on_closed` once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc import RTCDataChannel, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from backend.errors import BackendError, ErrorCode
from backend.rtc import (
    FRAME_SAMPLES,
    RTC_RATE_HZ,
    FrameClock,
    frame_to_mono,
    host_candidates,
    low_latency_audio,
    mono_frame,
    peer_connection,
)
from pipelines.outbox import Outbox
from pipelines.transports.base import MediaTransport, OnClosed
from providers.messages import ErrorEvent, Interruption, Message
from providers.resample import StreamResampler
from providers.wire import WireCodec

log = logging.getLogger(__name__)

MAX_SDP_CHARS = 100_000
MAX_PENDING_EVENTS = 1000  # events kept while the data channel is not open yet


@dataclass(slots=True)
class WebRtcOptions:
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    host_addresses: list[str] | None = None  # None: every non-loopback interface


class OutboxTrack(MediaStreamTrack):
    """Reply audio as a 48 kHz mono track, paced by its own clock; silence when idle."""

    kind = "audio"

    def __init__(self, outbox: Outbox, source_rate_hz: int) -> None:
        super().__init__()
        self._outbox = outbox
        self._source_rate_hz = source_rate_hz
        self._resampler = StreamResampler(source_rate_hz, RTC_RATE_HZ)
        self._buf = np.zeros(0, dtype=np.int16)
        self._clock = FrameClock()
        self.frames_with_audio = 0

    @property
    def buffered_s(self) -> float:
        return self._buf.size / RTC_RATE_HZ

    def clear(self) -> None:
        """Barge-in: drop what this track holds (the outbox drops the rest itself)."""
        self._buf = np.zeros(0, dtype=np.int16)
        self._resampler = StreamResampler(self._source_rate_hz, RTC_RATE_HZ)

    def _fill(self) -> None:
        while self._buf.size < FRAME_SAMPLES:
            chunks = self._outbox.take_audio(1)
            if not chunks:
                return
            pcm = self._resampler.process(np.frombuffer(chunks[0].pcm16, dtype="<i2"))
            self._buf = np.concatenate((self._buf, pcm))

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._clock.tick()
        self._fill()
        samples = self._buf[:FRAME_SAMPLES]
        self._buf = self._buf[FRAME_SAMPLES:]
        if samples.size:
            self.frames_with_audio += 1
        if samples.size < FRAME_SAMPLES:
            samples = np.concatenate((samples, np.zeros(FRAME_SAMPLES - samples.size, np.int16)))
        return mono_frame(samples, pts)


class WebRtcTransport(MediaTransport):
    def __init__(
        self,
        options: WebRtcOptions,
        on_closed: OnClosed | None = None,
        codec: WireCodec | None = None,
    ) -> None:
        super().__init__(on_closed)
        self.options = options
        self.codec = codec
        self.pc = peer_connection(options.ice_servers)
        self.pc_id = _new_pc_id()
        self.track: MediaStreamTrack | None = None
        self.channel: RTCDataChannel | None = None
        self._pending: deque[str | bytes] = deque(maxlen=MAX_PENDING_EVENTS)
        self._tasks: list[asyncio.Task[None]] = []
        self._events_task: asyncio.Task[None] | None = None
        self._signalling = asyncio.Lock()
        self._closing = False
        self._ended = False

    # -- signalling ------------------------------------------------------------------------
    async def answer(self, sdp: str, sdp_type: str = "offer") -> dict[str, str]:
        """Accept the client's offer; returns {"sdp", "type": "answer", "pc_id"} with all our
        candidates."""
        rt = self.runtime
        if rt is None:
            raise BackendError("webrtc.offer", ErrorCode.SESSION_NOT_ACTIVE, "transport not bound")
        _check_offer(sdp, sdp_type)
        async with self._signalling:
            answer = await self._negotiate(sdp, fresh=True)
        self._events_task = asyncio.create_task(self._events(rt.outbox), name="webrtc-events")
        self._tasks.append(self._events_task)
        rt.start()
        return answer

    async def renegotiate(
        self, sdp: str, sdp_type: str = "offer", restart: bool = False
    ) -> dict[str, str]:
        """A new offer for this call: on the same peer connection, or (`restart`: the client
        made a new one) on a new peer connection with a new `pc_id`. The session goes on."""
        if self._events_task is None or self._closing or self._ended:
            raise BackendError(
                "webrtc.offer", ErrorCode.SESSION_NOT_ACTIVE, "no call to renegotiate"
            )
        _check_offer(sdp, sdp_type)
        async with self._signalling:  # one offer/answer at a time
            if not restart:
                return await self._negotiate(sdp, fresh=False)
            old, self.pc = self.pc, peer_connection(self.options.ice_servers)
            self.pc_id = _new_pc_id()
            old.remove_all_listeners()  # its closing is not the peer leaving
            self.channel, self.track = None, None
            await old.close()  # its inbound track ends, and with it that reader task
            try:
                return await self._negotiate(sdp, fresh=True)
            except BaseException:
                self._end("the restarted peer connection failed")  # the old one is gone
                raise

    async def add_candidate(
        self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """A trickled ICE candidate of the client's (an empty one: end of candidates)."""
        if not candidate:
            await self.pc.addIceCandidate(None)
            return
        try:
            ice = candidate_from_sdp(candidate.removeprefix("candidate:"))
        except Exception:  # aiortc asserts on a short line, int() fails on a bad one
            raise BackendError(
                "webrtc.candidate",
                ErrorCode.INVALID_FORMAT,
                f"candidate: not an ICE candidate line ({candidate[:80]!r})",
                field="candidate",
            ) from None
        ice.sdpMid, ice.sdpMLineIndex = sdp_mid, sdp_mline_index
        if sdp_mid is None and sdp_mline_index is None:
            ice.sdpMLineIndex = 0  # bundled: every candidate is the first m-line's
        await self.pc.addIceCandidate(ice)

    async def _negotiate(self, sdp: str, fresh: bool) -> dict[str, str]:
        rt = self.runtime
        assert rt is not None
        pc = self.pc
        if fresh:
            pc.on("track", self._on_track)
            pc.on("datachannel", self._on_datachannel)
            pc.on("connectionstatechange", self._on_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:
            raise BackendError(
                "webrtc.offer",
                ErrorCode.INVALID_FORMAT,
                f"sdp: not a usable offer ({exc})",
                field="sdp",
            ) from None
        audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise BackendError(
                "webrtc.offer",
                ErrorCode.INVALID_FORMAT,
                "sdp: the offer has no audio track",
                field="sdp",
            )
        for t in pc.getTransceivers():
            if t.kind != "audio":
                t.direction = "inactive"  # no video here: the client sends none
        if fresh:
            opus = [
                c for c in audio[0].receiver.getCapabilities("audio").codecs if c.name == "opus"
            ]
            audio[0].setCodecPreferences(opus)  # Opus both ways, never G.711
            self.track = self._outgoing_track()
            pc.addTrack(self.track)
        try:
            with host_candidates(self.options.host_addresses):
                await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            raise BackendError(
                "webrtc.offer",
                ErrorCode.INVALID_FORMAT,
                f"sdp: cannot answer this offer ({exc})",
                field="sdp",
            ) from None
        if "opus" not in pc.localDescription.sdp.lower():
            raise BackendError(
                "webrtc.offer",
                ErrorCode.INVALID_FORMAT,
                "sdp: the offer does not allow Opus",
                field="sdp",
            )
        return {
            "sdp": pc.localDescription.sdp,
            "type": pc.localDescription.type,
            "pc_id": self.pc_id,
        }

    # -- media and events ------------------------------------------------------------------
    def _outgoing_track(self) -> MediaStreamTrack:
        rt = self.runtime
        assert rt is not None
        return OutboxTrack(rt.outbox, rt.settings.output_sample_rate_hz)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            low_latency_audio(self.pc, track)
            self._tasks.append(asyncio.create_task(self._inbound(track), name="webrtc-in"))

    async def _inbound(self, track: MediaStreamTrack) -> None:
        rt = self.runtime
        assert rt is not None
        resampler: StreamResampler | None = None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if resampler is None or resampler.in_rate_hz != frame.sample_rate:
                resampler = StreamResampler(frame.sample_rate, rt.input_sample_rate_hz)
            pcm = resampler.process(frame_to_mono(frame))
            if pcm.size:
                try:
                    rt.push_audio([pcm.tobytes()])
                except BackendError:  # the session closed under us
                    return

    async def _events(self, outbox: Outbox) -> None:
        while True:
            out = await outbox.poll(audio=False, events=True, timeout_s=10.0)
            for event in out["items"]:  # events only: the audio goes on the track
                assert isinstance(event, Message)
                if isinstance(event, Interruption) and isinstance(self.track, OutboxTrack):
                    self.track.clear()
                wire = self.codec.encode_event(event) if self.codec else [event.to_wire()]
                for message in wire:
                    self._send(message if isinstance(message, str | bytes) else json.dumps(message))
            if out["closed"]:
                return

    def _send(self, text: str | bytes) -> None:
        ch = self.channel
        if ch is not None and ch.readyState == "open":
            ch.send(text)
        else:
            self._pending.append(text)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self.channel is not None:
            return  # one events channel per session; others are ignored
        self.channel = channel

        def flush() -> None:
            while self._pending and channel.readyState == "open":
                channel.send(self._pending.popleft())

        channel.on("open", flush)
        channel.on("message", self._on_message)
        if channel.readyState == "open":
            flush()

    def _on_message(self, message: Any) -> None:
        if self.codec is not None:
            decoded = self.codec.decode(message)
            for reply in decoded.replies:
                self._send(reply)
            if decoded.close:
                self._end("client hung up")
            return
        try:
            kind = json.loads(message).get("type") if isinstance(message, str) else None
        except (ValueError, AttributeError):
            kind = None
        if kind == "ping":
            self._send(json.dumps({"type": "pong"}))
        elif kind == "hangup":
            self._end("client hung up")
        else:
            text = 'data channel messages must be JSON: {"type": "ping"} or {"type": "hangup"}'
            self._send(json.dumps(ErrorEvent(code="invalid_format", message=text).to_wire()))

    def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self._end(f"peer connection {self.pc.connectionState}")

    def _end(self, reason: str) -> None:
        if self._ended or self._closing:
            return
        self._ended = True
        log.info("webrtc peer gone: %s", reason)
        if self.on_closed is not None:
            self._tasks.append(asyncio.create_task(self.on_closed(reason), name="webrtc-end"))

    # -- lifecycle -------------------------------------------------------------------------
    async def aclose(self) -> None:
        if self._closing:
            return
        self._closing = True
        current = asyncio.current_task()
        events = self._events_task
        if events is not None and self.runtime is not None and self.runtime.outbox.closed:
            # The session is closing: let the last events (`state: closed`, `closed`) go out.
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(events), 1.0)
                # Sent is only queued: closing the connection now would drop them.
                async with asyncio.timeout(1.0):
                    while self.channel is not None and self.channel.bufferedAmount:
                        await asyncio.sleep(0.02)
                    await asyncio.sleep(0.1)  # out of SCTP's queue onto the wire
        for t in self._tasks:
            if t is not current:
                t.cancel()
        await self.pc.close()
        for t in self._tasks:
            if t is not current:
                with contextlib.suppress(BaseException):
                    await t


def _new_pc_id() -> str:
    return f"pc-{uuid.uuid4().hex}"


def _check_offer(sdp: Any, sdp_type: Any) -> None:
    if sdp_type != "offer":
        raise BackendError(
            "webrtc.offer", ErrorCode.INVALID_FORMAT, 'type: must be "offer"', field="type"
        )
    if not isinstance(sdp, str) or not sdp.strip():
        raise BackendError("webrtc.offer", ErrorCode.INVALID_FORMAT, "sdp: empty", field="sdp")
    if len(sdp) > MAX_SDP_CHARS:
        raise BackendError(
            "webrtc.offer",
            ErrorCode.INVALID_FORMAT,
            f"sdp: longer than {MAX_SDP_CHARS} characters",
            field="sdp",
        )
    if not sdp.lstrip().startswith("v=0"):
        raise BackendError(
            "webrtc.offer",
            ErrorCode.INVALID_FORMAT,
            "sdp: not an SDP document (no v=0 line)",
            field="sdp",
        )
