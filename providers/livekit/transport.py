"""The LiveKit transport: the session joins its room as the agent participant.

It has the shape of `pipelines.transports.base.MediaTransport` (`start(runtime)`, `aclose()`,
`on_closed(reason)` once when the call is over) without importing the pipeline: `runtime` is
anything with `push_audio(frames)`, `start()`, `outbox.poll(...)` (typed items:
`providers.messages`), `input_sample_rate_hz` and
`settings.output_sample_rate_hz` — a `SessionRuntime`.

User audio: the user's track, resampled by the SDK to the session's input rate, goes frame by
frame (20 ms) into `push_audio` — no actor hop, this runs inside the session actor. Reply audio:
the outbox's PCM16 goes into an `AudioSource` published as the agent's microphone track; the
pipeline paces it at real time, so the source's queue stays short and `clear_queue()` on an
`interrupted` event silences the agent at once. Events go out as data messages (topic
`voice.events`) and transcripts as LiveKit transcriptions, so stock LiveKit clients show captions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from livekit import rtc

from providers.messages import AgentText, AudioChunk, Interruption, Message, Transcript

log = logging.getLogger(__name__)

EVENTS_TOPIC = "voice.events"
TRANSCRIPTION_TOPIC = "lk.transcription"  # LiveKit's text-stream captions
SOURCE_QUEUE_MS = 1000  # headroom only: the pipeline sends ~200 ms ahead of real time
POLL_TIMEOUT_S = 5.0
INBOUND_FRAME_MS = 20
REJOIN_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)
# The room is gone for good: rejoining cannot help.
FINAL_REASONS = {
    rtc.DisconnectReason.ROOM_DELETED,
    rtc.DisconnectReason.ROOM_CLOSED,
    rtc.DisconnectReason.PARTICIPANT_REMOVED,
    rtc.DisconnectReason.DUPLICATE_IDENTITY,
}

OnClosed = Callable[[str], Awaitable[None]]


class LiveKitTransport:
    def __init__(
        self,
        url: str,
        token: str,
        user_identity: str,
        rejoin_grace_s: float = 10.0,
        on_closed: OnClosed | None = None,
    ) -> None:
        self.url = url
        self._token = token
        self.user_identity = user_identity
        self.rejoin_grace_s = rejoin_grace_s
        self.on_closed = on_closed
        self.runtime: Any = None
        self.room: rtc.Room | None = None
        self.source: rtc.AudioSource | None = None
        self.agent_track_sid = ""
        self.user_track_sid = ""
        self.rejoins = 0
        self._out_rate = 16000
        self._in_rate = 16000
        self._inbound: asyncio.Task[None] | None = None
        self._outbound: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[Message] = asyncio.Queue()
        self._grace: asyncio.Task[None] | None = None
        self._rejoin: asyncio.Task[None] | None = None
        self._closing = False
        self._ended = False

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, runtime: Any) -> None:
        """Join the room, publish the agent's track, and start moving media."""
        self.runtime = runtime
        self._in_rate = runtime.input_sample_rate_hz
        self._out_rate = runtime.settings.output_sample_rate_hz
        self.source = rtc.AudioSource(self._out_rate, 1, queue_size_ms=SOURCE_QUEUE_MS)
        await self._join()
        runtime.start()
        self._outbound = asyncio.create_task(self._send_loop())
        self._publisher = asyncio.create_task(self._event_loop())

    async def aclose(self) -> None:
        """Leave the room and stop media; never calls `on_closed`."""
        self._closing = True
        tasks = [
            t
            for t in (self._inbound, self._outbound, self._publisher, self._grace, self._rejoin)
            if t
        ]
        for task in tasks:
            if task is not asyncio.current_task():
                task.cancel()
        for task in tasks:
            if task is not asyncio.current_task():
                with contextlib.suppress(BaseException):
                    await task
        if self.room is not None:
            with contextlib.suppress(Exception):
                await self.room.disconnect()
        if self.source is not None:
            with contextlib.suppress(Exception):
                await self.source.aclose()

    async def _join(self) -> None:
        room = rtc.Room()
        room.on("track_subscribed", self._on_track_subscribed)
        room.on("participant_connected", self._on_participant_connected)
        room.on("participant_disconnected", self._on_participant_disconnected)
        room.on("disconnected", self._on_disconnected)
        room.on("reconnecting", lambda: log.info("livekit: reconnecting to %s", self.url))
        room.on("reconnected", lambda: log.info("livekit: reconnected"))
        await room.connect(self.url, self._token, rtc.RoomOptions(auto_subscribe=True))
        self.room = room
        assert self.source is not None
        track = rtc.LocalAudioTrack.create_audio_track("agent-voice", self.source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        publication = await room.local_participant.publish_track(track, options)
        self.agent_track_sid = publication.sid

    def _end(self, reason: str) -> None:
        """The call is over (user left, room finished, connection lost for good): once."""
        if self._ended or self._closing:
            return
        self._ended = True
        log.info("livekit: %s", reason)
        if self.on_closed is not None:
            asyncio.get_running_loop().create_task(self.on_closed(reason))

    # -- room events (SDK callbacks, on this event loop) -----------------------------------
    def _on_track_subscribed(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: Any
    ) -> None:
        if participant.identity != self.user_identity or track.kind != rtc.TrackKind.KIND_AUDIO:
            return
        self._cancel_grace()
        if self._inbound is not None:
            self._inbound.cancel()
        self.user_track_sid = publication.sid
        self._inbound = asyncio.get_running_loop().create_task(self._receive_loop(track))

    def _on_participant_connected(self, participant: Any) -> None:
        if participant.identity == self.user_identity:
            self._cancel_grace()

    def _on_participant_disconnected(self, participant: Any) -> None:
        if participant.identity != self.user_identity:
            return
        if participant.disconnect_reason == rtc.DisconnectReason.CLIENT_INITIATED:
            self._end("the user left the room")
            return
        # Dropped without saying goodbye (network loss): give them time to rejoin.
        self._cancel_grace()
        self._grace = asyncio.get_running_loop().create_task(self._grace_period())

    def _on_disconnected(self, reason: Any) -> None:
        if self._closing or self._ended:
            return
        if reason in FINAL_REASONS:
            self._end("the room finished")
        elif self._rejoin is None or self._rejoin.done():
            self._rejoin = asyncio.get_running_loop().create_task(self._rejoin_loop())

    def _cancel_grace(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    async def _grace_period(self) -> None:
        await asyncio.sleep(self.rejoin_grace_s)
        self._end(f"the user did not come back within {self.rejoin_grace_s:g} s")

    async def _rejoin_loop(self) -> None:
        """The SDK resumes short drops by itself; this covers a full disconnect. The session's
        runtime (conversation, history) is untouched, only the room connection is new."""
        for delay in REJOIN_DELAYS_S:
            await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                await self._join()
            except Exception as exc:
                log.warning("livekit: rejoin failed: %s", exc)
                continue
            self.rejoins += 1
            return
        self._end("lost the connection to the LiveKit server")

    # -- media -----------------------------------------------------------------------------
    async def _receive_loop(self, track: rtc.Track) -> None:
        # 20 ms frames, as the websocket's: half the per-frame event overhead of the SDK's 10 ms.
        stream = rtc.AudioStream(
            track, sample_rate=self._in_rate, num_channels=1, frame_size_ms=INBOUND_FRAME_MS
        )
        try:
            async for event in stream:
                try:
                    self.runtime.push_audio([bytes(event.frame.data)])
                except Exception as exc:  # the session closed under us
                    log.info("livekit: inbound audio stopped: %s", exc)
                    return
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()

    async def _send_loop(self) -> None:
        while True:
            out = await self.runtime.outbox.poll(audio=True, events=True, timeout_s=POLL_TIMEOUT_S)
            for item in out["items"]:
                if isinstance(item, AudioChunk):
                    await self._play(item)
                    continue
                if isinstance(item, Interruption) and self.source is not None:
                    self.source.clear_queue()  # barge-in: what is still queued must not be heard
                # Data messages wait for the server's acks: never let the audio wait on them.
                self._events.put_nowait(item)
            if out["closed"]:
                return

    async def _event_loop(self) -> None:
        while True:
            await self._publish_event(await self._events.get())

    async def _play(self, chunk: AudioChunk) -> None:
        pcm16 = chunk.pcm16
        if self.source is None or len(pcm16) < 2:
            return
        samples = len(pcm16) // 2
        frame = rtc.AudioFrame(pcm16[: samples * 2], self._out_rate, 1, samples)
        try:
            await self.source.capture_frame(frame)
        except Exception as exc:  # e.g. mid-rejoin; the pipeline keeps going
            log.debug("livekit: dropped reply audio: %s", exc)

    async def _publish_event(self, event: Message) -> None:
        room = self.room
        if room is None or not room.isconnected():
            return
        try:
            await room.local_participant.publish_data(
                json.dumps(event.to_wire()), reliable=True, topic=EVENTS_TOPIC
            )
            if isinstance(event, Transcript) and event.text:
                await self._caption(event, self.user_identity, self.user_track_sid, "user")
            elif isinstance(event, AgentText) and event.text:
                agent = room.local_participant.identity
                await self._caption(event, agent, self.agent_track_sid, "agent")
        except Exception as exc:  # a lost data message must not stop the audio
            log.debug("livekit: could not publish %s: %s", event.type, exc)

    async def _caption(
        self, event: Transcript | AgentText, identity: str, track_sid: str, who: str
    ) -> None:
        assert self.room is not None
        segment_id = f"{who}-{event.turn_id}-{abs(hash(event.text)) % 10**8}"
        # Text streams are what current LiveKit clients render as captions...
        await self.room.local_participant.send_text(
            event.text,
            topic=TRANSCRIPTION_TOPIC,
            attributes={
                "lk.transcribed_track_id": track_sid,
                "lk.segment_id": segment_id,
                "lk.transcription_final": "true",
                "voice.speaker": identity,
            },
        )
        # ...and transcription packets what older ones do.
        segment = rtc.TranscriptionSegment(
            id=segment_id,
            text=event.text,
            start_time=0,
            end_time=0,
            language="en",
            final=True,
        )
        transcription = rtc.Transcription(
            participant_identity=identity, track_sid=track_sid, segments=[segment]
        )
        await self.room.local_participant.publish_transcription(transcription)
