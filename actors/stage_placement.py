"""Opening a worker's stages where its profile places them (README, "Stage placement").

- `inline`: the provider object itself, in the session's own process (no hop);
- `node`: a proxy to the node's shared stage host (`actors/stage_host.py`);
- `session`: the worker's own pinned stage actor (`actors/stage_actors.py`), with an optional
  loaded spare (`actors/stage_failover.py`).
Whatever the placement, the pipeline gets an ordinary `STT`/`TTS`/`S2S` object.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.stage_actors import (
    STAGE_MAX_RESTARTS,
    RemoteS2S,
    RemoteSTT,
    RemoteTTS,
    S2sStageActor,
    SttStageActor,
    TtsStageActor,
    placement,
)
from actors.stage_failover import StageSlot
from actors.stage_host import HostedSTT, HostSlot
from providers.base import STT, TTS
from providers.registry import STT_PROVIDERS, TTS_PROVIDERS

Where = dict[str, Any]


def pinned_here(name: str, namespace: str) -> dict[str, Any]:
    """Actor options that put a stage on the calling actor's own node, never elsewhere."""
    node_id = ray.get_runtime_context().get_node_id()
    return {
        "name": name,
        "namespace": namespace,
        "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
    }


async def warm_up(stage: Any) -> None:
    """A decode or synthesis of a short clip, so the call's first turn is as fast as later ones."""
    fn = getattr(stage, "warm_up", None)
    if fn is not None:
        await fn()


async def open_inline(registry: Any, provider: str, options: dict[str, Any]) -> tuple[Any, Where]:
    stage = await asyncio.to_thread(registry.create, provider, **options)
    await stage.connect()
    await warm_up(stage)
    return stage, {"provider": provider, "placement": "inline", **placement()}


async def open_session_stage(
    kind: str, owner: str, namespace: str, provider: str, options: dict[str, Any], spares: bool
) -> tuple[Any, Where]:
    """The worker's own stage actor of `kind` ("stt" or "tts") on this node, loaded."""
    cls = SttStageActor if kind == "stt" else TtsStageActor
    # With spares, a dead stage is replaced by its spare, never restarted: a call finds it
    # dead at once, where a restarting actor would hold the call for ~1 s.
    restarts = {"max_restarts": 0 if spares else STAGE_MAX_RESTARTS}
    actor = cls.options(**pinned_here(f"{owner}/{kind}", namespace), **restarts).remote(
        provider, options
    )
    caps, at = await actor.describe.remote()
    here = {**{k: v for k, v in pinned_here("", namespace).items() if k != "name"}, **restarts}
    # Spares are unnamed (they take a name's place only by being swapped in); they die with
    # their worker.
    start_spare = (lambda: cls.options(**here).remote(provider, options)) if spares else None
    slot = StageSlot(kind, actor, at.get("pid"), start_spare)
    slot.prepare_spare()
    proxy = (RemoteSTT if kind == "stt" else RemoteTTS)(slot, caps, provider)
    return proxy, {"provider": provider, "placement": "session", **at}


async def open_node_stt(
    owner: str,
    provider: str,
    host: Any,
    failover: Callable[[Any], Awaitable[tuple[Any, int | None]]],
) -> tuple[HostedSTT, Where]:
    caps, at = await host.describe.remote()
    slot = HostSlot("stt", host, at.get("pid"), failover)
    return HostedSTT(slot, caps, provider, owner), {"provider": provider, "placement": "node", **at}


async def open_stage(
    kind: str,
    placement_: str,
    owner: str,
    namespace: str,
    provider: str,
    options: dict[str, Any],
    spares: bool,
    host: Any = None,
    failover: Callable[[Any], Awaitable[tuple[Any, int | None]]] | None = None,
) -> tuple[STT | TTS, Where]:
    """The worker's `kind` stage ("stt" or "tts") where `placement_` says; a `node` stage needs
    the node's host and how to find its successor."""
    if placement_ == "node":
        assert host is not None and failover is not None, "a node placement needs its host"
        return await open_node_stt(owner, provider, host, failover)
    if placement_ == "inline":
        registry = STT_PROVIDERS if kind == "stt" else TTS_PROVIDERS
        return await open_inline(registry, provider, options)
    return await open_session_stage(kind, owner, namespace, provider, options, spares)


async def start_s2s_stage(
    session_id: str, namespace: str, provider: str, stage_options: dict[str, dict[str, Any]]
) -> tuple[RemoteS2S, Where]:
    """Start the session's speech-to-speech stage actor on this node and wait until it loads."""
    actor = S2sStageActor.options(**pinned_here(f"session:{session_id}/s2s", namespace)).remote(
        provider, stage_options.get(provider, {})
    )
    caps, at = await actor.describe.remote()
    return RemoteS2S(actor, caps, provider), {
        "s2s": {"provider": provider, "placement": "session", **at}
    }
