"""Stage actors (STT, TTS) and the proxies a session's pipeline uses to talk to them.

A stage actor holds one loaded provider for one session, on the session's node. The pipeline sees
ordinary `STT`/`TTS` objects (`RemoteSTT`, `RemoteTTS`); only this module knows they are actors.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import AsyncIterator
from typing import Any

import psutil
import ray
from ray.exceptions import RayTaskError

from actors.errors import as_backend_error
from actors.observability import ObservedStage
from actors.stage_failover import STAGE_DIED, StageSlot
from actors.task_events import untracked
from backend.errors import BackendError
from providers.base import (
    S2S,
    STT,
    TTS,
    S2sCapabilities,
    S2sEvent,
    S2sOptions,
    S2sSession,
    SttCapabilities,
    SttStream,
    TtsCapabilities,
)
from providers.registry import S2S_PROVIDERS, STT_PROVIDERS, TTS_PROVIDERS

STAGE_MAX_RESTARTS = 3
MAX_REPLAY_BYTES = 30 * 16000 * 2  # an utterance's audio kept for a replacement STT stage: 30 s


def placement() -> dict[str, Any]:
    """Where the calling actor runs: shown in session info, used by tests and the dashboard."""
    return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


class _Stage(ObservedStage):
    """A provider's constructor error (a bad option, say) is kept and raised by `describe`, so
    the session gets the `BackendError` naming it rather than a dead actor."""

    _init_error: BackendError | None = None

    def _build(self, registry: Any, provider: str, options: dict[str, Any]) -> Any:
        self._obs_started(provider)
        try:
            return registry.create(provider, **options)
        except BackendError as exc:
            self._init_error = exc
            return None

    def _check(self) -> None:
        if self._init_error is not None:
            raise self._init_error


@ray.remote(num_cpus=0, max_restarts=STAGE_MAX_RESTARTS)
class SttStageActor(_Stage):
    """Calls arrive in submission order from the session's single STT feeder, one at a time."""

    _obs_stage = "stt"

    def __init__(self, provider: str, options: dict[str, Any]) -> None:
        self._provider, self._options = provider, options
        self.stt: STT = self._build(STT_PROVIDERS, provider, options)
        self._streams: dict[int, SttStream] = {}

    async def describe(self) -> tuple[SttCapabilities, dict[str, Any]]:
        self._check()
        await self.stt.connect()  # a hosted provider's session connection, before the first turn
        await self.stt.warm_up()  # so the call's first turn is as fast as later ones
        return self.stt.capabilities, placement()

    @untracked
    async def push(self, utterance_id: int, pcm16: bytes) -> None:
        stream = self._streams.get(utterance_id)
        if stream is None:
            for old in self._streams.values():  # one utterance at a time per session
                await old.aclose()
            self._streams = {utterance_id: (stream := self.stt.stream())}
        await stream.push(pcm16)

    @untracked
    async def finish(self, utterance_id: int) -> str:
        stream = self._streams.get(utterance_id)
        if stream is None:
            return ""
        with self._obs_call("stt.finish", **{"stt.provider": self._provider}):
            text = await stream.finish()  # kept until it succeeds: the pipeline retries it
        self._streams.pop(utterance_id, None)
        return text

    async def reset(self) -> None:
        """The worker is about to serve another session: drop any utterance left open and load
        a fresh recogniser, so that nothing one caller said shapes the next call."""
        streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            await stream.aclose()
        old = self.stt
        self.stt = await asyncio.to_thread(STT_PROVIDERS.create, self._provider, **self._options)
        await self.stt.connect()
        await old.aclose()

    @untracked
    def ping(self) -> str:
        return "ok"

    def rss_mb(self) -> float:
        return psutil.Process().memory_info().rss / 2**20


@ray.remote(num_cpus=0, max_restarts=STAGE_MAX_RESTARTS)
class TtsStageActor(_Stage):
    _obs_stage = "tts"

    def __init__(self, provider: str, options: dict[str, Any]) -> None:
        self.tts: TTS = self._build(TTS_PROVIDERS, provider, options)

    async def describe(self) -> tuple[TtsCapabilities, dict[str, Any]]:
        self._check()
        await self.tts.connect()
        await self.tts.warm_up()
        return self.tts.capabilities, placement()

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        with self._obs_call("tts.synthesize", **{"tts.chars": len(text)}):
            async for chunk in self.tts.synthesize(text):
                yield chunk

    async def begin_turn(self, turn_id: int) -> None:
        await self.tts.begin_turn(turn_id)

    async def end_turn(self, turn_id: int, interrupted: bool = False) -> None:
        await self.tts.end_turn(turn_id, interrupted)

    @untracked
    def ping(self) -> str:
        return "ok"


@ray.remote(num_cpus=0, max_restarts=0)
class S2sStageActor(_Stage):
    """One speech-to-speech model connection for one session. `events` is a streaming
    generator the session consumes for the whole call; audio and interrupts arrive beside it."""

    _obs_stage = "s2s"

    def __init__(self, provider: str, options: dict[str, Any]) -> None:
        self.s2s: S2S = self._build(S2S_PROVIDERS, provider, options)
        self.session: S2sSession | None = None

    def describe(self) -> tuple[S2sCapabilities, dict[str, Any]]:
        self._check()
        return self.s2s.capabilities, placement()

    async def connect(self, options: S2sOptions) -> None:
        if self.session is not None:
            await self.session.aclose()
        with self._obs_call("s2s.connect"):
            self.session = await self.s2s.connect(options)

    async def send_audio(self, pcm16: bytes) -> None:
        assert self.session is not None, "connect first"
        await self.session.send_audio(pcm16)

    async def events(self) -> AsyncIterator[S2sEvent]:
        assert self.session is not None, "connect first"
        async for event in self.session.events():
            yield event

    async def interrupt(self, played_ms: int) -> None:
        assert self.session is not None, "connect first"
        await self.session.interrupt(played_ms)

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.aclose()

    @untracked
    def ping(self) -> str:
        return "ok"

    def rss_mb(self) -> float:
        return psutil.Process().memory_info().rss / 2**20


class ReplayingSttStream(SttStream):
    """One utterance on the STT stage. The audio sent so far is kept (up to
    `MAX_REPLAY_BYTES`), so that if the stage dies mid-utterance the replacement hears it all
    again and the turn goes on as if nothing happened."""

    def __init__(self, stt: RemoteSTT, utterance_id: int | str) -> None:
        self._stt = stt
        self._id = utterance_id
        self._sent: list[bytes] = []
        self._sent_bytes = 0

    async def push(self, pcm16: bytes) -> None:
        self._sent.append(pcm16)
        self._sent_bytes += len(pcm16)
        actor = self._stt.actor
        try:
            await actor.push.remote(self._id, pcm16)
        except STAGE_DIED:
            await self._replay(actor)  # includes this chunk

    async def finish(self) -> str:
        actor = self._stt.actor
        try:
            return await actor.finish.remote(self._id)
        except STAGE_DIED:
            actor = await self._replay(actor)
            return await self._finish_on(actor)
        except RayTaskError as exc:  # the stage's own error, so the retry policy can read it
            raise as_backend_error("stt.finish", exc) from None

    async def _finish_on(self, actor: Any) -> str:
        try:
            return await actor.finish.remote(self._id)
        except STAGE_DIED:
            raise self._stt.slot.died("the STT stage died again while finishing") from None
        except RayTaskError as exc:
            raise as_backend_error("stt.finish", exc) from None

    async def _replay(self, dead: Any) -> Any:
        slot = self._stt.slot
        if self._sent_bytes > MAX_REPLAY_BYTES:
            raise slot.died("the STT stage died during an utterance too long to replay")
        actor = await slot.replace(dead)
        try:
            for chunk in self._sent:
                await actor.push.remote(self._id, chunk)
        except STAGE_DIED:
            raise slot.died("the STT stage died again while taking over") from None
        slot.recovered()
        return actor


class RemoteSTT(STT):
    def __init__(self, slot: StageSlot, capabilities: SttCapabilities, name: str) -> None:
        self.slot = slot
        self.capabilities = capabilities
        self.name = name
        self._ids = itertools.count(1)

    @property
    def actor(self) -> Any:
        return self.slot.actor

    def stream(self) -> SttStream:
        return ReplayingSttStream(self, next(self._ids))


class RemoteTTS(TTS):
    def __init__(self, slot: StageSlot, capabilities: TtsCapabilities, name: str) -> None:
        self.slot = slot
        self.capabilities = capabilities
        self.name = name
        self._turn: int | None = None  # the reply in progress, re-announced to a replacement

    @property
    def actor(self) -> Any:
        return self.slot.actor

    async def begin_turn(self, turn_id: int) -> None:
        self._turn = turn_id
        try:
            await self.actor.begin_turn.remote(turn_id)
        except STAGE_DIED:
            await self._replace(self.actor)

    async def end_turn(self, turn_id: int, interrupted: bool = False) -> None:
        self._turn = None
        with contextlib.suppress(STAGE_DIED):  # a dead stage holds no turn to end
            await self.actor.end_turn.remote(turn_id, interrupted)

    async def _replace(self, dead: Any) -> Any:
        actor = await self.slot.replace(dead)
        if self._turn is not None:
            await actor.begin_turn.remote(self._turn)
        return actor

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """Stream the sentence's audio. If the stage dies part-way, the replacement says the
        sentence again and the audio resumes where it stopped (what was already delivered is
        skipped), so the listener hears a pause, not a cut."""
        delivered = 0
        for attempt in range(2):
            actor = self.actor
            chunks = actor.synthesize.remote(text)
            skip, finished, resumed = delivered, False, attempt == 0
            try:
                async for ref in chunks:
                    chunk = await ref
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                        if not chunk:
                            continue
                    if not resumed:
                        resumed = True
                        self.slot.recovered()
                    delivered += len(chunk)
                    yield chunk
                finished = True
                if not resumed:  # the replacement had nothing left to say
                    self.slot.recovered()
                return
            except RayTaskError as exc:  # the stage's own error, so the retry policy can read it
                finished = True
                raise as_backend_error("tts.synthesize", exc) from None
            except STAGE_DIED:
                finished = True
                if attempt:
                    raise self.slot.died("the TTS stage died again while speaking") from None
                await self._replace(actor)
            finally:
                if not finished:  # a barge-in closed us: stop the generation on the stage too
                    ray.cancel(chunks)


class _RemoteS2sSession(S2sSession):
    def __init__(self, actor: Any) -> None:
        self._actor = actor

    async def send_audio(self, pcm16: bytes) -> None:
        await self._actor.send_audio.remote(pcm16)

    async def events(self) -> AsyncIterator[S2sEvent]:
        async for ref in self._actor.events.remote():
            yield await ref

    async def interrupt(self, played_ms: int) -> None:
        await self._actor.interrupt.remote(played_ms)

    async def aclose(self) -> None:
        await self._actor.aclose.remote()


class RemoteS2S(S2S):
    def __init__(self, actor: Any, capabilities: S2sCapabilities, name: str) -> None:
        self.actor = actor
        self.capabilities = capabilities
        self.name = name

    async def connect(self, options: S2sOptions) -> S2sSession:
        await self.actor.connect.remote(options)
        return _RemoteS2sSession(self.actor)
