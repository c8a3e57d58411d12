"""Adapters that turn user code (a callable, or an object with `reply`) into an `Agent`."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from providers.base import Agent, AgentContext


async def _resolve(result: Any) -> str:
    if inspect.isawaitable(result):
        result = await result
    return "" if result is None else str(result)


class CallbackAgent(Agent):
    """Wraps `agent_callback(transcript)`, sync or async (the seed's `AgentCallback`).

    A sync callable runs in a worker thread so that a slow callback cannot stall the session's
    audio loop; the caller's timeout still applies.
    """

    name = "callback"

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    async def reply(self, transcript: str, ctx: AgentContext) -> str:
        if inspect.iscoroutinefunction(self._fn):
            return await _resolve(self._fn(transcript))
        return await _resolve(await asyncio.to_thread(self._fn, transcript))


class InstanceAgent(Agent):
    """Wraps `agent_instance`: an `Agent`, or any object with `reply(transcript[, ctx])` or
    `__call__(transcript)`."""

    name = "instance"

    def __init__(self, obj: Any) -> None:
        self._obj = obj
        fn = getattr(obj, "reply", None) or obj
        if not callable(fn):
            raise TypeError("agent_instance must have a reply(transcript) method or be callable")
        self._fn = fn
        self._takes_ctx = len(inspect.signature(fn).parameters) >= 2

    async def reply(self, transcript: str, ctx: AgentContext) -> str:
        args = (transcript, ctx) if self._takes_ctx else (transcript,)
        if inspect.iscoroutinefunction(self._fn):
            return await _resolve(self._fn(*args))
        return await _resolve(await asyncio.to_thread(self._fn, *args))
