"""`SessionRuntime` in-process, without Ray, with the real local providers: the turn loop's
behaviour (states, events, errors, timings) is checked here quickly; tests/e2e checks it on Ray."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from pipelines.audio import rms
from pipelines.session import SessionRuntime
from pipelines.stt_tts import PipelineSettings
from providers.agents import build_agent
from providers.espeak.tts import EspeakTTS
from providers.messages import AudioChunk, Message
from providers.pocketsphinx.stt import PocketsphinxSTT
from providers.retry import RetryPolicy
from providers.vad.silero import SileroVAD
from providers.vad.webrtc import WebrtcVAD


@pytest.fixture(scope="module")
def stt() -> PocketsphinxSTT:
    return PocketsphinxSTT()


def runtime(
    stt: PocketsphinxSTT, agent: Any, *, vad: Any = None, **settings: Any
) -> SessionRuntime:
    return SessionRuntime(
        session_id="s-1",
        user_id="u-1",
        input_sample_rate_hz=16000,
        settings=PipelineSettings(**settings),
        vad=vad or SileroVAD(),
        stt=stt,
        tts=EspeakTTS(),
        agent=agent,
    )


async def turn(rt: SessionRuntime, pcm: bytes, timeout_s: float = 30) -> tuple[list[dict], bytes]:
    """Feed speech + 1 s of silence in 20 ms frames; collect until the turn ends."""
    frames = [pcm[i : i + 640] for i in range(0, len(pcm), 640)] + [bytes(640)] * 50
    rt.push_audio(frames)
    events: list[dict[str, Any]] = []
    audio = bytearray()
    async with asyncio.timeout(timeout_s):
        while True:
            out = await rt.outbox.poll(timeout_s=timeout_s)
            for item in out["items"]:
                if isinstance(item, AudioChunk):
                    audio.extend(item.pcm16)
                    continue
                payload = item.to_wire()
                events.append(payload)
                if payload["type"] in ("metrics", "error") or (
                    payload["type"] == "transcript" and not payload["text"]
                ):
                    return events, bytes(audio)


def of(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


@pytest.mark.parametrize("vad", [SileroVAD, WebrtcVAD])
async def test_a_turn_with_each_vad(stt: PocketsphinxSTT, hello_16k: bytes, vad: Any) -> None:
    rt = runtime(stt, build_agent(spec={"type": "echo"}), vad=vad(), output_sample_rate_hz=16000)
    events, audio = await turn(rt, hello_16k)
    assert "hello" in of(events, "transcript")[0]["text"]
    assert of(events, "agent_reply")[0]["text"].startswith("You said: hello")
    assert [e["state"] for e in of(events, "state")] == [
        "idle",
        "listening",
        "processing",
        "speaking",
        "listening",
    ]
    assert len(audio) / 2 / 16000 > 0.3 and rms(np.frombuffer(audio, "<i2")) > 300
    (m,) = of(events, "metrics")
    assert m["turn_id"] == 1 and m["response_ms"] > 0 and m["stt_final_ms"] >= 0
    assert rt.ctx.history[0] == {"role": "user", "content": of(events, "transcript")[0]["text"]}
    await rt.aclose()


async def test_agent_error_then_recovery(stt: PocketsphinxSTT, hello_16k: bytes) -> None:
    calls = []

    def agent(text: str) -> str:
        calls.append(text)
        if len(calls) == 1:
            raise ValueError("kaput")
        return "fine now"

    rt = runtime(stt, build_agent(callback=agent))
    events, _ = await turn(rt, hello_16k)
    (err,) = of(events, "error")
    assert err["code"] == "agent_error" and "kaput" in err["message"]
    events, audio = await turn(rt, hello_16k)
    assert of(events, "agent_reply")[0]["text"] == "fine now" and audio
    await rt.aclose()


async def test_agent_timeout(stt: PocketsphinxSTT, hello_16k: bytes) -> None:
    async def slow(text: str) -> str:
        await asyncio.sleep(3)
        return "late"

    rt = runtime(stt, build_agent(callback=slow), retry=RetryPolicy(timeout_s=0.5))
    events, audio = await turn(rt, hello_16k)
    (err,) = of(events, "error")
    assert err["code"] == "timeout" and not audio
    assert rt.state.value == "listening"
    await rt.aclose()


async def test_silence_and_noise_make_no_turn(stt: PocketsphinxSTT) -> None:
    rt = runtime(stt, build_agent(spec={"type": "echo"}))
    noise = (np.random.default_rng(1).normal(0, 30, 16000 * 2)).astype("<i2").tobytes()
    rt.push_audio([noise[i : i + 640] for i in range(0, len(noise), 640)])
    out = await rt.outbox.poll(timeout_s=1.0)
    kinds = [m.type for m in out["items"] if isinstance(m, Message)]
    assert "speech_started" not in kinds and "agent_reply" not in kinds
    await rt.aclose()


async def test_closed_session_refuses_audio(stt: PocketsphinxSTT) -> None:
    rt = runtime(stt, build_agent(spec={"type": "echo"}))
    await rt.aclose("bye")
    with pytest.raises(Exception) as info:
        rt.push_audio([bytes(640)])
    assert getattr(info.value, "code", None).value == "session_not_active"
