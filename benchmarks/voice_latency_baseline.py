"""The in-process baseline of `benchmarks.voice_latency`: one session's turns with every
stage in this process (no Ray, no transport).

Why: its difference from the 1-call level over the backend is the runtime's overhead, so it
must measure the same v2v and waterfall with the same phrases and endpointing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from backend.http_client import send_realtime
from benchmarks.voice_latency_calls import RATE, phrase


async def local_turns(pcm: dict[str, bytes], turns: int, endpoint_s: float) -> list[dict[str, Any]]:
    """One session's turns with every stage in this process: v2v and the same waterfall."""
    from pipelines.endpointing import EndpointingConfig
    from pipelines.session import SessionRuntime
    from pipelines.stt_tts import PipelineSettings
    from providers.agents import build_agent
    from providers.espeak.tts import EspeakTTS
    from providers.messages import AudioChunk, Metrics, Transcript
    from providers.pocketsphinx.stt import PocketsphinxSTT
    from providers.vad.silero import SileroVAD

    rt = SessionRuntime(
        session_id="local",
        user_id="bench",
        input_sample_rate_hz=RATE,
        settings=PipelineSettings(endpointing=EndpointingConfig(min_silence_s=endpoint_s)),
        vad=SileroVAD(),
        stt=PocketsphinxSTT(),
        tts=EspeakTTS(),
        agent=build_agent(spec={"type": "echo"}),
    )
    out = []
    for i in range(turns):
        speech = pcm[phrase(i)]
        first_audio: float | None = None
        metrics: dict[str, Any] = {}
        heard: str | None = None

        async def push(frame: bytes) -> None:
            rt.push_audio([frame])

        feeder = asyncio.create_task(
            send_realtime(
                push, speech + bytes(RATE * 2 * 2), RATE, mark_at_s=len(speech) / 2 / RATE
            )
        )
        while not metrics and heard != "":
            polled = await rt.outbox.poll(timeout_s=30)
            for item in polled["items"]:
                if isinstance(item, AudioChunk):
                    first_audio = first_audio or time.monotonic()
                elif isinstance(item, Transcript) and item.final:
                    heard = item.text
                elif isinstance(item, Metrics):
                    metrics = item.to_wire()
        speech_end = await feeder
        v2v = (first_audio - speech_end) * 1000 if first_audio and speech_end else None
        out.append(
            {
                "client_v2v_ms": v2v,
                "heard": heard,
                "spoken": phrase(i),
                **{k: v for k, v in metrics.items() if k.endswith("_ms")},
            }
        )
    await rt.aclose()
    return out
