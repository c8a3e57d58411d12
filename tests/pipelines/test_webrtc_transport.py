"""The WebRTC transport alone, in-process and without Ray: a real aiortc client peer talks to a
`WebRtcTransport` bound to a real `SessionRuntime` (pocketsphinx, echo agent, espeak) over
loopback UDP — Opus both ways, events on the data channel."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from backend.errors import BackendError
from backend.webrtc_client import WebRtcCall
from pipelines.audio import rms
from pipelines.outbox import Outbox
from pipelines.session import SessionRuntime
from pipelines.stt_tts import PipelineSettings
from pipelines.transports.webrtc import OutboxTrack, WebRtcOptions, WebRtcTransport
from providers.agents import build_agent
from providers.espeak.tts import EspeakTTS
from providers.messages import AgentReply, AudioChunk
from providers.pocketsphinx.stt import PocketsphinxSTT
from providers.vad.silero import SileroVAD

LOOPBACK = ["127.0.0.1"]


def make_runtime(rate: int = 16000, out_rate: int = 24000) -> SessionRuntime:
    return SessionRuntime(
        session_id="rtc-1",
        user_id="u-1",
        input_sample_rate_hz=rate,
        settings=PipelineSettings(output_sample_rate_hz=out_rate),
        vad=SileroVAD(),
        stt=PocketsphinxSTT(),
        tts=EspeakTTS(),
        agent=build_agent(spec={"type": "echo"}),
    )


async def connect(
    rt: SessionRuntime, ended: list[str] | None = None
) -> tuple[WebRtcTransport, WebRtcCall]:
    async def on_closed(reason: str) -> None:
        if ended is not None:
            ended.append(reason)

    transport = WebRtcTransport(WebRtcOptions(host_addresses=LOOPBACK), on_closed=on_closed)
    await transport.start(rt)
    call = WebRtcCall({"media": {"url": "", "token": ""}}, host_addresses=LOOPBACK)
    answer = await transport.answer(await call.offer(), "offer")
    assert "opus" in answer["sdp"].lower() and "127.0.0.1" in answer["sdp"]
    await call.accept(answer)
    await call.wait_connected()
    return transport, call


async def test_a_voice_turn_over_webrtc(hello_16k: bytes) -> None:
    rt = make_runtime()
    ended: list[str] = []
    transport, call = await connect(rt, ended)
    try:
        result = await call.talk(hello_16k + bytes(32000), 16000, timeout_s=60)
    finally:
        await call.aclose()  # hangs up over the data channel
    assert any("hello" in t.lower() for t in result.transcripts), result.events
    assert result.replies and "hello" in result.replies[0].lower()
    assert "listening" in result.states and "speaking" in result.states
    reply = np.frombuffer(bytes(result.audio), dtype="<i2")
    loud = [reply[i : i + 960] for i in range(0, reply.size, 960) if rms(reply[i : i + 960]) > 300]
    assert len(loud) * 0.02 >= 0.3, "at least 0.3 s of reply speech came back over Opus"
    stats = await call.inbound_stats()
    assert stats["packets_received"] > 0 and stats["decoded_bytes"] > 0
    async with asyncio.timeout(10):
        while not ended:
            await asyncio.sleep(0.05)
    assert ended == ["client hung up"]
    await rt.aclose()
    await transport.aclose()


async def test_peer_closing_the_connection_ends_the_transport() -> None:
    rt = make_runtime()
    ended: list[str] = []
    transport, call = await connect(rt, ended)
    await call.aclose(hangup=False)  # no goodbye: the connection itself closes
    async with asyncio.timeout(40):  # consent freshness expiry, at worst (~30 s)
        while not ended:
            await asyncio.sleep(0.1)
    assert ended[0].startswith("peer connection")
    await rt.aclose()
    await transport.aclose()


async def test_events_reach_the_client_and_bad_messages_get_an_error() -> None:
    rt = make_runtime()
    transport, call = await connect(rt)
    try:
        call.channel.send("not json")
        call.channel.send(json.dumps({"type": "ping"}))
        async with asyncio.timeout(10):
            while not any(e["type"] == "pong" for e in call.events):
                await asyncio.sleep(0.05)
        kinds = [e["type"] for e in call.events]
        assert kinds[0] == "state" and "listening" in [e.get("state") for e in call.events]
        (error,) = [e for e in call.events if e["type"] == "error"]
        assert error["code"] == "invalid_format"
    finally:
        await call.aclose()
        await rt.aclose()
        await transport.aclose()


@pytest.mark.parametrize(
    ("sdp", "kind", "field"),
    [
        ("", "offer", "sdp"),
        ("hello", "offer", "sdp"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "offer", "sdp"),
        ("v=0\r\n", "answer", "type"),
    ],
)
async def test_bad_offers_are_refused_naming_the_field(sdp: str, kind: str, field: str) -> None:
    rt = make_runtime()
    transport = WebRtcTransport(WebRtcOptions(host_addresses=LOOPBACK))
    await transport.start(rt)
    with pytest.raises(BackendError) as err:
        await transport.answer(sdp, kind)
    assert err.value.code.value == "invalid_format" and err.value.field == field
    await transport.aclose()
    await rt.aclose()


async def test_outbound_track_takes_little_and_drops_it_on_barge_in() -> None:
    outbox = Outbox()
    for _ in range(100):  # 2 s of a 440 Hz tone, in 20 ms chunks at 16 kHz
        t = np.arange(320) / 16000
        tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()
        outbox.put_audio(AudioChunk(tone, 16000))
    outbox.put_event(AgentReply(text="x"))
    track = OutboxTrack(outbox, 16000)
    frames: list[Any] = [await track.recv() for _ in range(5)]
    assert all(rms(f.to_ndarray().reshape(-1)) > 1000 for f in frames[1:])
    assert track.buffered_s <= 0.1, "the track buffers only what is due next"
    assert outbox.take_audio(0) == [] and len(outbox._items) > 80  # the rest waits in the outbox
    outbox.clear_audio()  # barge-in: the pipeline drops the outbox's audio ...
    track.clear()  # ... and the transport the track's own, on the `interrupted` event
    after = [await track.recv() for _ in range(3)]
    assert all(rms(f.to_ndarray().reshape(-1)) == 0 for f in after)
    assert outbox._items[0] == AgentReply(text="x"), "events are left for the events pump"
    track.stop()
