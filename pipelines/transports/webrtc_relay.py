"""Relaying a WebRTC call to a bot's own SmallWebRTC endpoint (a Pipecat bot started through its
runner): the session answers the client's peer connection as `WebRtcTransport` does (offer,
renegotiation, trickled candidates) and opens a second one to the bot, as a SmallWebRTC client
would (audio + data channel "chat", the offer POSTed to the bot's offer URL). Between them:
audio both ways (decoded, re-sent at 48 kHz on the other connection, paced, at most
`MAX_BUFFER_S` held), and the data channel's messages verbatim — RTVI, keep-alive pings and
signalling are the client's and the bot's own. The session keeps admission, health and the end
of the call: the client or the bot leaving ends it, closing the session cuts both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import httpx
import numpy as np
from aiortc import RTCDataChannel, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

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
from pipelines.transports.base import OnClosed
from pipelines.transports.webrtc import WebRtcOptions, WebRtcTransport
from providers.resample import StreamResampler

log = logging.getLogger(__name__)

MAX_BUFFER_S = 1.0  # audio one side holds for the other before dropping the oldest
MAX_PENDING_MESSAGES = 200  # client messages held until the bot's channel opens
OFFER_TIMEOUT_S = 20.0


class PipeTrack(MediaStreamTrack):
    """48 kHz mono audio pushed in by one connection, sent out on another's clock."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._buf = np.zeros(0, dtype=np.int16)
        self._clock = FrameClock()

    def push(self, samples: np.ndarray) -> None:
        self._buf = np.concatenate((self._buf, samples))[-int(MAX_BUFFER_S * RTC_RATE_HZ) :]

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._clock.tick()
        samples, self._buf = self._buf[:FRAME_SAMPLES], self._buf[FRAME_SAMPLES:]
        if samples.size < FRAME_SAMPLES:
            samples = np.concatenate((samples, np.zeros(FRAME_SAMPLES - samples.size, np.int16)))
        return mono_frame(samples, pts)


async def _pump(track: MediaStreamTrack, into: Any) -> None:
    """Decoded frames of `track` → `into()` (the current PipeTrack, or None), at 48 kHz mono."""
    resampler: StreamResampler | None = None
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        if resampler is None or resampler.in_rate_hz != frame.sample_rate:
            resampler = StreamResampler(frame.sample_rate, RTC_RATE_HZ)
        samples = resampler.process(frame_to_mono(frame))
        target = into()
        if samples.size and isinstance(target, PipeTrack):
            target.push(samples)


class WebRtcRelay(WebRtcTransport):
    def __init__(
        self,
        options: WebRtcOptions,
        upstream_url: str,
        on_closed: OnClosed | None = None,
        request_data: dict[str, Any] | None = None,  # None: the runner hands the bot /start's
    ) -> None:
        super().__init__(options, on_closed)
        self.upstream_url = upstream_url
        self.request_data = request_data
        self.bot = peer_connection(options.ice_servers)
        self.to_bot = PipeTrack()
        self.bot_channel: RTCDataChannel | None = None
        self._to_bot_pending: deque[str | bytes] = deque(maxlen=MAX_PENDING_MESSAGES)

    async def answer(self, sdp: str, sdp_type: str = "offer") -> dict[str, str]:
        await self._connect_bot()  # refused here, the client gets the error, not a silent call
        return await super().answer(sdp, sdp_type)

    async def _connect_bot(self) -> None:
        bot = self.bot
        bot.addTransceiver(self.to_bot, direction="sendrecv")  # index 0: the microphone
        channel = bot.createDataChannel("chat", ordered=True)
        self.bot_channel = channel
        channel.on("message", self._send)  # the bot's RTVI and signalling, verbatim

        def flush() -> None:
            while self._to_bot_pending and channel.readyState == "open":
                channel.send(self._to_bot_pending.popleft())

        channel.on("open", flush)
        bot.on("track", self._on_bot_track)
        bot.on("connectionstatechange", self._on_bot_state)
        with host_candidates(self.options.host_addresses):
            await bot.setLocalDescription(await bot.createOffer())
        body = {
            "sdp": bot.localDescription.sdp,
            "type": "offer",
            "pc_id": None,
            "restart_pc": False,
            "request_data": self.request_data,
        }
        try:
            async with httpx.AsyncClient(timeout=OFFER_TIMEOUT_S) as http:
                resp = await http.post(self.upstream_url, json=body)
            resp.raise_for_status()
            answer = resp.json()
            await bot.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        except Exception as exc:
            raise BackendError(
                "webrtc.relay",
                ErrorCode.CONNECTION_FAILED,
                f"the bot did not accept the relayed call ({type(exc).__name__})",
            ) from None

    def _on_bot_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            low_latency_audio(self.bot, track)
            self._tasks.append(asyncio.create_task(_pump(track, lambda: self.track)))

    def _on_bot_state(self) -> None:
        if self.bot.connectionState in ("failed", "closed"):
            self._end(f"the bot's peer connection {self.bot.connectionState}")

    # -- the client's side: to the bot instead of the session's pipeline --------------------
    def _outgoing_track(self) -> MediaStreamTrack:
        return PipeTrack()

    async def _inbound(self, track: MediaStreamTrack) -> None:
        await _pump(track, lambda: self.to_bot)

    def _on_message(self, message: Any) -> None:
        ch = self.bot_channel
        if ch is not None and ch.readyState == "open":
            ch.send(message)
        else:
            self._to_bot_pending.append(message)

    async def _events(self, outbox: Outbox) -> None:
        # Nothing of the session's pipeline reaches the client: the bot answers. The outbox
        # still closes with the session, which ends this task (and `aclose` cuts both sides).
        while not (await outbox.poll(audio=True, events=True, timeout_s=10.0))["closed"]:
            pass

    async def aclose(self) -> None:
        await super().aclose()
        with contextlib.suppress(Exception):
            await self.bot.close()
