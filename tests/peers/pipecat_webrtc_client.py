"""A Pipecat SmallWebRTC client talking to a session, built from the real `pipecat-ai` package.

Runs in .venv-peers/pipecat, started by the tests as a subprocess. The pipecat package has the
bot's side of SmallWebRTC only (`SmallWebRTCConnection` answers offers, it cannot make one), so
this is an aiortc offerer doing what the JS client (`@pipecat-ai/small-webrtc-transport`) does,
with pipecat's own message types for everything on the wire: the offer is a
`SmallWebRTCRequest`, trickled candidates a `SmallWebRTCPatchRequest` of `IceCandidate`s (sent
after the answer, as a browser does: the offer carries none), data channel "chat" with
`"ping: <ms>"` keep-alives, `trackStatus` signalling and RTVI messages (`rtvi.models`), whose
answers are parsed back with pipecat's models (`BotReady`, `UserTranscriptionMessage`, ...).

    python pipecat_webrtc_client.py OFFER_URL TOKEN SPEECH.pcm [--echo]

Three turns of the 16 kHz speech in SPEECH.pcm: on the first peer connection; after a
renegotiation of it (same `pc_id`, what the client does on a `renegotiate` message); after a
restart (`restart_pc`: a new peer connection under the old `pc_id`). Also sends a malformed
data channel message. `--echo`: the session relays to a Pipecat echo bot (`echo_main`).
Prints one `RESULT {json}` line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time

import aiohttp
import aioice.ice
import numpy as np
import soxr
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame
from peer_wait import wait_for_change
from pipecat.processors.frameworks.rtvi.models import (
    AboutClientData,
    BotReady,
    ClientReadyData,
    Error,
    Message,
    UserTranscriptionMessage,
)
from pipecat.transports.smallwebrtc.connection import SIGNALLING_TYPE, TrackStatusMessage
from pipecat.transports.smallwebrtc.request_handler import (
    IceCandidate,
    SmallWebRTCPatchRequest,
    SmallWebRTCRequest,
)

RATE = 16000
RTC_RATE = 48000
FRAME = 960  # 20 ms at 48 kHz
LOUD_RMS = 300.0
TURN_TIMEOUT_S = 90.0

# Loopback only, as the session offers: no media leaves the host (aioice has no option for it).
aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]


class Mic(MediaStreamTrack):
    """48 kHz mono in real time: queued speech, then silence."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.buf = np.zeros(0, dtype=np.int16)
        self.start: float | None = None
        self.pts = 0

    def play(self, pcm16_16k: bytes) -> None:
        samples = soxr.resample(np.frombuffer(pcm16_16k, dtype="<i2"), RATE, RTC_RATE)
        self.buf = np.concatenate((self.buf, np.asarray(samples, dtype=np.int16)))

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self.start is None:
            self.start = now
        else:
            self.pts += FRAME
            wait = self.start + self.pts / RTC_RATE - now
            if wait > 0:
                await asyncio.sleep(wait)
        samples, self.buf = self.buf[:FRAME], self.buf[FRAME:]
        if samples.size < FRAME:
            samples = np.concatenate((samples, np.zeros(FRAME - samples.size, np.int16)))
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = RTC_RATE, self.pts
        return frame


class Call:
    def __init__(self, url: str, token: str) -> None:
        self.url = f"{url}?token={token}"  # the client's webrtcUrl
        self.token = token
        self.pc_id: str | None = None
        self.pc: RTCPeerConnection | None = None
        self.channel = None
        self.messages: list[dict] = []
        self.loud_frames: list[int] = [0]  # per peer connection: 20 ms frames above LOUD_RMS
        self.peak_rms = 0.0
        self.last_loud = 0.0
        self.changed = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.mic: Mic | None = None

    # -- peer connection, as SmallWebRTCTransport.startNewPeerConnection ---------------------
    def new_pc(self) -> None:
        # A new microphone track too: aiortc stops a track when its sender stops (a browser
        # hands the same one to the new connection).
        self.mic = Mic()
        pc = RTCPeerConnection()
        pc.addTransceiver(self.mic, direction="sendrecv")  # index 0: microphone
        pc.addTransceiver("video", direction="sendrecv")  # index 1: camera (none here)
        channel = pc.createDataChannel("chat", ordered=True)
        channel.on("message", self.on_message)
        channel.on("open", lambda: self.tasks.append(asyncio.create_task(self.on_open(channel))))
        pc.on("track", self.on_track)
        self.pc, self.channel = pc, channel
        self.loud_frames.append(0)

    async def on_open(self, channel) -> None:
        for index, enabled in ((0, True), (1, False)):  # syncTrackStatus
            status = TrackStatusMessage(type="trackStatus", receiver_index=index, enabled=enabled)
            channel.send(json.dumps({"type": SIGNALLING_TYPE, "message": status.model_dump()}))
        while channel.readyState == "open":  # keep-alive, as the JS client
            channel.send(f"ping: {int(time.time() * 1000)}")
            await asyncio.sleep(1.0)

    def on_message(self, message: str) -> None:
        self.messages.append(json.loads(message))
        self.changed.set()

    def on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self.tasks.append(asyncio.create_task(self.speaker(track, len(self.loud_frames) - 1)))

    async def speaker(self, track: MediaStreamTrack, pc_index: int) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            data = frame.to_ndarray().reshape(-1).astype(np.float64)
            rms = float(np.sqrt(np.mean(data**2))) if data.size else 0.0
            if rms > LOUD_RMS:
                self.loud_frames[pc_index] += 1
                self.peak_rms = max(self.peak_rms, rms)
                self.last_loud = time.monotonic()
                self.changed.set()

    async def negotiate(self, restart: bool = False, trickle: bool = True) -> dict:
        """Offer (its candidates held back and trickled after the answer, as a browser's)."""
        assert self.pc is not None
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        lines = sdp.split("\r\n")
        candidates = [ln[2:] for ln in lines if ln.startswith("a=candidate:")]
        if trickle:
            sdp = "\r\n".join(ln for ln in lines if not ln.startswith(("a=candidate:", "a=end-of")))
        request = SmallWebRTCRequest(
            sdp=sdp, type="offer", pc_id=self.pc_id, restart_pc=restart, request_data={}
        )
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.post(self.url, json=dataclasses.asdict(request)) as resp:
                resp.raise_for_status()
                answer = await resp.json()
            self.pc_id = answer["pc_id"]
            await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
            if trickle:
                first_mid = self.pc.getTransceivers()[0].mid
                unique = list(dict.fromkeys(candidates))
                patch = SmallWebRTCPatchRequest(
                    pc_id=self.pc_id,
                    candidates=[IceCandidate(c, first_mid, 0) for c in unique]
                    + [IceCandidate("", first_mid, 0)],  # end of candidates
                )
                async with http.patch(self.url, json=dataclasses.asdict(patch)) as resp:
                    resp.raise_for_status()
        return answer

    async def wait_open(self) -> None:
        async with asyncio.timeout(30):
            while self.channel.readyState != "open" or self.pc.connectionState != "connected":
                if self.pc.connectionState in ("failed", "closed"):
                    raise RuntimeError(f"peer connection {self.pc.connectionState}")
                await asyncio.sleep(0.05)

    def types(self) -> list[str]:
        return [m.get("type", "") for m in self.messages]

    async def wait_for(self, predicate, timeout_s: float = TURN_TIMEOUT_S) -> bool:
        return await wait_for_change(self.changed, predicate, timeout_s)

    async def turn(self, speech: bytes) -> dict:
        """Speak; wait for the transcript and the spoken reply (RTVI + audio on the track)."""
        pc_index = len(self.loud_frames) - 1
        start, loud_before = len(self.messages), self.loud_frames[pc_index]
        self.mic.play(speech + bytes(int(RATE * 1.5) * 2))
        stopped = await self.wait_for(
            lambda: (
                "bot-stopped-speaking" in self.types()[start:]
                and self.loud_frames[pc_index] - loud_before >= 25
            )
        )
        # The reply plays in real time, after its events: let it end, so that the next turn
        # counts only its own reply.
        async with asyncio.timeout(30):
            while time.monotonic() - self.last_loud < 0.6:
                await asyncio.sleep(0.05)
        heard = [
            UserTranscriptionMessage.model_validate(m).data.text
            for m in self.messages[start:]
            if m.get("type") == "user-transcription"
        ]
        return {
            "transcripts": heard,
            "reply_done": stopped,
            "loud_frames": self.loud_frames[pc_index] - loud_before,
            "types": self.types()[start:],
            "connection": self.pc.connectionState,
            "channel": self.channel.readyState,
        }


async def main(url: str, token: str, speech: bytes) -> dict:
    call = Call(url, token)
    result: dict = {}
    call.new_pc()
    first = await call.negotiate()
    result["pc_ids"] = [first["pc_id"]]
    await call.wait_open()
    ready = Message(
        type="client-ready",
        id="ready-1",
        data=ClientReadyData(
            version="2.2.0", about=AboutClientData(library="pipecat-webrtc-peer")
        ).model_dump(),
    )
    call.channel.send(ready.model_dump_json())
    assert await call.wait_for(lambda: "bot-ready" in call.types(), 20), call.types()
    bot_ready = BotReady.model_validate(next(m for m in call.messages if m["type"] == "bot-ready"))
    result["bot_ready"] = {"id": bot_ready.id, "version": bot_ready.data.version}

    call.channel.send("this is not json")  # malformed: an RTVI error, and the call goes on
    assert await call.wait_for(lambda: "error" in call.types(), 20), call.types()
    error = Error.model_validate(next(m for m in call.messages if m["type"] == "error"))
    result["malformed_error"] = {"error": error.data.error, "fatal": error.data.fatal}

    result["turns"] = [await call.turn(speech)]

    again = await call.negotiate(restart=False, trickle=False)  # same pc, same pc_id
    result["pc_ids"].append(again["pc_id"])
    result["turns"].append(await call.turn(speech))

    old_pc = call.pc
    call.new_pc()  # restart_pc: a new peer connection, offered under the old pc_id
    restarted = await call.negotiate(restart=True)
    await old_pc.close()
    result["pc_ids"].append(restarted["pc_id"])
    await call.wait_open()
    result["turns"].append(await call.turn(speech))

    result["peak_rms"] = call.peak_rms
    result["all_types"] = call.types()
    bye = Message(type="disconnect-bot", id="bye-1")
    call.channel.send(bye.model_dump_json())  # the session ends: peerLeft, then it closes
    result["peer_left"] = await call.wait_for(
        lambda: any(m.get("type") == SIGNALLING_TYPE for m in call.messages), 30
    )
    for t in call.tasks:
        t.cancel()
    await call.pc.close()
    return result


async def echo_main(url: str, token: str, speech: bytes) -> dict:
    """The far end is a Pipecat echo bot behind the session's relay: it answers `client-ready`
    itself and speaks back what it hears, also after a renegotiation of our connection."""
    call = Call(url, token)
    call.new_pc()
    first = await call.negotiate()
    await call.wait_open()
    ready = Message(
        type="client-ready",
        id="ready-1",
        data=ClientReadyData(
            version="2.2.0", about=AboutClientData(library="pipecat-webrtc-peer")
        ).model_dump(),
    )
    call.channel.send(ready.model_dump_json())
    assert await call.wait_for(lambda: "bot-ready" in call.types(), 30), call.types()
    bot_ready = BotReady.model_validate(next(m for m in call.messages if m["type"] == "bot-ready"))
    result: dict = {
        "pc_ids": [first["pc_id"]],
        "bot_about": dict(bot_ready.data.about or {}),
        "echoes": [],
    }
    for renegotiate in (False, True):
        if renegotiate:
            result["pc_ids"].append((await call.negotiate(trickle=False))["pc_id"])
        before = call.loud_frames[-1]
        call.mic.play(speech)
        await call.wait_for(lambda b=before: call.loud_frames[-1] - b >= 25, TURN_TIMEOUT_S)
        result["echoes"].append(call.loud_frames[-1] - before)
    result["peak_rms"] = call.peak_rms
    for t in call.tasks:
        t.cancel()
    await call.pc.close()  # hanging up: the session ends, and with it the bot's call
    return result


if __name__ == "__main__":
    with open(sys.argv[3], "rb") as f:
        pcm = f.read()
    run = echo_main if "--echo" in sys.argv else main
    out = asyncio.run(run(sys.argv[1], sys.argv[2], pcm))
    print("RESULT " + json.dumps(out))
