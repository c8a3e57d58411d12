"""Stage actors (STT, TTS) and the proxies a session's pipeline uses to talk to them.

A stage actor holds one loaded provider for one session, on the session's node. The pipeline sees
ordinary `STT`/`TTS` objects (`RemoteSTT`, `RemoteTTS`); only this module knows they are actors.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from typing import Any

import psutil
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from providers.base import STT, TTS, SttCapabilities, SttStream, TtsCapabilities
from providers.registry import STT_PROVIDERS, TTS_PROVIDERS

STAGE_MAX_RESTARTS = 3


def placement() -> dict[str, Any]:
    """Where the calling actor runs: shown in session info, used by tests and the dashboard."""
    return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


@ray.remote(num_cpus=0, max_restarts=STAGE_MAX_RESTARTS)
class SttStageActor:
    """Calls arrive in submission order from the session's single STT feeder, one at a time."""

    def __init__(self, provider: str, options: dict[str, Any]) -> None:
        self.stt: STT = STT_PROVIDERS.create(provider, **options)
        self._streams: dict[int, SttStream] = {}

    def describe(self) -> tuple[SttCapabilities, dict[str, Any]]:
        return self.stt.capabilities, placement()

    async def push(self, utterance_id: int, pcm16: bytes) -> None:
        stream = self._streams.get(utterance_id)
        if stream is None:
            for old in self._streams.values():  # one utterance at a time per session
                await old.aclose()
            self._streams = {utterance_id: (stream := self.stt.stream())}
        await stream.push(pcm16)

    async def finish(self, utterance_id: int) -> str:
        stream = self._streams.pop(utterance_id, None)
        if stream is None:
            return ""
        return await stream.finish()

    async def reset(self) -> None:
        """Drop any utterance left open: the worker is about to serve another session."""
        streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            await stream.aclose()

    def ping(self) -> str:
        return "ok"

    def rss_mb(self) -> float:
        return psutil.Process().memory_info().rss / 2**20


@ray.remote(num_cpus=0, max_restarts=STAGE_MAX_RESTARTS)
class TtsStageActor:
    def __init__(self, provider: str, options: dict[str, Any]) -> None:
        self.tts: TTS = TTS_PROVIDERS.create(provider, **options)

    def describe(self) -> tuple[TtsCapabilities, dict[str, Any]]:
        return self.tts.capabilities, placement()

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        async for chunk in self.tts.synthesize(text):
            yield chunk

    def ping(self) -> str:
        return "ok"

    def rss_mb(self) -> float:
        return psutil.Process().memory_info().rss / 2**20


class _RemoteSttStream(SttStream):
    def __init__(self, actor: Any, utterance_id: int) -> None:
        self._actor = actor
        self._id = utterance_id

    async def push(self, pcm16: bytes) -> None:
        await self._actor.push.remote(self._id, pcm16)

    async def finish(self) -> str:
        return await self._actor.finish.remote(self._id)


class RemoteSTT(STT):
    def __init__(self, actor: Any, capabilities: SttCapabilities, name: str) -> None:
        self.actor = actor
        self.capabilities = capabilities
        self.name = name
        self._ids = itertools.count(1)

    def stream(self) -> SttStream:
        return _RemoteSttStream(self.actor, next(self._ids))


class RemoteTTS(TTS):
    def __init__(self, actor: Any, capabilities: TtsCapabilities, name: str) -> None:
        self.actor = actor
        self.capabilities = capabilities
        self.name = name

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        async for ref in self.actor.synthesize.remote(text):
            yield await ref


def pinned_here(name: str, namespace: str) -> dict[str, Any]:
    """Actor options that put a stage on the calling actor's own node, never elsewhere."""
    node_id = ray.get_runtime_context().get_node_id()
    return {
        "name": name,
        "namespace": namespace,
        "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
    }


async def start_stages(
    owner: str,
    namespace: str,
    stt_provider: str,
    tts_provider: str,
    stage_options: dict[str, dict[str, Any]],
) -> tuple[RemoteSTT, RemoteTTS, dict[str, dict[str, Any]]]:
    """Start both stage actors of the worker `owner` in parallel on this node and wait until
    their models are loaded. Returns the proxies and where each stage runs."""
    stt_actor = SttStageActor.options(**pinned_here(f"{owner}/stt", namespace)).remote(
        stt_provider, stage_options.get(stt_provider, {})
    )
    tts_actor = TtsStageActor.options(**pinned_here(f"{owner}/tts", namespace)).remote(
        tts_provider, stage_options.get(tts_provider, {})
    )
    (stt_caps, stt_at), (tts_caps, tts_at) = await asyncio.gather(
        stt_actor.describe.remote(), tts_actor.describe.remote()
    )
    return (
        RemoteSTT(stt_actor, stt_caps, stt_provider),
        RemoteTTS(tts_actor, tts_caps, tts_provider),
        {"stt": {"provider": stt_provider, **stt_at}, "tts": {"provider": tts_provider, **tts_at}},
    )
