"""A session worker's `MediaServer` without Ray: a real websockets client calls a real
`SessionRuntime` (pocketsphinx, silero, espeak-ng, the echo agent) through the server and the
relay, as a client reaching the session's node directly would."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from actors.media import LocalPort, MediaServer, RelayLimits, parse_port_range
from backend.auth import check_media_token
from pipelines.session import SessionRuntime
from pipelines.stt_tts import PipelineSettings
from providers.agents import build_agent
from providers.espeak.tts import EspeakTTS
from providers.pocketsphinx.stt import PocketsphinxSTT
from providers.vad.silero import SileroVAD

TOKEN = "media-token-of-s-1"


@pytest.fixture(scope="module")
def stt() -> PocketsphinxSTT:
    return PocketsphinxSTT()


@pytest.fixture
async def server() -> AsyncIterator[MediaServer]:
    media = MediaServer(host="127.0.0.1", advertise_host="127.0.0.1")
    await media.start()
    yield media
    await media.aclose()


@pytest.fixture
async def rt(stt: PocketsphinxSTT) -> AsyncIterator[SessionRuntime]:
    runtime = SessionRuntime(
        session_id="s-1",
        user_id="u-1",
        input_sample_rate_hz=16000,
        settings=PipelineSettings(output_sample_rate_hz=16000),
        vad=SileroVAD(),
        stt=stt,
        tts=EspeakTTS(),
        agent=build_agent(spec={"type": "echo"}),
    )
    yield runtime
    await runtime.aclose()


def attach(server: MediaServer, rt: SessionRuntime, record: dict[str, Any], **limits: Any) -> str:
    """Attached as a worker would: the token checked against the session's current record."""

    async def on_stall(reason: str) -> None:
        await rt.aclose(reason)

    return server.attach(
        rt.session_id,
        LocalPort(lambda: rt),
        check_token=lambda token: check_media_token(record, token, "websocket"),
        codec=None,
        limits=RelayLimits(**limits),
        on_stall=on_stall,
    )


def media(token: str = TOKEN, expires_at: float | None = None) -> dict[str, Any]:
    return {"media": {"token": token, "token_expires_at": expires_at}}


async def next_event(ws: ClientConnection, kind: str, timeout_s: float = 30) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            msg = await ws.recv()
            if isinstance(msg, str) and (event := json.loads(msg))["type"] == kind:
                return event


async def refused(url: str) -> tuple[int, dict[str, Any]]:
    """A refused connection: the error event, then the close code."""
    async with connect(url) as ws:
        event = json.loads(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, event


async def test_a_call_is_heard_and_answered(
    server: MediaServer, rt: SessionRuntime, hello_16k: bytes
) -> None:
    url = attach(server, rt, media())
    assert url == f"ws://127.0.0.1:{server.port}/v1/sessions/s-1/audio"
    async with connect(f"{url}?token={TOKEN}", max_size=None) as ws:
        # Bad frames are refused with an error event each, and the call goes on.
        await ws.send(bytes(1 << 20))  # over max_frame_bytes
        assert "frame too large" in (await next_event(ws, "error"))["message"]
        await ws.send("x" * 10_000)  # over the control-message limit
        assert "frame too large" in (await next_event(ws, "error"))["message"]
        await ws.send("not json")
        assert "control messages" in (await next_event(ws, "error"))["message"]
        await ws.send(json.dumps({"type": "ping"}))
        await next_event(ws, "pong")

        frames = [hello_16k[i : i + 640] for i in range(0, len(hello_16k), 640)]
        for frame in frames + [bytes(640)] * 50:  # the speech, then 1 s of silence
            await ws.send(frame)
        events: list[dict[str, Any]] = []
        audio = bytearray()
        async with asyncio.timeout(60):
            while not any(e["type"] == "metrics" for e in events):
                msg = await ws.recv()
                if isinstance(msg, bytes):
                    audio.extend(msg)
                else:
                    events.append(json.loads(msg))
        transcripts = [e["text"] for e in events if e["type"] == "transcript"]
        replies = [e["text"] for e in events if e["type"] == "agent_reply"]
        assert transcripts and "hello" in transcripts[0], events
        assert replies and replies[0].startswith("You said: hello"), events
        assert len(audio) / 2 / 16000 > 0.3  # the spoken reply, as binary PCM16 frames

        # The session ends: its own `closed` event, then the websocket closes normally.
        await rt.aclose("closed by the test")
        assert (await next_event(ws, "closed"))["reason"] == "closed by the test"
        with pytest.raises(websockets.ConnectionClosedOK):
            while True:
                await ws.recv()


async def test_wrong_missing_and_expired_tokens_are_refused(
    server: MediaServer, rt: SessionRuntime
) -> None:
    record = media()
    url = attach(server, rt, record)
    for query in (f"?token=forged-{TOKEN}", "?token=", ""):
        code, event = await refused(url + query)
        assert code == 1008 and event["type"] == "error", event
        assert event["code"] == "authentication_failed"
    record.update(media(TOKEN, expires_at=time.time() - 1))
    code, event = await refused(f"{url}?token={TOKEN}")
    assert code == 1008 and "expired" in event["message"]
    # Renewed (the record is the session's current one): the new token opens the audio.
    record.update(media("renewed-token", expires_at=time.time() + 3600))
    async with connect(f"{url}?token=renewed-token") as ws:
        await ws.send(json.dumps({"type": "ping"}))
        await next_event(ws, "pong")


async def test_unknown_and_detached_sessions_are_refused(
    server: MediaServer, rt: SessionRuntime
) -> None:
    url = attach(server, rt, media())
    code, event = await refused(url.replace("/s-1/", "/s-nobody/") + f"?token={TOKEN}")
    assert code == 1011 and event["code"] == "session_not_found", event
    with pytest.raises(websockets.InvalidStatus) as other_path:
        async with connect(f"ws://127.0.0.1:{server.port}/v1/health"):
            pass
    assert other_path.value.response.status_code == 404
    server.detach("s-1")
    code, event = await refused(f"{url}?token={TOKEN}")
    assert code == 1011 and event["code"] == "session_not_found", event


async def test_detach_closes_open_connections_with_a_closed_event(
    server: MediaServer, rt: SessionRuntime
) -> None:
    url = f"{attach(server, rt, media())}?token={TOKEN}"
    # Two connections to one session are both served, as on the ingress route.
    async with connect(url) as first, connect(url) as second:
        for ws in (first, second):
            await ws.send(json.dumps({"type": "ping"}))
            await next_event(ws, "pong")
        server.detach("s-1", "moved to another worker")
        for ws in (first, second):
            assert (await next_event(ws, "closed"))["reason"] == "moved to another worker"
            with pytest.raises(websockets.ConnectionClosedOK):
                await ws.recv()
    assert rt.state.value != "closed"  # detaching ends the connections, not the session


async def test_a_stalled_client_has_its_session_closed_with_the_reason(
    server: MediaServer, rt: SessionRuntime
) -> None:
    url = attach(server, rt, media(), stall_timeout_s=0.5)
    async with connect(f"{url}?token={TOKEN}") as ws:
        event = await next_event(ws, "closed")
        assert "client stalled" in event["reason"]
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert rt.state.value == "closed"


async def test_the_port_is_taken_from_the_range_past_ports_in_use() -> None:
    assert parse_port_range("20000-20999") == (20000, 20999)
    assert parse_port_range("20000") == (20000, 20000)
    assert parse_port_range(0) is None and parse_port_range("") is None
    with pytest.raises(ValueError):
        parse_port_range("20999-20000")
    busy, free = adjacent_ports()
    with socket.socket() as holder:  # someone else listens on the first port of the range
        holder.bind(("127.0.0.1", busy))
        holder.listen()
        media = MediaServer(host="127.0.0.1", ports=(busy, free), advertise_host="10.1.2.3")
        await media.start()
        try:
            assert media.port == free and media.url == f"ws://10.1.2.3:{free}"
            with pytest.raises(OSError):
                await MediaServer(host="127.0.0.1", ports=(busy, busy)).start()
        finally:
            await media.aclose()


def adjacent_ports() -> tuple[int, int]:
    """Two consecutive ports free right now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            low = probe.getsockname()[1]
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", low))
                b.bind(("127.0.0.1", low + 1))
        except OSError:
            continue
        return low, low + 1
    raise RuntimeError("no two consecutive free ports")
