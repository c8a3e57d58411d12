"""The callers of `benchmarks.talkers`, each group in a subprocess of its own so their CPU is not
the backend's: asyncio websocket clients, or LiveKit rtc participants for `--livekit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from typing import Any

from benchmarks.talkers_call import RATE, Call, own_cpu_s, phrases_pcm, report, voiced, wait_go

LK_CALLS_PER_PROCESS = 5  # rtc participants per caller process (each has the SDK's threads)
# As tests/e2e/livekit_participant.py: a caller stands in for a user on another machine, so it
# yields the CPU as much as the Ray workers (niceness 15) it calls.
CALLER_NICENESS = 15
RESYNC_S = 0.06  # a LiveKit caller holding more silence than this drops it as a phrase starts


# -- callers over the websocket (a subprocess) -----------------------------------------------
async def run_callers(spec: dict[str, Any]) -> None:
    import websockets

    pcm = await phrases_pcm()
    calls = [
        Call(c["index"], pcm, spec["turns"], spec["interval_s"], spec["deadline_s"])
        for c in spec["calls"]
    ]
    sockets = await asyncio.gather(
        *(
            websockets.connect(c["url"], max_size=None, open_timeout=60, ping_interval=None)
            for c in spec["calls"]
        )
    )

    async def receive(call: Call, ws: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for msg in ws:
                if isinstance(msg, bytes):
                    call.on_audio(time.monotonic())
                else:
                    call.on_event(json.loads(msg))

    async def one(call: Call, ws: Any, t0: float) -> None:
        receiver = asyncio.create_task(receive(call, ws))
        try:
            await call.talk(ws.send, t0)
        except websockets.ConnectionClosed as exc:
            call.errors.append({"type": "closed", "reason": str(exc)})
        finally:
            await ws.close()
            await receiver

    t0 = await wait_go()
    cpu0 = own_cpu_s()
    await asyncio.gather(*(one(c, ws, t0) for c, ws in zip(calls, sockets, strict=True)))
    report(spec, calls, own_cpu_s() - cpu0)


# -- callers as LiveKit participants (a subprocess) -------------------------------------------
class LiveKitCaller:
    """One call as a LiveKit rtc participant: publishes its microphone (the `Call`'s frames,
    handed to an `AudioSource` at real time), listens to the agent's track and takes its data
    events (`voice.events`). The agent's track carries silence between replies: only frames
    with speech count as reply audio."""

    def __init__(self, call: Call) -> None:
        from livekit import rtc

        self.rtc = rtc
        self.call = call
        self.room = rtc.Room()
        self.source = rtc.AudioSource(RATE, 1, queue_size_ms=500)
        self.agent_track = asyncio.Event()
        self.agent_listens = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def join(self, url: str, token: str, timeout_s: float) -> LiveKitCaller:
        rtc, room = self.rtc, self.room
        room.on("track_subscribed", self._on_track)
        room.on("data_received", self._on_data)
        room.on("local_track_subscribed", lambda _track: self.agent_listens.set())
        await room.connect(url, token)
        track = rtc.LocalAudioTrack.create_audio_track("mic", self.source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await room.local_participant.publish_track(track, options)
        await asyncio.wait_for(self.agent_track.wait(), timeout_s)
        await asyncio.wait_for(self.agent_listens.wait(), timeout_s)
        return self

    def _on_track(self, track: Any, _publication: Any, participant: Any) -> None:
        if track.kind == self.rtc.TrackKind.KIND_AUDIO and participant.identity.startswith(
            "agent-"
        ):
            self.tasks.append(asyncio.create_task(self._listen(track)))
            self.agent_track.set()

    def _on_data(self, packet: Any) -> None:
        if packet.topic == "voice.events":
            self.call.on_event(json.loads(packet.data))

    async def _listen(self, track: Any) -> None:
        stream = self.rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
        async for event in stream:
            if voiced(bytes(event.frame.data)):
                self.call.on_audio(time.monotonic())

    async def send(self, frame: bytes) -> None:
        n = len(frame) // 2
        await self.source.capture_frame(self.rtc.AudioFrame(frame, RATE, 1, n))

    def resync(self) -> float | None:
        """As a phrase starts: drop the silence the source still holds. The caller hands frames
        on a schedule and catches up after a stall (a niced process on a busy machine), and the
        source plays the burst out at real time, so a stall would stay as a lasting lag — which a
        microphone, produced and drained at real time, never has. Returns the ms dropped."""
        held = self.source.queued_duration
        if held <= RESYNC_S:
            return None
        self.source.clear_queue()
        return round(held * 1000, 1)

    async def talk(self, t0: float) -> None:
        try:
            await self.call.talk(
                self.send, t0, queued=lambda: self.source.queued_duration, on_phrase=self.resync
            )
        except Exception as exc:
            self.call.errors.append({"type": "caller", "reason": repr(exc)})
        finally:
            await asyncio.sleep(0.3)  # the last data events
            with contextlib.suppress(Exception):
                await self.room.disconnect()  # leaving on purpose: the session ends
            for task in self.tasks:
                task.cancel()


async def run_livekit_callers(spec: dict[str, Any]) -> None:
    os.nice(max(0, CALLER_NICENESS - os.nice(0)))
    pcm = await phrases_pcm()
    calls = [
        Call(c["index"], pcm, spec["turns"], spec["interval_s"], spec["deadline_s"])
        for c in spec["calls"]
    ]
    joined = await asyncio.gather(
        *(
            join_or_give_up(LiveKitCaller(call), c["url"], c["token"], 60)
            for call, c in zip(calls, spec["calls"], strict=True)
        )
    )
    t0 = await wait_go()
    cpu0 = own_cpu_s()
    await asyncio.gather(*(p.talk(t0) for p in joined if p is not None))
    report(spec, calls, own_cpu_s() - cpu0)


async def join_or_give_up(
    peer: LiveKitCaller, url: str, token: str, timeout_s: float
) -> LiveKitCaller | None:
    """A call whose agent never joins (or never listens) within `timeout_s` does not talk: its
    turns count as lost and the error says why, and the level goes on with the others."""
    try:
        return await peer.join(url, token, timeout_s)
    except Exception as exc:
        peer.call.errors.append({"type": "join", "reason": repr(exc)[:200]})
        with contextlib.suppress(Exception):
            await peer.room.disconnect()
        return None
