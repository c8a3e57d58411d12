"""The baseline of `benchmarks.talkers`: the same call with every stage in one process (no Ray,
no Serve, no socket into the session), so the runtime's overhead is the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from benchmarks.talkers_call import RATE, Call, own_cpu_s, phrases_pcm, report, wait_go


async def run_baseline(spec: dict[str, Any]) -> None:
    from actors.session_actor import settings_from
    from backend.iface import Config
    from pipelines.session import SessionRuntime
    from providers.agents import build_agent
    from providers.messages import AudioChunk
    from providers.registry import STT_PROVIDERS, TTS_PROVIDERS, VAD_PROVIDERS

    config = Config(**spec["config"])
    options = config.stage_provider_config["cartesia"]
    stt = STT_PROVIDERS.create("cartesia", **options)
    tts = TTS_PROVIDERS.create("cartesia", **options)
    await stt.connect()
    await tts.connect()
    rt = SessionRuntime(
        session_id="baseline",
        user_id="bench",
        input_sample_rate_hz=RATE,
        settings=settings_from(config, RATE),
        vad=VAD_PROVIDERS.create(config.vad_provider),
        stt=stt,
        tts=tts,
        agent=build_agent(spec={"type": "echo"}),
    )
    pcm = await phrases_pcm()
    call = Call(0, pcm, spec["turns"], spec["interval_s"], spec["deadline_s"])

    async def push(frame: bytes) -> None:
        rt.push_audio([frame])

    async def receive() -> None:
        while True:
            polled = await rt.outbox.poll(timeout_s=1.0)
            now = time.monotonic()
            for item in polled["items"]:
                if isinstance(item, AudioChunk):
                    call.on_audio(now)
                else:
                    call.on_event(item.to_wire())

    t0 = await wait_go()
    cpu0 = own_cpu_s()
    receiver = asyncio.create_task(receive())
    await call.talk(push, t0)
    receiver.cancel()
    cpu = own_cpu_s() - cpu0
    with contextlib.suppress(Exception):
        await rt.aclose()
    report(spec, [call], cpu)
