"""Replacing a session's own STT or TTS stage (the `session` placement) whose process died.

Ray restarts a stage actor (`max_restarts`), but a restart is a cold worker start: ~1 s during
which the caller hears nothing (README, "Reliability"). With `Config.stage_spares`, each
worker keeps one spare stage of each kind, loaded on the same node; when a call finds its stage
dead, the spare takes over at once and the dead one is stopped for good (no restart), then a
new spare loads in the background. Without a spare, the caller waits for Ray's restart.

Only `StageSlot` knows which actor is live; the proxies in `actors/stage_actors.py` retry the
failed call on whatever it hands back (replaying an utterance's audio, resuming a sentence).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import RayActorError

from backend.errors import BackendError, ErrorCode

log = logging.getLogger(__name__)

RESTART_WAIT_S = 20.0  # Ray's restart of a stage (a cold process start) must end by then
RESTART_POLL_S = 0.02
# Ray raises `RayActorError` (ActorDiedError, ActorUnavailableError) for a call on a dead stage.
STAGE_DIED = RayActorError


class StageSlot:
    """The live stage actor of one kind (`stt`, `tts`) for one worker, and its warm spare."""

    def __init__(
        self,
        kind: str,
        actor: Any,
        pid: int | None,
        start_spare: Callable[[], Any] | None = None,
    ) -> None:
        self.kind = kind
        self.actor = actor
        self.pid = pid
        self._start_spare = start_spare  # a new, unnamed stage actor on this node
        self._spare: asyncio.Task[tuple[Any, int | None]] | None = None
        self._lock = asyncio.Lock()
        self.failovers = 0
        self._last: dict[str, Any] | None = None  # the failover not yet reported
        # Told of every replacement (the session turns it into a `stage_failover` event).
        self.on_failover: Callable[[dict[str, Any]], None] | None = None

    # -- the spare -------------------------------------------------------------------------
    def prepare_spare(self) -> None:
        """Start loading a spare in the background, unless one exists or spares are off."""
        if self._start_spare is not None and self._spare is None:
            self._spare = asyncio.get_running_loop().create_task(self._load_spare())

    async def _load_spare(self) -> tuple[Any, int | None]:
        assert self._start_spare is not None
        actor = self._start_spare()
        _, where = await actor.describe.remote()
        return actor, where.get("pid")

    def spare_state(self) -> dict[str, Any]:
        t = self._spare
        if t is None:
            return {"spare": "none"}
        if not t.done():
            return {"spare": "loading"}
        if t.cancelled() or t.exception() is not None:
            return {"spare": "failed"}
        return {"spare": "ready", "spare_pid": t.result()[1]}

    def state(self) -> dict[str, Any]:
        return {"pid": self.pid, "failovers": self.failovers, **self.spare_state()}

    async def _take_spare(self) -> tuple[Any, int | None] | None:
        """The spare, waiting for it if it is still loading (it started earlier than a restart
        would); None if there is none or it failed to load."""
        task, self._spare = self._spare, None
        if task is None:
            return None
        try:
            return await task
        except Exception as exc:
            log.warning("%s spare failed to load: %s", self.kind, exc)
            return None

    # -- replacing a dead stage ------------------------------------------------------------
    async def replace(self, dead: Any) -> Any:
        """`dead` failed a call because its process is gone: return the stage to retry on.
        Concurrent callers that saw the same death share one replacement."""
        detected_at = time.time()
        async with self._lock:
            if self.actor is not dead:
                return self.actor  # replaced while we waited
            spare = await self._take_spare()
            if spare is None and self._start_spare is not None:
                self.prepare_spare()  # the spare failed to load: start one now (a cold start)
                spare = await self._take_spare()
            if spare is not None:
                with contextlib.suppress(Exception):
                    ray.kill(dead, no_restart=True)  # its restart would be a wasted process
                self.actor, self.pid = spare
                via = "spare"
                self.prepare_spare()
            else:
                self.pid = await self._wait_for_restart(dead)
                via = "restart"
            self.failovers += 1
        log.warning("%s stage died; replaced by %s (pid %s)", self.kind, via, self.pid)
        self._last = {"stage": self.kind, "via": via, "detected_at": detected_at}
        return self.actor

    async def _wait_for_restart(self, actor: Any) -> int | None:
        """Ray restarts the actor (`max_restarts`); until it is back, calls to it fail as
        unavailable. The first answer means it is back."""
        try:
            async with asyncio.timeout(RESTART_WAIT_S):
                while True:
                    try:
                        _, where = await actor.describe.remote()
                        return where.get("pid")
                    except RayActorError:
                        await asyncio.sleep(RESTART_POLL_S)
        except TimeoutError:
            raise BackendError(
                self.kind,
                ErrorCode.PIPELINE_ERROR,
                f"the {self.kind.upper()} stage died and did not come back",
            ) from None

    def recovered(self) -> None:
        """The replacement has done its first useful work (audio out, the utterance taken):
        report the failover, with when that happened (seconds since the epoch)."""
        last, self._last = self._last, None
        if last is None or self.on_failover is None:
            return
        now = time.time()
        event = {
            **last,
            "type": "stage_failover",
            "recovered_at": now,
            "recovery_ms": round((now - last["detected_at"]) * 1000, 1),
        }
        try:
            self.on_failover(event)
        except Exception:  # observability must never break a conversation
            log.exception("stage failover observer failed")

    def stop(self) -> None:
        """Stop the live stage and the spare (a worker's stages otherwise die with it)."""
        spare, self._spare = self._spare, None
        if spare is not None:
            if spare.done() and not spare.cancelled() and spare.exception() is None:
                with contextlib.suppress(Exception):
                    ray.kill(spare.result()[0], no_restart=True)
            spare.cancel()
        with contextlib.suppress(Exception):
            ray.kill(self.actor, no_restart=True)

    def died(self, message: str) -> BackendError:
        """The error a caller reports when the replacement failed as well."""
        return BackendError(self.kind, ErrorCode.PIPELINE_ERROR, message)
