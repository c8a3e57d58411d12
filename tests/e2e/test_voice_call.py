"""A real voice call over HTTP + the audio websocket: espeak speech in, pocketsphinx, the echo
agent, espeak reply out — through Ray Serve, the session actor and its stage actors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soxr
import websockets

from backend.http_client import HttpClient
from pipelines.audio import rms

pytestmark = pytest.mark.ray


def in_order(seen: list[str], wanted: list[str]) -> bool:
    it = iter(seen)
    return all(any(s == w for s in it) for w in wanted)


async def test_hello_world_call_end_to_end(base_url: str, hello_16k: bytes) -> None:
    async with HttpClient(base_url) as client:
        session = await client.create_session(
            user_id="caller-1", sample_rate_hz=16000, output_sample_rate_hz=24000
        )
        assert session["state"] == "idle"
        assert session["media"]["url"].endswith(f"/v1/sessions/{session['session_id']}/audio")
        result = await client.talk(session, hello_16k, 16000, realtime=True)
        await client.close_session(session["session_id"])

    assert any("hello" in t.lower() for t in result.transcripts), result.events
    assert result.replies and "hello" in result.replies[0].lower()
    reply = np.frombuffer(bytes(result.audio), dtype="<i2")
    assert reply.size / 24000 >= 0.3, "at least 0.3 s of reply audio at the declared rate"
    assert rms(reply) > 300, "reply audio must not be silence"
    assert in_order(result.states, ["idle", "listening", "processing", "speaking", "listening"])
    (metrics,) = result.metrics
    assert metrics["stt_final_ms"] is not None and metrics["response_ms"] > 0
    assert isinstance(metrics["met_latency_target"], bool)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
async def test_client_declared_rates_are_resampled(
    base_url: str, hello_16k: bytes, rate: int
) -> None:
    pcm = soxr.resample(np.frombuffer(hello_16k, dtype="<i2"), 16000, rate).astype("<i2").tobytes()
    async with HttpClient(base_url) as client:
        session = await client.create_session(
            user_id="caller-rates", sample_rate_hz=rate, output_sample_rate_hz=rate
        )
        result = await client.talk(session, pcm, rate, realtime=False)
        await client.close_session(session["session_id"])
    assert any("hello" in t.lower() for t in result.transcripts), result.events
    reply = np.frombuffer(bytes(result.audio), dtype="<i2")
    assert reply.size / rate >= 0.3
    # Pitch sanity: espeak's voice energy sits well below 4 kHz whatever the output rate.
    spectrum = np.abs(np.fft.rfft(reply.astype(float)))
    assert np.argmax(spectrum) * rate / reply.size < 4000


async def test_malformed_frames_get_error_events_and_the_session_keeps_working(
    base_url: str, hello_16k: bytes
) -> None:
    async with HttpClient(base_url) as client:
        session = await client.create_session(user_id="caller-bad-frames")
        url = f"{session['media']['url']}?token={session['media']['token']}"
        errors = []
        async with websockets.connect(url) as ws:
            for bad in (b"\x01\x02\x03", b"", bytes(16000 * 2 + 2)):
                await ws.send(bad)
            await ws.send("not json")
            while len(errors) < 4:
                msg = await ws.recv()
                if isinstance(msg, str) and json.loads(msg)["type"] == "error":
                    errors.append(json.loads(msg))
        assert [e["code"] for e in errors] == ["invalid_format"] * 4
        messages = " ".join(e["message"] for e in errors)
        assert "odd byte count" in messages and "empty" in messages and "exceeds" in messages
        result = await client.talk(session, hello_16k, 16000, realtime=False)
        await client.close_session(session["session_id"])
    assert any("hello" in t.lower() for t in result.transcripts)


async def test_websocket_refuses_a_wrong_token_and_unknown_session(base_url: str) -> None:
    async with HttpClient(base_url) as client:
        session = await client.create_session(user_id="caller-token")
        url = session["media"]["url"]
        async with websockets.connect(f"{url}?token=wrong") as ws:
            event = json.loads(await ws.recv())
            assert event["code"] == "authentication_failed"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 1008
        bogus = url.replace(session["session_id"], "nope")
        async with websockets.connect(f"{bogus}?token=x") as ws:
            assert json.loads(await ws.recv())["code"] == "session_not_found"
        await client.close_session(session["session_id"])


async def test_s2s_call_end_to_end(base_url: str, hello_16k: bytes) -> None:
    """`pipeline_type="s2s"`: one speech-to-speech stage actor (the embedded local model) does
    the turn; the session relays its events and paces its audio."""
    async with HttpClient(base_url) as client:
        session = await client.create_session(
            user_id="caller-s2s", pipeline_type="s2s", output_sample_rate_hz=24000
        )
        assert set(session["stages"]) == {"s2s"}
        assert session["stages"]["s2s"]["node_id"] == session["node_id"]
        result = await client.talk(session, hello_16k, 16000, realtime=True)
        await client.close_session(session["session_id"])
    assert result.transcripts == ["hello world"], result.events
    assert result.replies == ["You said: hello world"]
    reply = np.frombuffer(bytes(result.audio), dtype="<i2")
    assert reply.size / 24000 >= 0.3 and rms(reply) > 300
    assert in_order(result.states, ["idle", "listening", "processing", "speaking", "listening"])
