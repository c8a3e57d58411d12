"""Adapters that observe a stage running in the session's own process (the `inline` placement,
and the session's side of a `node` stage) as a stage actor observes itself: a span per provider
call under the session's span, and failures counted in `backend_provider_errors_total`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Any

from providers.base import STT, TTS, SttStream

Observe = Callable[..., AbstractContextManager[Any]]  # (span name, **attributes)


class _ObservedStream(SttStream):
    def __init__(self, inner: SttStream, observe: Observe) -> None:
        self._inner, self._observe = inner, observe

    async def push(self, pcm16: bytes) -> None:
        await self._inner.push(pcm16)

    async def finish(self) -> str:
        with self._observe("stt.finish"):
            return await self._inner.finish()

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Delegating:
    """What an observed stage passes to the stage it wraps unchanged."""

    inner: Any

    def __init__(self, inner: Any, observe: Observe) -> None:
        self.inner, self._observe = inner, observe
        self.name, self.capabilities = inner.name, inner.capabilities

    async def connect(self) -> None:
        await self.inner.connect()

    async def warm_up(self) -> None:
        await self.inner.warm_up()

    async def aclose(self) -> None:
        await self.inner.aclose()


class ObservedSTT(_Delegating, STT):
    def stream(self) -> SttStream:
        return _ObservedStream(self.inner.stream(), self._observe)


class ObservedTTS(_Delegating, TTS):
    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        with self._observe("tts.synthesize", **{"tts.chars": len(text)}):
            async for chunk in self.inner.synthesize(text):
                yield chunk

    async def begin_turn(self, turn_id: int) -> None:
        await self.inner.begin_turn(turn_id)

    async def end_turn(self, turn_id: int, interrupted: bool = False) -> None:
        await self.inner.end_turn(turn_id, interrupted)
