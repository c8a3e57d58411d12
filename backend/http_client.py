"""A small client of the HTTP API and the audio websocket, for the CLI, tests and benchmarks.

`talk()` plays audio into a session in real time, the way a microphone would, and collects what
comes back until the agent has answered (a `metrics` event closes each turn).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

from backend.errors import BackendError
from backend.retry_after import retry_after_s


@dataclass
class CallResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    first_audio_at: float | None = None  # monotonic time of the first reply frame
    speech_sent_at: float | None = None  # monotonic time the last speech frame was sent

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    @property
    def transcripts(self) -> list[str]:
        return [e["text"] for e in self.of_type("transcript") if e.get("text")]

    @property
    def replies(self) -> list[str]:
        return [e["text"] for e in self.of_type("agent_reply")]

    @property
    def metrics(self) -> list[dict[str, Any]]:
        return self.of_type("metrics")

    @property
    def states(self) -> list[str]:
        return [e["state"] for e in self.of_type("state")]


async def send_realtime(
    send: Callable[[bytes], Awaitable[Any]],
    pcm16: bytes,
    sample_rate_hz: int,
    *,
    frame_ms: int = 20,
    realtime: bool = True,
    mark_at_s: float | None = None,
) -> float | None:
    """Send `pcm16` in `frame_ms` frames, paced like a microphone (or as fast as possible).
    Returns when the frame reaching `mark_at_s` into the audio was sent (monotonic time)."""
    frame_bytes = int(sample_rate_hz * frame_ms / 1000) * 2
    mark_byte = None if mark_at_s is None else int(mark_at_s * sample_rate_hz) * 2
    marked: float | None = None
    start = time.monotonic()
    for i, off in enumerate(range(0, len(pcm16), frame_bytes)):
        await send(pcm16[off : off + frame_bytes])
        if marked is None and mark_byte is not None and off + frame_bytes >= mark_byte:
            marked = time.monotonic()
        if realtime:
            await asyncio.sleep(max(0.0, start + (i + 1) * frame_ms / 1000 - time.monotonic()))
    return marked


class HttpClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        timeout_s: float = 60.0,
        api_key: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s, headers=headers)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _json(self, op: str, resp: httpx.Response) -> Any:
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {"error": {"code": "pipeline_error", "message": resp.text[:200]}}
            err = BackendError.from_body(op, body)
            if (after := retry_after_s(resp.headers)) is not None:
                err.details["retry_after_s"] = after  # as the Python handle gives it
            raise err
        return resp.json() if resp.content else None

    async def create_session(self, **fields: Any) -> dict[str, Any]:
        return await self._json(
            "create_session", await self._http.post("/v1/sessions", json=fields)
        )

    async def get_session(self, session_id: str) -> dict[str, Any]:
        return await self._json("get_session", await self._http.get(f"/v1/sessions/{session_id}"))

    async def list_sessions(self) -> list[dict[str, Any]]:
        return (await self._json("list_sessions", await self._http.get("/v1/sessions")))["sessions"]

    async def close_session(self, session_id: str) -> None:
        await self._json("close_session", await self._http.delete(f"/v1/sessions/{session_id}"))

    async def health(self) -> dict[str, Any]:
        resp = await self._http.get("/v1/health")
        return resp.json()

    async def talk(
        self,
        session: dict[str, Any],
        pcm16: bytes,
        sample_rate_hz: int,
        *,
        frame_ms: int = 20,
        realtime: bool = True,
        trailing_silence_s: float = 1.5,
        turns: int = 1,
        timeout_s: float = 180.0,
    ) -> CallResult:
        """Stream `pcm16` then silence into the session; return once `turns` turns completed."""
        media = session["media"]
        url = f"{media['url']}?token={media['token']}"
        result = CallResult()
        silence = bytes(int(sample_rate_hz * trailing_silence_s) * 2)
        async with websockets.connect(url, max_size=None) as ws:

            async def send() -> None:
                speech_s = len(pcm16) / 2 / sample_rate_hz
                result.speech_sent_at = await send_realtime(
                    ws.send,
                    pcm16 + silence,
                    sample_rate_hz,
                    frame_ms=frame_ms,
                    realtime=realtime,
                    mark_at_s=speech_s,
                )

            async def receive() -> None:
                done = 0
                async for msg in ws:
                    if isinstance(msg, bytes):
                        result.first_audio_at = result.first_audio_at or time.monotonic()
                        result.audio.extend(msg)
                        continue
                    event = json.loads(msg)
                    result.events.append(event)
                    kind = event.get("type")
                    unheard = kind == "transcript" and not event.get("text")
                    if unheard or (kind in ("metrics", "error") and event.get("turn_id")):
                        done += 1
                    if done >= turns or event.get("type") == "closed":
                        return

            sender = asyncio.create_task(send())
            try:
                async with asyncio.timeout(timeout_s):
                    await receive()
            finally:
                sender.cancel()
        return result
