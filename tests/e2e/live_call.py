"""A client on a session's audio websocket that records everything that arrives, for tests that
break things mid-call and check what the user was told."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import websockets

from backend.http_client import send_realtime
from tests.conftest import wait_for

RATE = 16000


class Call:
    """One client on a session's audio websocket, recording what arrives, in order."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.arrived: list[float] = []  # time.monotonic() of each event's arrival
        self.audio_frames = 0
        self.close: tuple[int | None, str] | None = None
        self._task = asyncio.create_task(self._receive())

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, session: dict[str, Any], via: str = "url") -> Any:
        """`via`: "url" (the session's own process) or "fallback_url" (the Serve port)."""
        url = f"{session['media'][via]}?token={session['media']['token']}"
        async with websockets.connect(url, max_size=None) as ws:
            call = cls(ws)
            try:
                yield call
            finally:
                call._task.cancel()

    async def _receive(self) -> None:
        try:
            async for msg in self.ws:
                if isinstance(msg, bytes):
                    self.audio_frames += 1
                else:
                    self.events.append(json.loads(msg))
                    self.arrived.append(time.monotonic())
        except websockets.ConnectionClosed:
            pass
        self.close = (self.ws.close_code, self.ws.close_reason or "")

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e.get("type") == kind and all(e.get(k) == v for k, v in match.items())
        ]

    async def wait(self, kind: str, timeout_s: float = 90.0, **match: Any) -> dict[str, Any]:
        async def seen() -> Any:
            found = self.of(kind, **match)
            return found[0] if found else None

        event = await wait_for(seen, timeout_s, 0.05)
        assert event is not None, f"no {kind} {match} in {self.events}"
        return event

    async def say(self, pcm: bytes, silence_s: float = 1.5) -> None:
        await send_realtime(self.ws.send, pcm + bytes(int(RATE * silence_s) * 2), RATE)

    async def turn_done(self, turn_id: int) -> dict[str, Any]:
        """The event that ends a turn for the client: its metrics, or its error."""

        async def ended() -> Any:
            return next(
                (
                    e
                    for e in self.events
                    if e.get("turn_id") == turn_id and e.get("type") in ("metrics", "error")
                ),
                None,
            )

        event = await wait_for(ended, 120, 0.05)
        assert event is not None, f"turn {turn_id} never ended: {self.events}"
        return event
