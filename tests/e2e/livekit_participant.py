"""A LiveKit test participant, run as its own process: joins a room with a session's token
(the `livekit` rtc SDK, as any LiveKit client would), publishes speech from a PCM16 file in real
time, and records what the agent sends back — its audio track, captions and data events.

    python tests/e2e/livekit_participant.py --url ws://... --token ... --pcm hello.pcm --out r.json

Exit code 0 with a JSON report in --out; 2 if the room could not be joined (report has "error").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from livekit import rtc

FRAME_MS = 20
LEAD_S = 1.0  # how far ahead of real time audio is queued in the SDK's source
VOICE_RMS = 300.0  # above espeak's silence, below its speech
QUIET_AFTER_REPLY_S = 1.0
# Ray runs its workers (the sessions under test) at niceness 15. A caller stands in for a user on
# another machine: at the default niceness, five of them would take the CPU from the agents they
# are calling, which no real user can do, so they yield as much as the agents do.
RAY_WORKER_NICENESS = 15


class Participant:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rate: int = args.rate
        self.room = rtc.Room()
        self.report: dict[str, Any] = {"events": [], "captions": [], "transcriptions": []}
        self.reply = bytearray()
        self.awaiting_voice = False  # a turn's speech ended, its reply not heard yet
        self.voiced_s = 0.0  # how much of the agent's audio was speech, not silence
        self.voiced_frames: list[tuple[float, float]] = []  # (arrival, seconds)
        self.last_voice_at: float | None = None
        self.speech_end_at: float | None = None
        self.turn_voice_ms: list[float] = []
        self.agent_track = asyncio.Event()
        self.agent_listens = asyncio.Event()  # the agent subscribed to our microphone
        self.closed = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []

    # -- room --------------------------------------------------------------------------------
    async def join(self) -> None:
        room = self.room
        room.on("track_subscribed", self._on_track)
        room.on("data_received", self._on_data)
        room.on("transcription_received", self._on_transcription)
        room.on("disconnected", self._on_disconnected)
        room.on("local_track_subscribed", lambda _track: self.agent_listens.set())
        room.register_text_stream_handler("lk.transcription", self._on_caption)
        await room.connect(self.args.url, self.args.token)
        self.report["room"] = room.name
        self.report["identity"] = room.local_participant.identity

    def _on_track(self, track: rtc.Track, _pub: Any, participant: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO and participant.identity.startswith("agent-"):
            self.report["agent_identity"] = participant.identity
            self.tasks.append(asyncio.create_task(self._listen(track)))
            self.agent_track.set()

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic == "voice.events":
            self.report["events"].append(json.loads(packet.data))

    def _on_transcription(self, segments: list[Any], participant: Any, _pub: Any) -> None:
        who = participant.identity if participant else ""
        self.report["transcriptions"] += [{"speaker": who, "text": s.text} for s in segments]

    def _on_caption(self, reader: Any, sender: str) -> None:
        async def read() -> None:
            text = await reader.read_all()
            attrs = dict(reader.info.attributes)
            self.report["captions"].append(
                {"text": text, "speaker": attrs.get("voice.speaker", sender), "attributes": attrs}
            )

        self.tasks.append(asyncio.create_task(read()))

    def _on_disconnected(self, reason: Any) -> None:
        self.report["disconnect_reason"] = rtc.DisconnectReason.Name(reason)
        self.closed.set()

    async def _listen(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=self.rate, num_channels=1)
        async for event in stream:
            data = bytes(event.frame.data)
            self.reply += data
            samples = np.frombuffer(data, dtype="<i2").astype(np.float64)
            if samples.size and np.sqrt(np.mean(samples**2)) > VOICE_RMS:
                now = time.monotonic()
                self.voiced_s += samples.size / self.rate
                self.voiced_frames.append((time.monotonic(), samples.size / self.rate))
                if self.awaiting_voice and self.speech_end_at is not None:
                    self.turn_voice_ms.append((now - self.speech_end_at) * 1000)
                    self.awaiting_voice = False
                self.last_voice_at = now

    # -- speaking ----------------------------------------------------------------------------
    async def talk(self, pcm: bytes, turns: int) -> None:
        # The SDK's native thread paces the audio out of this queue: a stall of this (Python)
        # process on a busy machine must not tear holes into the speech.
        source = rtc.AudioSource(self.rate, 1, queue_size_ms=int(LEAD_S * 1000) + 500)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await self.room.local_participant.publish_track(track, options)
        await asyncio.wait_for(self.agent_track.wait(), self.args.timeout)
        await asyncio.wait_for(self.agent_listens.wait(), self.args.timeout)
        if self.args.start_when:
            await _wait_for_file(Path(self.args.start_when), self.args.timeout)
        step = self.rate * FRAME_MS // 1000 * 2
        silence = bytes(step)
        clock = _Clock()
        await self._send(source, clock, silence * 50)  # 1 s for both sides to settle
        for turn in range(turns):
            if turn and self.args.reconnect_between_turns:
                await self.room.simulate_scenario(
                    rtc.SimulateScenarioKind.SIMULATE_SIGNAL_RECONNECT
                )
                self.report["simulated_reconnects"] = turn
            await self._send(source, clock, pcm)
            self.speech_end_at = time.monotonic() + source.queued_duration
            self.awaiting_voice = True
            replies = sum(1 for e in self.report["events"] if e.get("type") == "agent_reply")
            deadline = time.monotonic() + self.args.timeout
            if self.args.barge_in:
                await self._barge_in(source, clock, Path(self.args.barge_in).read_bytes())
                break
            while time.monotonic() < deadline and not self._turn_done(replies):
                await self._send(source, clock, silence)
        with contextlib.suppress(Exception):
            await source.aclose()

    async def _barge_in(self, source: rtc.AudioSource, clock: _Clock, pcm: bytes) -> None:
        """Talk over the agent one second into its reply; then wait for it to go quiet."""
        silence = bytes(self.rate * FRAME_MS // 1000 * 2)
        deadline = time.monotonic() + self.args.timeout
        while self.awaiting_voice and time.monotonic() < deadline:
            await self._send(source, clock, silence)
        await self._send(source, clock, silence * (1000 // FRAME_MS))
        await self._send(source, clock, pcm)
        while time.monotonic() < deadline and not (
            any(e.get("type") == "interrupted" for e in self.report["events"])
            and time.monotonic() - (self.last_voice_at or 0) > QUIET_AFTER_REPLY_S
        ):
            await self._send(source, clock, silence)

    def _turn_done(self, replies_before: int) -> bool:
        replies = sum(1 for e in self.report["events"] if e.get("type") == "agent_reply")
        voiced = self.last_voice_at is not None and (
            self.speech_end_at is not None and self.last_voice_at > self.speech_end_at
        )
        quiet = voiced and time.monotonic() - (self.last_voice_at or 0) > QUIET_AFTER_REPLY_S
        return replies > replies_before and quiet

    async def _send(self, source: rtc.AudioSource, clock: _Clock, pcm: bytes) -> None:
        step = self.rate * FRAME_MS // 1000 * 2
        for i in range(0, len(pcm) - len(pcm) % 2, step):
            chunk = pcm[i : i + step]
            n = len(chunk) // 2
            await source.capture_frame(rtc.AudioFrame(chunk, self.rate, 1, n))
            await clock.tick(n / self.rate)

    def summary(self) -> dict[str, Any]:
        samples = np.frombuffer(bytes(self.reply), dtype="<i2").astype(np.float64)
        voiced = samples[np.abs(samples) > 0]
        self.report["reply_audio_s"] = samples.size / self.rate
        self.report["reply_rms"] = float(np.sqrt(np.mean(voiced**2))) if voiced.size else 0.0
        self.report["voice_to_voice_ms"] = [round(v, 1) for v in self.turn_voice_ms]
        self.report["voiced_reply_s"] = round(self.voiced_s, 2)
        self.report["reply_segments_s"] = segments(self.voiced_frames)
        return self.report


def segments(frames: list[tuple[float, float]], gap_s: float = 0.6) -> list[float]:
    """Voiced reply audio split where the agent was silent for `gap_s`: one entry per reply."""
    out: list[float] = []
    last = None
    for at, seconds in frames:
        if last is None or at - last > gap_s:
            out.append(0.0)
        out[-1] += seconds
        last = at
    return [round(s, 2) for s in out]


async def _wait_for_file(path: Path, timeout_s: float) -> None:
    """Hold until the test says go (it creates `path`): calls that must overlap start together."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout_s:g} s")
        await asyncio.sleep(0.05)


class _Clock:
    """Real-time pacing with a lead: audio is queued at most `LEAD_S` ahead of being spoken."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.sent_s = 0.0

    async def tick(self, seconds: float) -> None:
        self.sent_s += seconds
        ahead = self.t0 + self.sent_s - time.monotonic() - LEAD_S
        if ahead > 0:
            await asyncio.sleep(ahead)


async def main(args: argparse.Namespace) -> int:
    os.nice(max(0, RAY_WORKER_NICENESS - os.nice(0)))
    p = Participant(args)
    out = Path(args.out)
    try:
        await asyncio.wait_for(p.join(), 20)
    except Exception as exc:
        out.write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 2
    try:
        if args.pcm:
            await p.talk(Path(args.pcm).read_bytes(), args.turns)
            await asyncio.sleep(0.5)  # the last captions and events
        if args.wait_closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(p.closed.wait(), args.wait_closed)
    finally:
        out.write_text(json.dumps(p.summary()))
        if not p.closed.is_set():
            await p.room.disconnect()  # leaving on purpose (CLIENT_INITIATED)
        for task in p.tasks:
            task.cancel()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--pcm", help="PCM16 mono speech at --rate to say")
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--turns", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0, help="per turn")
    parser.add_argument("--reconnect-between-turns", action="store_true")
    parser.add_argument("--barge-in", help="PCM16 speech to say over the agent's first reply")
    parser.add_argument("--start-when", help="talk only once this file exists")
    parser.add_argument("--wait-closed", type=float, default=0.0, help="stay until kicked out")
    code = asyncio.run(main(parser.parse_args()))
    # The report is written and the room left. Skip interpreter finalisation: once, on a loaded
    # machine, the process died with SIGABRT after that point, in the SDK's native teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
