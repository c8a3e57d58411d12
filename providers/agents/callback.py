"""Adapters that turn user code (a callable, or an object with `reply`) into an `Agent`.

User code may return a string, an awaitable of one, or stream: an async generator or a generator
of text pieces. Sync code runs in a worker thread so a slow callback cannot stall the session's
audio loop; the caller's timeout still applies.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from providers.base import Agent, AgentContext

_DONE = object()


async def _texts(result: Any) -> AsyncIterator[str]:
    """Whatever user code returned, as a stream of text pieces."""
    if inspect.isawaitable(result):
        result = await result
    if inspect.isasyncgen(result):
        async for piece in result:
            if piece:
                yield str(piece)
    elif inspect.isgenerator(result):
        gen: Iterator[Any] = result
        while (piece := await asyncio.to_thread(next, gen, _DONE)) is not _DONE:
            if piece:
                yield str(piece)
    elif result is not None:
        yield str(result)


class _UserCodeAgent(Agent):
    def __init__(self, fn: Callable[..., Any], takes_ctx: bool) -> None:
        self._fn = fn
        self._takes_ctx = takes_ctx

    async def _call(self, transcript: str, ctx: AgentContext) -> Any:
        args = (transcript, ctx) if self._takes_ctx else (transcript,)
        if inspect.iscoroutinefunction(self._fn) or inspect.isasyncgenfunction(self._fn):
            return self._fn(*args)
        return await asyncio.to_thread(self._fn, *args)

    async def stream(self, transcript: str, ctx: AgentContext) -> AsyncIterator[str]:
        async for piece in _texts(await self._call(transcript, ctx)):
            yield piece

    async def reply(self, transcript: str, ctx: AgentContext) -> str:
        return "".join([p async for p in self.stream(transcript, ctx)])


class CallbackAgent(_UserCodeAgent):
    """Wraps `agent_callback(transcript)` (the seed's `AgentCallback`)."""

    name = "callback"

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__(fn, takes_ctx=False)


class InstanceAgent(_UserCodeAgent):
    """Wraps `agent_instance`: any object with `reply(transcript[, ctx])` (or `stream(...)`), or a
    callable."""

    name = "instance"

    def __init__(self, obj: Any) -> None:
        fn = getattr(obj, "stream", None) or getattr(obj, "reply", None) or obj
        if not callable(fn):
            raise TypeError("agent_instance must have a reply(transcript) method or be callable")
        self._obj = obj
        super().__init__(fn, takes_ctx=len(inspect.signature(fn).parameters) >= 2)
