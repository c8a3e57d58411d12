"""WebRTC helpers shared by the session's transport and the Python WebRTC client (aiortc).

- `peer_connection()`: an `RTCPeerConnection` with the configured STUN/TURN servers.
- `host_candidates()`: which local addresses ICE offers as host candidates. aioice offers every
  interface except loopback and has no option for it; a same-machine setup (tests, a laptop
  demo) wants loopback only, a multi-homed server wants its LAN address only.
- PCM16 ⇄ `av.AudioFrame` conversions (WebRTC audio is 48 kHz; Opus decodes to stereo).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import aioice.ice
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame

RTC_RATE_HZ = 48000  # Opus' clock: every WebRTC audio frame here is at this rate
FRAME_SAMPLES = 960  # 20 ms at 48 kHz, the usual Opus packet
RESYNC_LAG_S = 0.2  # a track this far behind its clock (a busy loop) skips ahead, not bursts

_host_addresses: ContextVar[tuple[str, ...] | None] = ContextVar("host_addresses", default=None)
_aioice_host_addresses = aioice.ice.get_host_addresses


def _chosen_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _host_addresses.get()
    if chosen is None:
        return _aioice_host_addresses(use_ipv4, use_ipv6)
    return list(chosen)


# Installed once; behaves exactly as aioice's own unless `host_candidates()` is active in the
# calling task (candidate gathering runs inside `setLocalDescription`, in the caller's context).
aioice.ice.get_host_addresses = _chosen_host_addresses


@contextlib.contextmanager
def host_candidates(addresses: list[str] | None) -> Iterator[None]:
    """Within this block, ICE gathers host candidates on `addresses` only (None: aioice's
    default, every non-loopback interface)."""
    token = _host_addresses.set(tuple(addresses) if addresses is not None else None)
    try:
        yield
    finally:
        _host_addresses.reset(token)


def peer_connection(ice_servers: list[dict[str, Any]] | None = None) -> RTCPeerConnection:
    servers = [RTCIceServer(**s) for s in ice_servers or []]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


AUDIO_JITTER_PREFETCH = 1  # frames held before one is released (aiortc's default: 4 = 80 ms)


def low_latency_audio(pc: RTCPeerConnection, track: MediaStreamTrack) -> bool:
    """Release received audio after 1 frame (20 ms) instead of aiortc's 4 (80 ms): a lost packet
    stalls the buffer the same way either way (until it overflows), so the prefetch only adds
    delay — 60 ms per direction, measured in benchmarks/webrtc_vs_websocket.py. aiortc has no
    option for it; this sets the receiver's private buffer before any packet arrives, and leaves
    the default in place (returns False) if that attribute ever changes."""
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        attr = "_RTCRtpReceiver__jitter_buffer"
        if receiver.track is track and isinstance(getattr(receiver, attr, None), JitterBuffer):
            # 64 packets (1.3 s) of room, not 16: a stalled loop under load must not overflow it.
            buffer = JitterBuffer(capacity=64, prefetch=AUDIO_JITTER_PREFETCH)
            setattr(receiver, attr, buffer)
            return True
    return False


def frame_to_mono(frame: AudioFrame) -> np.ndarray:
    """A decoded frame (s16, packed, any channel count) → int16 mono samples."""
    data = frame.to_ndarray().reshape(-1)
    channels = len(frame.layout.channels)
    if channels == 1:
        return data.astype(np.int16, copy=False)
    mixed = data.reshape(-1, channels).astype(np.int32).sum(axis=1) // channels
    return mixed.astype(np.int16)


def mono_frame(samples: np.ndarray, pts: int, rate_hz: int = RTC_RATE_HZ) -> AudioFrame:
    frame = AudioFrame.from_ndarray(
        np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = rate_hz
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, rate_hz)
    return frame


class FrameClock:
    """Paces a track's 20 ms frames on the wall clock and numbers them (`pts`). A track that
    fell more than `resync_lag_s` behind (a busy event loop) skips ahead instead of bursting;
    None never skips (a test client that wants every frame it queued sent)."""

    def __init__(self, resync_lag_s: float | None = RESYNC_LAG_S) -> None:
        self.resync_lag_s = resync_lag_s
        self.pts = 0
        self._start: float | None = None

    async def tick(self) -> int:
        """Wait for the next frame's time; returns its pts."""
        now = time.monotonic()
        if self._start is None:
            self._start = now
            return self.pts
        self.pts += FRAME_SAMPLES
        wait = self._start + self.pts / RTC_RATE_HZ - now
        if wait > 0:
            await asyncio.sleep(wait)
        elif self.resync_lag_s is not None and wait < -self.resync_lag_s:
            self._start = now - self.pts / RTC_RATE_HZ
        return self.pts
