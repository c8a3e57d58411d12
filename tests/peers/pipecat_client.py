"""A Pipecat client app, built only from the real `pipecat-ai` package, talking to a session.

Runs in .venv-peers/pipecat (its pins conflict with ours), started by the tests as a
subprocess. It is the shape of a Pipecat client pipeline: `WebsocketClientTransport` with
`ProtobufFrameSerializer` → a recorder → the transport's output. It says `client-ready` (RTVI),
streams the speech in PCM file `argv[2]` (16 kHz, sent as WAV-wrapped audio frames as Pipecat's
client transport does) and prints what came back, by Pipecat frame type, as one JSON line.

    python pipecat_client.py WS_URL SPEECH.pcm [--barge-in] [--malformed] [--echo]

`--echo`: the far end is an echo bot (the `pipecat_server_url` relay): done once the speech
came back, instead of after a spoken reply and its metrics.
"""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np
from peer_wait import wait_for_change
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputTransportMessageFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputTransportMessageUrgentFrame,
    TextFrame,
    TranscriptionFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.transports.websocket.client import WebsocketClientParams, WebsocketClientTransport

RATE = 16000
CHUNK = RATE // 50  # 20 ms
TIMEOUT_S = 90.0


class Recorder(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.bot_audio = bytearray()
        self.bot_audio_rates: set[int] = set()
        self.transcriptions: list[str] = []
        self.texts: list[str] = []
        self.rtvi: list[dict] = []
        self.interruptions = 0
        self.changed = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.bot_audio += frame.audio
            self.bot_audio_rates.add(frame.sample_rate)
        elif isinstance(frame, TranscriptionFrame):
            self.transcriptions.append(frame.text)
        elif isinstance(frame, TextFrame):
            self.texts.append(frame.text)
        elif isinstance(frame, InputTransportMessageFrame):
            self.rtvi.append(frame.message)
        elif isinstance(frame, InterruptionFrame):
            self.interruptions += 1
        self.changed.set()
        await self.push_frame(frame, direction)

    def types(self) -> list[str]:
        return [m.get("type", "") for m in self.rtvi]

    async def wait_for(self, predicate, timeout_s: float) -> bool:
        return await wait_for_change(self.changed, predicate, timeout_s)


def audio_frames(pcm: bytes) -> list[Frame]:
    return [
        OutputAudioRawFrame(audio=pcm[i : i + 2 * CHUNK], sample_rate=RATE, num_channels=1)
        for i in range(0, len(pcm), 2 * CHUNK)
    ]


def silence(seconds: float) -> bytes:
    return bytes(int(RATE * seconds) * 2)


async def main(url: str, speech: bytes, barge_in: bool, malformed: bool, echo: bool) -> dict:
    transport = WebsocketClientTransport(
        uri=url,
        params=WebsocketClientParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_in_sample_rate=RATE,
            audio_out_sample_rate=RATE,
            serializer=ProtobufFrameSerializer(),
        ),
    )
    rec = Recorder()
    task = PipelineTask(
        Pipeline([transport.input(), rec, transport.output()]),
        params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
        enable_rtvi=False,  # we are the client; the session is the bot
        idle_timeout_secs=None,
    )
    result: dict = {}

    async def conversation() -> None:
        await rec.wait_for(lambda: transport_connected(), 20)
        ready = {"label": "rtvi-ai", "type": "client-ready", "id": "ready-1"}
        ready["data"] = {"version": "2.2.0", "about": {"library": "pipecat-peer"}}
        await task.queue_frame(OutputTransportMessageUrgentFrame(message=ready))
        result["bot_ready"] = await rec.wait_for(lambda: "bot-ready" in rec.types(), 20)
        if malformed:
            await transport._session.send(b"\xff\x00 definitely not protobuf")
            await rec.wait_for(lambda: "error" in rec.types(), 20)
        await task.queue_frames(audio_frames(speech + silence(1.5)))
        if barge_in:
            # Talk over the reply once it is playing: the session must interrupt itself.
            await rec.wait_for(lambda: "bot-started-speaking" in rec.types(), TIMEOUT_S)
            await task.queue_frames(audio_frames(speech + speech + silence(1.5)))
            await rec.wait_for(lambda: rec.interruptions > 0, TIMEOUT_S)
        if echo:
            await rec.wait_for(lambda: len(rec.bot_audio) >= 2 * len(speech), TIMEOUT_S)
        else:
            await rec.wait_for(
                lambda: "bot-stopped-speaking" in rec.types() and "metrics" in rec.types(),
                TIMEOUT_S,
            )
        await task.queue_frame(EndFrame())

    def transport_connected() -> bool:
        return transport._session.is_connected

    runner = PipelineRunner(handle_sigint=False)
    convo = asyncio.create_task(conversation())
    await asyncio.wait_for(asyncio.gather(runner.run(task), convo), TIMEOUT_S + 60)
    samples = np.frombuffer(bytes(rec.bot_audio), dtype="<i2").astype(np.float64)
    result.update(
        transcriptions=rec.transcriptions,
        texts=rec.texts,
        rtvi_types=rec.types(),
        rtvi=rec.rtvi,
        interruptions=rec.interruptions,
        bot_audio_s=samples.size / RATE,
        bot_audio_rates=sorted(rec.bot_audio_rates),
        bot_audio_rms=float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0,
    )
    return result


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    with open(args[1], "rb") as f:
        pcm = f.read()
    flags = {a.removeprefix("--").replace("-", "_") for a in sys.argv[1:] if a.startswith("--")}
    out = asyncio.run(
        main(args[0], pcm, "barge_in" in flags, "malformed" in flags, "echo" in flags)
    )
    print("RESULT " + json.dumps(out))
