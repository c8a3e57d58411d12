"""A Python WebRTC client of a `webrtc` session (aiortc), for tests, benchmarks and scripts.

It does what a browser does: sends a microphone track (PCM you `play`, silence otherwise, paced
in real time), opens an `events` data channel, posts its offer with every candidate to the
session's `media.url`, and records the reply track and the events.

    call = WebRtcCall(session)               # the body of POST /v1/sessions (transport webrtc)
    await call.connect()
    result = await call.talk(pcm16, 16000)   # a CallResult, as HttpClient.talk returns
    await call.aclose()                      # hangs up: the session ends
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx
import numpy as np
import soxr
from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from backend.errors import BackendError
from backend.http_client import CallResult
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

LOUD_RMS = 300.0
HANGUP_WAIT_S = 2.0  # a received 20 ms frame above this is reply speech, not comfort noise


class MicTrack(MediaStreamTrack):
    """48 kHz mono, 20 ms frames on a real-time clock: queued PCM first, then silence."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._buf = np.zeros(0, dtype=np.int16)
        self._clock = FrameClock(resync_lag_s=None)
        self.drained = asyncio.Event()
        self.drained_at: float | None = None

    def play(self, samples_48k: np.ndarray) -> None:
        self._buf = np.concatenate((self._buf, samples_48k.astype(np.int16)))
        self.drained.clear()

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._clock.tick()
        samples, self._buf = self._buf[:FRAME_SAMPLES], self._buf[FRAME_SAMPLES:]
        if samples.size and not self._buf.size:
            self.drained_at = time.monotonic()
            self.drained.set()
        if samples.size < FRAME_SAMPLES:
            samples = np.concatenate((samples, np.zeros(FRAME_SAMPLES - samples.size, np.int16)))
        return mono_frame(samples, pts)


class WebRtcCall:
    def __init__(
        self,
        session: dict[str, Any],
        *,
        host_addresses: list[str] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.session = session
        self.media = session["media"]
        self.host_addresses = host_addresses
        self.timeout_s = timeout_s
        self.pc = peer_connection(self.media.get("ice_servers"))
        self.mic = MicTrack()
        self.events: list[dict[str, Any]] = []
        self.audio = bytearray()  # everything received, 48 kHz mono PCM16
        self.loud_at: list[float] = []  # arrival times of frames with reply speech in them
        self.event_at: list[float] = []  # arrival time of each of `events`
        self.packets_received = 0
        self._event_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.channel = self.pc.createDataChannel("events")
        self.channel.on("message", self._on_message)
        self.pc.addTrack(self.mic)
        self.pc.on("track", self._on_track)

    def _on_message(self, message: Any) -> None:
        if isinstance(message, str):
            event = json.loads(message)
            self.events.append(event)
            self.event_at.append(time.monotonic())
            self._event_queue.put_nowait(event)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            low_latency_audio(self.pc, track)
            self._tasks.append(asyncio.create_task(self._speaker(track)))

    async def _speaker(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            samples = frame_to_mono(frame)
            self.packets_received += 1
            self.audio.extend(samples.tobytes())
            if samples.size and np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > LOUD_RMS:
                self.loud_at.append(time.monotonic())

    async def offer(self) -> str:
        """Our SDP offer, with every candidate gathered (no trickle needed)."""
        with host_candidates(self.host_addresses):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer: dict[str, str]) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))

    async def connect(self) -> dict[str, Any]:
        """Offer, post it to the session's `media.url`, apply the answer. Returns the answer."""
        body = {"sdp": await self.offer(), "type": "offer", "token": self.media["token"]}
        async with httpx.AsyncClient(timeout=self.timeout_s) as http:
            resp = await http.post(self.media["url"], json=body)
        if resp.status_code >= 400:
            raise BackendError.from_body("webrtc.offer", resp.json())
        answer = resp.json()
        await self.accept(answer)
        return answer

    async def wait_connected(self, timeout_s: float = 20.0) -> None:
        async with asyncio.timeout(timeout_s):
            while self.pc.connectionState != "connected" or self.channel.readyState != "open":
                if self.pc.connectionState in ("failed", "closed"):
                    raise BackendError("webrtc", "connection_failed", "peer connection failed")
                await asyncio.sleep(0.05)

    def play(self, pcm16: bytes, sample_rate_hz: int) -> None:
        samples = np.frombuffer(pcm16, dtype="<i2")
        if sample_rate_hz != RTC_RATE_HZ:
            samples = soxr.resample(samples, sample_rate_hz, RTC_RATE_HZ)
        self.mic.play(np.asarray(samples, dtype=np.int16))

    async def talk(
        self, pcm16: bytes, sample_rate_hz: int, *, turns: int = 1, timeout_s: float = 60.0
    ) -> CallResult:
        """Speak `pcm16` (then silence) and collect until `turns` turns completed, as
        `HttpClient.talk` does; `first_audio_at` is the first loud reply frame after the speech."""
        result = CallResult()
        first_event = len(self.events)
        audio_from = len(self.audio)
        while not self._event_queue.empty():
            self._event_queue.get_nowait()
        self.play(pcm16, sample_rate_hz)
        done = 0
        async with asyncio.timeout(timeout_s):
            await self.mic.drained.wait()
            result.speech_sent_at = self.mic.drained_at
            while done < turns:
                event = await self._event_queue.get()
                kind = event.get("type")
                unheard = kind == "transcript" and not event.get("text")
                if unheard or (kind in ("metrics", "error") and event.get("turn_id")):
                    done += 1
                if kind == "closed":
                    break
            # Reply audio plays in real time, after the events: wait until it has been heard.
            sent = result.speech_sent_at or 0.0
            replied = any(
                e.get("type") == "agent_reply" and e.get("text") for e in self.events[first_event:]
            )
            while replied and not (
                self.loud_at
                and self.loud_at[-1] > sent
                and time.monotonic() - self.loud_at[-1] > 0.5
            ):
                await asyncio.sleep(0.05)
        result.events = self.events[first_event:]
        result.audio = self.audio[audio_from:]
        sent = result.speech_sent_at or 0.0
        result.first_audio_at = next((t for t in self.loud_at if t > sent), None)
        return result

    async def inbound_stats(self) -> dict[str, int]:
        """WebRTC stats of the reply track (aiortc's count RTP packets, not bytes) and how much
        decoded audio came out of them."""
        stats = await self.pc.getStats()
        packets = sum(
            s.packetsReceived
            for s in stats.values()
            if getattr(s, "type", "") == "inbound-rtp" and getattr(s, "kind", "") == "audio"
        )
        return {"packets_received": packets, "decoded_bytes": len(self.audio)}

    async def aclose(self, hangup: bool = True) -> None:
        if hangup and self.channel.readyState == "open":
            with contextlib.suppress(Exception):
                self.channel.send(json.dumps({"type": "hangup"}))
                # The session closes the connection once it has the message; closing first
                # could lose it (it would still end the session, as a dropped connection).
                async with asyncio.timeout(HANGUP_WAIT_S):
                    while self.pc.connectionState not in ("closed", "failed"):
                        await asyncio.sleep(0.05)
        for t in self._tasks:
            t.cancel()
        await self.pc.close()
