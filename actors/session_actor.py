"""`SessionActor`: the Ray actor that hosts one voice call at a time.

A session's life: the warm pool creates the worker idle, named `worker:<id>` for its whole life,
holding one `voice_session` unit; `warm()` opens its stages where the profile places them
(`actors/stage_placement.py`) and warms every model up; `start(spec)` binds it to a session in
milliseconds; `close()` unbinds it, and the registry keeps it for the next session or recycles
it. Every call from a client comes through `call(session_id, ...)` (`actors/session_ref.py`), so
a handle kept after a session ended never reaches the next one. Its media paths are in
`actors/session_media.py`. VAD and resampling run in this process: microseconds per frame,
far less than an actor hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
from collections.abc import AsyncIterator
from typing import Any, cast

import psutil
import ray

from actors.hooks import run_retention_hook
from actors.names import REGISTRY_NAME
from actors.observability import ObservedSession
from actors.observed_stages import ObservedSTT, ObservedTTS
from actors.profile import DEFAULT_S2S_PROVIDER, WorkerProfile
from actors.session_media import SessionMediaMixin
from actors.session_spec import SessionSpec, settings_from
from actors.session_wiring import guard_providers, turn_observer
from actors.stage_actors import placement
from actors.stage_host import HostedSTT
from actors.stage_placement import open_stage, start_s2s_stage
from actors.task_events import untracked
from backend.auth import retention_record
from backend.errors import BackendError, ErrorCode
from backend.iface import Config, PipelineType
from pipelines.session import SessionRuntime
from pipelines.transports.base import MediaTransport
from providers import resilience
from providers.agents import build_agent
from providers.base import STT, TTS, VAD, S2sOptions
from providers.messages import AgentReply, Transcript, message_from_wire
from providers.registry import S2S_PROVIDERS, TRANSPORTS, TURN_DETECTORS, VAD_PROVIDERS

log = logging.getLogger(__name__)

_MB = 1024 * 1024


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / _MB


@ray.remote(num_cpus=0, max_restarts=0)
class SessionActor(SessionMediaMixin, ObservedSession):
    def __init__(
        self,
        worker_name: str,
        profile: WorkerProfile,
        namespace: str,
        hosts: dict[str, Any] | None = None,
    ) -> None:
        self.worker_name = worker_name
        self._hosts = hosts or {}  # the node's shared stage hosts, for `node` stages
        self.profile = profile
        self.namespace = namespace
        self.runtime: SessionRuntime | None = None
        self.session_id: str | None = None
        self.sessions_served = 0
        self._warm: asyncio.Task[dict[str, Any]] | None = None
        self._stt: STT | None = None
        self._tts: TTS | None = None
        self._vad: VAD | None = None
        self._s2s: Any = None  # an s2s session's model (a RemoteS2S, or inline), per session
        self.spec: SessionSpec | None = None
        # A transport terminated here: webrtc, or the one the backend provider names (LiveKit).
        self.media: MediaTransport | Any = None
        self._media_server: Any = None  # this process's websocket server (direct media)
        self._media_token: dict[str, Any] = {}

    # -- pool lifecycle --------------------------------------------------------------------
    async def warm(self) -> dict[str, Any]:
        """Open every stage where the profile places it and warm every model up (idempotent;
        concurrent calls share it)."""
        if self._warm is None:
            self._warm = asyncio.create_task(self._load(self._hosts))
        return await asyncio.shield(self._warm)

    async def _load(self, hosts: dict[str, Any]) -> dict[str, Any]:
        p = self.profile
        opts, owner, ns = p.stage_options, self.worker_name, self.namespace
        (stt, stt_at), (tts, tts_at) = await asyncio.gather(
            *(
                open_stage(
                    kind,
                    p.placement(kind),
                    owner,
                    ns,
                    provider,
                    opts.get(provider, {}),
                    p.stage_spares,
                    hosts.get(kind),
                    self._host_failover(kind),
                )
                for kind, provider in (("stt", p.stt_provider), ("tts", p.tts_provider))
            )
        )
        self._stt, self._tts = cast(STT, stt), cast(TTS, tts)
        for stage in (self._stt, self._tts):
            if (slot := getattr(stage, "slot", None)) is not None:
                slot.on_failover = self._stage_failover
        self._vad = VAD_PROVIDERS.create(p.vad_provider)  # for the first session
        stages = {"stt": stt_at, "tts": tts_at}
        return {**placement(), "stages": stages, "worker": self.worker_name}

    def _observed(self, kind: str, stage: Any) -> Any:
        """A stage that does its work in this process for this session (inline, or the
        session's side of a node host): spans and error counts as a stage actor's own."""
        if self.profile.placement(kind) == "session":
            return stage  # its actor observes itself
        provider = self.profile.stt_provider if kind == "stt" else self.profile.tts_provider

        def observe(name: str, **attributes: Any) -> Any:
            return self._obs_call(name, stage=kind, provider=provider, **attributes)

        return (ObservedSTT if kind == "stt" else ObservedTTS)(stage, observe)

    def _host_failover(self, kind: str) -> Any:
        """How a `node` stage learns its host's successor: the registry promotes the node's
        spare once for every call on the node."""

        async def failover(dead: Any) -> tuple[Any, int | None]:
            registry = ray.get_actor(REGISTRY_NAME, namespace=self.namespace)
            node_id = ray.get_runtime_context().get_node_id()
            host = await registry.stage_host_failover.remote(
                node_id, self.profile.host_key(kind), dead._actor_id.hex()
            )
            if host is None:
                raise BackendError(kind, ErrorCode.PIPELINE_ERROR, f"no {kind} host on this node")
            _, at = await host.describe.remote()
            return host, at.get("pid")

        return failover

    async def start(self, spec: SessionSpec) -> dict[str, Any]:
        """Bind this (warm or warming) worker to a session. Returns where it runs."""
        if self.session_id is not None:
            raise BackendError(
                "create_session", ErrorCode.SESSION_ALREADY_ACTIVE, "worker is already in use"
            )
        self.session_id = spec.session_id
        self.spec = spec
        try:
            where = await self.warm()
            assert self._stt is not None and self._tts is not None
            config = Config(**spec.config)
            self._obs_open(spec, config, config.provider, self._stage_actors())
            guard_providers(config, self.namespace, self.worker_name)
            common: dict[str, Any] = {
                "session_id": spec.session_id,
                "user_id": spec.user_id,
                "input_sample_rate_hz": spec.sample_rate_hz,
                "settings": settings_from(config, spec.output_sample_rate_hz),
                "agent": build_agent(spec.agent_callback, spec.agent_instance, spec.agent_spec),
                "metadata": spec.metadata,
                "tracer": self._obs_turn_tracer(),
                "on_turn": turn_observer(config, spec.pipeline_type),
            }
            if spec.pipeline_type == PipelineType.S2S.value:
                # The warm worker holds STT/TTS stages; an s2s session adds its model's stage.
                provider = config.s2s_provider or DEFAULT_S2S_PROVIDER
                if self.profile.placement("s2s") == "inline":
                    options = spec.stage_options.get(provider, {})
                    self._s2s = await asyncio.to_thread(S2S_PROVIDERS.create, provider, **options)
                    at = {"provider": provider, "placement": "inline", **placement()}
                    where = {**where, "stages": {"s2s": at}}
                else:
                    self._s2s, stages = await start_s2s_stage(
                        spec.session_id, self.namespace, provider, spec.stage_options
                    )
                    where = {**where, "stages": stages}
                    self._s2s.actor.observe_session.remote(self._obs_stage_binding())
                self.runtime = SessionRuntime(
                    **common,
                    s2s=self._s2s,
                    s2s_options=S2sOptions(
                        min_silence_s=config.min_endpointing_delay, retry=common["settings"].retry
                    ),
                    trace_attributes={"user.id": spec.user_id, "s2s.provider": provider},
                )
            else:
                vad, self._vad = self._vad, None
                if vad is None or config.vad_provider != self.profile.vad_provider:
                    vad = VAD_PROVIDERS.create(config.vad_provider)
                self.runtime = SessionRuntime(
                    **common,
                    vad=vad,
                    stt=self._observed("stt", self._stt),
                    tts=self._observed("tts", self._tts),
                    turn_detection=TURN_DETECTORS.create(config.turn_detection_provider),
                    trace_attributes={
                        "user.id": spec.user_id,
                        "stt.provider": config.stt_provider or "",
                        "tts.provider": config.tts_provider or "",
                    },
                )
            if spec.agent_transport is not None:  # the provider's media (a LiveKit room)
                t = spec.agent_transport
                self.media = TRANSPORTS.create(t.name, **t.options, on_closed=self._peer_gone)
                await self.media.start(self.runtime)
            if spec.direct_media is not None:
                where = {**where, "direct_url": await self._serve_media(spec)}
        except BaseException:
            self.session_id = None
            self._obs_close("failed to start", self._stage_actors())
            await self._drop_s2s()
            if self.media is not None:
                with contextlib.suppress(Exception):
                    await self.media.aclose()
                self.media = None
            raise
        self.sessions_served += 1
        return {**where, "sessions_served": self.sessions_served}

    async def _retain(self, reason: str) -> None:
        """Data retention at session end: the hook gets what is configured to be kept; the
        transcript is dropped here either way, so nothing returns it afterwards."""
        assert self.runtime is not None
        if self.spec is not None:
            config = Config(**self.spec.config)
            record = retention_record(
                self.runtime.info(),
                self.spec.user_id,
                reason,
                retain_transcripts=config.retain_transcripts,
            )
            await run_retention_hook(self.spec.retention_hook, record, config.timeout)
        self.runtime.ctx.history.clear()

    async def _drop_s2s(self) -> None:
        s2s, self._s2s = self._s2s, None
        if s2s is not None and hasattr(s2s, "actor"):
            with contextlib.suppress(Exception):
                ray.kill(s2s.actor)

    async def close(self, reason: str = "closed") -> dict[str, Any]:
        """End the bound session; report what the registry needs to keep or recycle this worker."""
        if self.runtime is not None:
            await self.runtime.aclose(reason)
            await self._retain(reason)
        if self.media is not None:
            with contextlib.suppress(Exception):
                await self.media.aclose()
        if self._media_server is not None and self.session_id is not None:
            self._media_server.detach(self.session_id, reason)
            self._media_token = {}
        self._obs_close(reason, self._stage_actors())
        await self._drop_s2s()
        resilience.reset()  # the next session starts with its own breakers
        self.runtime, self.session_id, self.media, self.spec = None, None, None, None
        # Ready the next session here, off its critical path: fresh VAD state, no open utterance.
        self._vad = VAD_PROVIDERS.create(self.profile.vad_provider)
        if isinstance(self._stt, HostedSTT):
            await self._stt.release()  # what the call left open goes back to the node's pool
        elif (actor := getattr(self._stt, "actor", None)) is not None:
            with contextlib.suppress(Exception):
                await actor.reset.remote()
        return {"sessions_served": self.sessions_served, "memory_mb": await self.memory_mb()}

    async def memory_mb(self) -> float:
        """Resident memory of this worker and its own stage actors (what a leak would grow);
        a node's shared hosts are the registry's to watch."""
        total = rss_mb()
        stages = self._stage_actors()
        try:
            async with asyncio.timeout(2.0):
                total += sum(await asyncio.gather(*(a.rss_mb.remote() for a in stages)))
        except Exception:  # a dead stage: the next ping round will notice
            log.warning("worker %s: stage memory unavailable", self.worker_name)
        return round(total, 1)

    def _stage_failover(self, event: dict[str, Any]) -> None:
        """A stage died and was replaced: tell the session's client."""
        if self.runtime is not None:
            self.runtime.outbox.put_event(message_from_wire(event))

    # -- session calls ---------------------------------------------------------------------
    @untracked
    async def call(self, session_id: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run one of this actor's session methods for `session_id`, if it is still bound here."""
        if session_id != self.session_id or method.startswith("_") or method in _POOL_METHODS:
            raise BackendError(
                f"session.{method}", ErrorCode.SESSION_NOT_ACTIVE, f"session {session_id} has ended"
            )
        result = getattr(self, method)(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    def _stage_actors(self) -> list[Any]:
        """The stage actors this worker owns (`session` placement): not inline stages, not
        the node's shared hosts."""
        stages = [s for s in (self._stt, self._tts) if not isinstance(s, HostedSTT)]
        return [a for s in (*stages, self._s2s) if (a := getattr(s, "actor", None)) is not None]

    def _rt(self) -> SessionRuntime:
        if self.runtime is None:
            raise BackendError("session", ErrorCode.SESSION_NOT_ACTIVE, "session is not started")
        return self.runtime

    # -- control ---------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return self._rt().info()

    @untracked
    def ping(self) -> str:
        if self.runtime is not None:
            return self.runtime.state.value
        return "idle" if self._warm is not None and self._warm.done() else "starting"

    @untracked
    def describe(self) -> dict[str, Any]:
        """The worker as the dashboard or a test sees it: its session, its processes."""
        return {
            "worker": self.worker_name,
            "session_id": self.session_id,
            "sessions_served": self.sessions_served,
            "pid": os.getpid(),
            "state": self.ping(),
            "stages": {
                s.slot.kind: s.slot.state()
                for s in (self._stt, self._tts)
                if getattr(s, "slot", None) is not None
            },
        }

    def set_agent(self, callback: Any = None, instance: Any = None, spec: Any = None) -> None:
        self._rt().set_agent(build_agent(callback, instance, spec))

    def update_metadata(self, values: dict[str, Any]) -> dict[str, Any]:
        return self._rt().update_metadata(values)

    # -- hosted speech (Vapi): the call's service sends text turns, we answer them -----------
    async def agent_turn(self, session_id: str, text: str) -> AsyncIterator[str]:
        """One agent turn from a transcript, streamed; kept in the history and the events."""
        if session_id != self.session_id:
            raise BackendError(
                "session.agent_turn",
                ErrorCode.SESSION_NOT_ACTIVE,
                f"session {session_id} has ended",
            )
        rt = self._rt()
        rt.start()
        rt.outbox.put_event(Transcript(text=text, source="vapi"))
        rt.ctx.history.append({"role": "user", "content": text})
        parts: list[str] = []
        async for piece in rt.pipeline.agent.stream(text, rt.ctx):
            parts.append(piece)
            yield piece
        reply = "".join(parts).strip()
        rt.ctx.history.append({"role": "assistant", "content": reply})
        rt.outbox.put_event(AgentReply(text=reply, source="vapi"))

    def add_event(self, event: dict[str, Any]) -> None:
        """An event from outside the pipeline (a drain notice, Vapi's status), as a wire dict."""
        self._rt().outbox.put_event(message_from_wire(event))

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        """Run one of the agent's tools (`agent.tools`: name → sync or async callable)."""
        agent = self._rt().pipeline.agent
        owner = getattr(agent, "_obj", agent)  # an agent instance given by user code
        tool = (getattr(owner, "tools", None) or {}).get(name)
        if tool is None:
            raise BackendError("tool", ErrorCode.INVALID_CONFIG, f"no tool named {name!r}")
        result = tool(**arguments)
        return await result if inspect.isawaitable(result) else result


# Pool methods are the registry's and the supervisor's, never a client's.
_POOL_METHODS = frozenset({"warm", "start", "close", "call", "memory_mb"})
