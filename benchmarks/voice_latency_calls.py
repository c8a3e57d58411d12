"""The call driver of `benchmarks.voice_latency`: the phrases spoken and how one call goes
through the running backend (HTTP create, the `media.url` websocket, barge-in, /v1/capacity).

Why apart: these are the client's side of a call, the same for every level and for the
first-turn call; the level runner and the report only consume what they return.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import websockets

from backend.http_client import send_realtime

PHRASES = ["hello world", "what time is it", "open the door"]
# The first-turn call says one phrase every turn, so only the turn's place differs; not the
# workers' warm-up clip ("hello world"), which would flatter the first decode.
FIRST_TURN_PHRASE = "what time is it"
FIRST_TURN_TURNS = 5
RATE = 16000
STAGES = ["end_of_turn_delay_ms", "stt_final_ms", "agent_ms", "tts_first_audio_ms"]
LONG_PREFIX = (
    "Here is a long answer that takes several seconds to say out loud. It keeps going for a "
    "while so that you can interrupt it. You said: "
)
TURN_TIMEOUT_S = 60.0


async def phrases_pcm() -> dict[str, bytes]:
    from tests.conftest import speak

    return {p: await speak(p) for p in [*PHRASES, "stop please"]}


def phrase(i: int) -> str:
    return PHRASES[i % len(PHRASES)]


def speech_s(pcm: dict[str, bytes], turns: int) -> float:
    """Seconds of speech a session says in `turns` turns."""
    return sum(len(pcm[phrase(i)]) / 2 / RATE for i in range(turns))


async def create(http: httpx.AsyncClient, user_id: str) -> dict[str, Any]:
    """One `POST /v1/sessions`: the answer, its status and how long it took."""
    t0 = time.monotonic()
    resp = await http.post("/v1/sessions", json={"user_id": user_id})
    ms = (time.monotonic() - t0) * 1000
    try:
        body = resp.json()
    except ValueError:
        body = {"error": {"code": "?", "message": resp.text[:200]}}
    return {
        "status": resp.status_code,
        "ms": ms,
        "body": body,
        "retry_after": resp.headers.get("retry-after"),
    }


async def offer(http: httpx.AsyncClient, n: int) -> list[dict[str, Any]]:
    """`n` calls offered at once: every create sent together."""
    return list(await asyncio.gather(*(create(http, "bench") for _ in range(n))))


def is_speech_refusal(r: dict[str, Any]) -> bool:
    err = r["body"].get("error") or {}
    return (
        r["status"] == 503
        and err.get("code") == "session_limit_exceeded"
        and "speech capacity" in str(err.get("message", ""))
    )


async def talk(
    session: dict[str, Any], pcm: dict[str, bytes], phrases: list[str], delay_s: float
) -> list[dict[str, Any]]:
    """One admitted call says `phrases`, a turn each, over its `media.url` websocket."""
    await asyncio.sleep(delay_s)
    url = f"{session['media']['url']}?token={session['media']['token']}"
    async with websockets.connect(url, max_size=None) as ws:
        return [{**await ws_turn(ws, pcm[p]), "spoken": p} for p in phrases]


async def ws_turn(ws: Any, speech: bytes) -> dict[str, Any]:
    sent_speech_end: float | None = None
    first_audio: float | None = None
    metrics: dict[str, Any] = {}
    heard: str | None = None

    async def send() -> None:
        nonlocal sent_speech_end
        sent_speech_end = await send_realtime(
            ws.send, speech + bytes(RATE * 2 * 2), RATE, mark_at_s=len(speech) / 2 / RATE
        )

    async def receive() -> None:
        nonlocal first_audio, metrics, heard
        async for msg in ws:
            if isinstance(msg, bytes):
                first_audio = first_audio or time.monotonic()
                continue
            event = json.loads(msg)
            if event["type"] == "transcript" and event.get("final"):
                heard = event.get("text", "")
                if not heard:  # nothing recognised: the turn ends without a reply
                    return
            elif event["type"] == "metrics":
                metrics = event
                return
            elif event["type"] == "error":
                raise RuntimeError(event)

    sender = asyncio.create_task(send())
    await asyncio.wait_for(receive(), TURN_TIMEOUT_S)
    await sender
    v2v = (first_audio - sent_speech_end) * 1000 if first_audio and sent_speech_end else None
    return {
        "client_v2v_ms": v2v,
        "heard": heard,
        **{k: v for k, v in metrics.items() if k.endswith("_ms")},
    }


async def ws_barge_in(base: str, pcm: dict[str, bytes], onset_s: float) -> float:
    """ms from sending the frame that makes the interruption due to the last reply byte."""
    from backend.http_client import HttpClient

    async with HttpClient(base, timeout_s=120) as client:
        session = await client.create_session(
            user_id="bench-barge", agent={"type": "echo", "prefix": LONG_PREFIX}
        )
        url = f"{session['media']['url']}?token={session['media']['token']}"
        try:
            async with websockets.connect(url, max_size=None) as ws:
                return await _barge(ws, pcm, onset_s)
        finally:
            await client.close_session(session["session_id"])


async def _barge(ws: Any, pcm: dict[str, bytes], onset_s: float) -> float:
    last_audio = 0.0
    speaking = asyncio.Event()
    interrupted = asyncio.Event()
    due_at: float | None = None

    async def receive() -> None:
        nonlocal last_audio
        async for msg in ws:
            if isinstance(msg, bytes):
                last_audio = time.monotonic()
                speaking.set()
            elif json.loads(msg)["type"] == "interrupted":
                interrupted.set()
            elif interrupted.is_set() and json.loads(msg)["type"] == "transcript":
                return

    async def send(audio: bytes, mark_at_s: float | None = None) -> None:
        nonlocal due_at
        due_at = await send_realtime(ws.send, audio + bytes(RATE * 2), RATE, mark_at_s=mark_at_s)

    receiver = asyncio.create_task(receive())
    await send(pcm["hello world"])
    await asyncio.wait_for(speaking.wait(), 60)
    await asyncio.sleep(1.0)
    await send(pcm["stop please"], mark_at_s=onset_s + 0.5)  # Config.min_interruption_duration
    await asyncio.wait_for(receiver, 60)
    assert due_at is not None
    return (last_audio - due_at) * 1000


def speech_onset_s(pcm: bytes) -> float:
    """Where silero first hears speech in `pcm` (the server's VAD, run here)."""
    from providers.vad.silero import SileroVAD

    vad = SileroVAD()
    n = vad.frame_samples * 2
    for i in range(0, len(pcm) - n, n):
        if vad.speech_probability(pcm[i : i + n]) >= 0.5:
            return i / 2 / RATE
    return 0.0


async def capacity(http: httpx.AsyncClient) -> dict[str, Any]:
    return (await http.get("/v1/capacity")).json()


async def settle(http: httpx.AsyncClient, timeout_s: float = 300.0) -> dict[str, Any]:
    """Wait until no session is left and the warm pool is full again: every level starts from
    the same state. Returns /v1/capacity then."""
    deadline = time.monotonic() + timeout_s
    while True:
        cap = await capacity(http)
        pool = cap["warm_pool"]
        if cap["active_sessions"] == 0 and pool["idle"] >= pool["warm_pool_size"]:
            return cap
        if time.monotonic() > deadline:
            raise TimeoutError(f"backend did not settle: {cap}")
        await asyncio.sleep(0.2)


async def stage_pids(sessions: list[dict[str, Any]]) -> dict[str, set[int]]:
    """The calls' processes by kind: each call's own process (as its worker actor describes
    it; inline stages run there), and, from the create answers, the STT / TTS processes that
    are not inline (a `node` host shared by the node's calls is one process, counted once)."""
    import ray

    import serve_app

    out: dict[str, set[int]] = {"session": set(), "stt": set(), "tts": set()}
    for s in sessions:
        worker = ray.get_actor(s["worker"], namespace=serve_app.NAMESPACE)
        out["session"].add(int((await worker.describe.remote())["pid"]))
        for kind in ("stt", "tts"):
            stage = (s.get("stages") or {}).get(kind) or {}
            if stage.get("placement") != "inline" and stage.get("pid"):
                out[kind].add(int(stage["pid"]))
    return out
