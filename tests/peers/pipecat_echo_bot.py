"""A real Pipecat bot under Pipecat's own development runner, for the `pipecat_server_url` relay:
websocket transport, `ProtobufFrameSerializer`, RTVI on (it answers `client-ready` itself), and
a pipeline that speaks back what it hears (an echo: no model weights can be fetched here).

    python pipecat_echo_bot.py -t websocket --host localhost --port PORT
    python pipecat_echo_bot.py -t webrtc --host localhost --port PORT   # SmallWebRTC

Under `-t daily` it cannot join a room (Daily's servers are out of reach here): it writes the
`body` the runner handed it (room URL and token) to $PIPECAT_BOT_RECORD and returns.
"""

from __future__ import annotations

import json
import os

from pipecat.frames.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.types import (
    RunnerArguments,
    SmallWebRTCRunnerArguments,
    WebSocketRunnerArguments,
)
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.transports.base_transport import BaseTransport, TransportParams
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)

RATE = 16000

if os.environ.get("PIPECAT_BOT_ICE_LOOPBACK"):  # a test: no media leaves the host
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]


class Echo(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            frame = OutputAudioRawFrame(
                audio=frame.audio, sample_rate=frame.sample_rate, num_channels=frame.num_channels
            )
        await self.push_frame(frame, direction)


def _transport(runner_args: RunnerArguments) -> BaseTransport | None:
    if isinstance(runner_args, WebSocketRunnerArguments):
        return FastAPIWebsocketTransport(
            websocket=runner_args.websocket,
            params=FastAPIWebsocketParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                add_wav_header=False,
                serializer=ProtobufFrameSerializer(),
            ),
        )
    if isinstance(runner_args, SmallWebRTCRunnerArguments):
        if record := os.environ.get("PIPECAT_BOT_RECORD"):  # what the runner handed it
            with open(record, "a") as f:
                f.write(json.dumps(runner_args.body) + "\n")
        return SmallWebRTCTransport(
            webrtc_connection=runner_args.webrtc_connection,
            params=TransportParams(audio_in_enabled=True, audio_out_enabled=True),
        )
    return None


async def bot(runner_args: RunnerArguments) -> None:
    transport = _transport(runner_args)
    if transport is None:
        with open(os.environ["PIPECAT_BOT_RECORD"], "a") as f:
            f.write(json.dumps(runner_args.body) + "\n")
        return
    task = PipelineTask(
        Pipeline([transport.input(), Echo(), transport.output()]),
        params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
        idle_timeout_secs=None,
    )

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client) -> None:
        await task.cancel()

    await PipelineRunner(handle_sigint=False).run(task)


if __name__ == "__main__":
    from pipecat.runner.run import main

    main()
