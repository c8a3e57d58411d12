"""What the stt_tts and s2s pipelines share: their background tasks, and how a finished turn
and an error reach the client (the outbox) and the observers (metrics, traces)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from backend.errors import BackendError
from pipelines.outbox import Outbox
from pipelines.turn_metrics import TurnTimings
from providers.base import AgentContext
from providers.messages import ErrorEvent, Interruption

log = logging.getLogger(__name__)


class TurnLoop:
    outbox: Outbox
    ctx: AgentContext
    latency_target_s: float
    _on_turn: Callable[[TurnTimings], None] | None

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self.turns_completed = 0
        self.interruptions = 0

    async def aclose(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    def _emit_metrics(self, turn: TurnTimings) -> None:
        """A turn is over (answered or interrupted): its `metrics` event, then the observers."""
        self.turns_completed += 1
        self.outbox.put_event(turn.metrics(self.latency_target_s))
        if self._on_turn is not None:
            try:
                self._on_turn(turn)
            except Exception:  # observability must never break a conversation
                log.exception("turn observer failed")

    def _announce_interruption(self, turn: TurnTimings, heard_s: float, heard: str) -> None:
        """The user spoke over the reply `heard_s` into it: the turn keeps what was heard, and
        the client is told (it drops any reply audio it still holds)."""
        turn.interrupted_at = time.monotonic()
        turn.heard_text = heard
        self.interruptions += 1
        played_ms = round(heard_s * 1000, 1)
        self.outbox.put_event(
            Interruption(turn_id=turn.turn_id, played_ms=played_ms, heard_text=heard)
        )

    def _report(self, err: BackendError, turn_id: int | None = None) -> None:
        log.warning("session %s: %s", self.ctx.session_id, err)
        self.outbox.put_event(ErrorEvent.of(err, turn_id))
