"""`SessionActor`: one voice call, isolated in its own Ray actor (named `session:<id>`, detached,
holding one `voice_session` unit). It wraps `SessionRuntime` and starts its stage actors on its
own node; it never parses provider wire formats.

VAD and resampling run inside this actor: they cost microseconds per frame, far less than an
actor hop (2.4 ms, DESIGN.md).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import ray
from opentelemetry import trace

from actors.metrics import record_turn
from actors.stage_actors import placement, start_s2s_stage, start_stages
from backend.errors import BackendError, ErrorCode
from backend.iface import Config, PipelineType
from pipelines.endpointing import EndpointingConfig
from pipelines.session import SessionRuntime
from pipelines.stt_tts import PipelineSettings
from pipelines.transports.base import MediaTransport
from pipelines.transports.webrtc import WebRtcOptions, WebRtcTransport
from providers.agents import build_agent
from providers.backend import TransportSpec
from providers.base import S2sOptions
from providers.registry import TRANSPORTS, TURN_DETECTORS, VAD_PROVIDERS
from providers.retry import RetryPolicy

log = logging.getLogger(__name__)

SESSION_RESOURCE = "voice_session"
DEFAULT_S2S_PROVIDER = "local"  # s2s sessions on a backend configured without an s2s provider


@dataclass
class SessionSpec:
    """Everything a session actor needs, built by the supervisor after admission."""

    session_id: str
    user_id: str
    config: dict[str, Any]  # Config.model_dump()
    sample_rate_hz: int
    output_sample_rate_hz: int
    namespace: str
    pipeline_type: str = PipelineType.STT_TTS.value
    stage_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    agent_spec: dict[str, Any] | None = None
    agent_callback: Any = None  # shipped with cloudpickle; runs inside this actor
    agent_instance: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    transport: str = "websocket"
    transport_options: dict[str, Any] = field(default_factory=dict)  # e.g. WebRtcOptions
    agent_transport: TransportSpec | None = None  # media this actor joins itself (LiveKit room)


def settings_from(config: Config, output_sample_rate_hz: int) -> PipelineSettings:
    return PipelineSettings(
        output_sample_rate_hz=output_sample_rate_hz,
        latency_target_s=config.latency_target,
        endpointing=EndpointingConfig(min_silence_s=config.min_endpointing_delay),
        max_endpointing_delay_s=config.max_endpointing_delay,
        allow_interruptions=config.allow_interruptions,
        min_interruption_s=config.min_interruption_duration,
        retry=RetryPolicy(
            timeout_s=config.timeout,
            max_retries=config.max_retries,
            retry_delay_s=config.retry_delay,
        ),
    )


@ray.remote(num_cpus=0, max_restarts=0)
class SessionActor:
    def __init__(self, spec: SessionSpec) -> None:
        self.spec = spec
        self.runtime: SessionRuntime | None = None
        # A transport terminated here: webrtc, or the one the backend provider names (LiveKit).
        self.media: MediaTransport | Any = None

    async def start(self) -> dict[str, Any]:
        """Load the pipeline: stage actors on this node, VAD, agent. Returns where it runs."""
        spec = self.spec
        config = Config(**spec.config)
        agent = build_agent(spec.agent_callback, spec.agent_instance, spec.agent_spec)
        tracer = trace.get_tracer("voice_backend") if config.enable_tracing else None
        common: dict[str, Any] = {
            "session_id": spec.session_id,
            "user_id": spec.user_id,
            "input_sample_rate_hz": spec.sample_rate_hz,
            "settings": settings_from(config, spec.output_sample_rate_hz),
            "agent": agent,
            "metadata": spec.metadata,
            "tracer": tracer,
            "on_turn": self._turn_observer(config, spec.pipeline_type),
        }
        if spec.pipeline_type == PipelineType.S2S.value:
            s2s_provider = config.s2s_provider or DEFAULT_S2S_PROVIDER
            s2s, stages = await start_s2s_stage(
                spec.session_id, spec.namespace, s2s_provider, spec.stage_options
            )
            self.runtime = SessionRuntime(
                **common,
                s2s=s2s,
                s2s_options=S2sOptions(min_silence_s=config.min_endpointing_delay),
                trace_attributes={"user.id": spec.user_id, "s2s.provider": s2s_provider},
            )
        else:
            stt, tts, stages = await start_stages(
                spec.session_id,
                spec.namespace,
                config.stt_provider or "",
                config.tts_provider or "",
                spec.stage_options,
            )
            self.runtime = SessionRuntime(
                **common,
                vad=VAD_PROVIDERS.create(config.vad_provider),
                stt=stt,
                tts=tts,
                turn_detection=TURN_DETECTORS.create(config.turn_detection_provider),
                trace_attributes={
                    "user.id": spec.user_id,
                    "stt.provider": config.stt_provider or "",
                    "tts.provider": config.tts_provider or "",
                },
            )
        if spec.agent_transport is not None:
            t = spec.agent_transport
            self.media = TRANSPORTS.create(t.name, **t.options, on_closed=self._peer_gone)
            await self.media.start(self.runtime)
        return {**placement(), "stages": stages}

    @staticmethod
    def _turn_observer(config: Config, pipeline: str) -> Any:
        if not config.enable_metrics:
            return None
        provider = (
            config.s2s_provider or DEFAULT_S2S_PROVIDER
            if pipeline == PipelineType.S2S.value
            else f"{config.stt_provider}+{config.tts_provider}"
        )
        tags = {"provider": provider, "pipeline": pipeline}
        return lambda turn: record_turn(turn, config.latency_target, tags)

    def _rt(self) -> SessionRuntime:
        if self.runtime is None:
            raise BackendError("session", ErrorCode.SESSION_NOT_ACTIVE, "session is not started")
        return self.runtime

    # -- media -----------------------------------------------------------------------------
    def start_media(self) -> str:
        self._rt().start()
        return self._rt().state.value

    def push_audio(self, frames: list[bytes]) -> list[dict[str, Any]]:
        return self._rt().push_audio(frames)

    def send_audio(self, pcm16: bytes) -> None:
        self._rt().send_audio(pcm16)

    async def webrtc_offer(self, sdp: str, sdp_type: str = "offer") -> dict[str, str]:
        """Terminate the client's peer connection here; returns the SDP answer."""
        rt = self._rt()
        if self.spec.transport != "webrtc":
            raise BackendError(
                "webrtc.offer",
                ErrorCode.INVALID_CONFIG,
                f"transport: this session uses {self.spec.transport}, not webrtc",
                field="transport",
            )
        if self.media is not None:
            raise BackendError(
                "webrtc.offer", ErrorCode.SESSION_ALREADY_ACTIVE, "a peer is already connected"
            )
        transport = WebRtcTransport(
            WebRtcOptions(**self.spec.transport_options), on_closed=self._peer_gone
        )
        self.media = transport
        try:
            await transport.start(rt)
            return await transport.answer(sdp, sdp_type)
        except BaseException:
            self.media = None
            await transport.aclose()
            raise

    async def _peer_gone(self, reason: str) -> None:
        """The peer (WebRTC, or the user of a LiveKit room) left: end the session, free its
        slot, and exit this actor (which also ends its stage actors). The registry hands the
        record to the supervisor, which releases the provider's side, as for a reaped session."""
        from actors.registry import REGISTRY_NAME  # the registry module imports this one

        log.info("session %s: %s; ending the session", self.spec.session_id, reason)
        with contextlib.suppress(Exception):
            registry = ray.get_actor(REGISTRY_NAME, namespace=self.spec.namespace)
            await registry.session_ended.remote(self.spec.session_id, reason)
        await self.close(reason)
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    async def poll(
        self, audio: bool = True, events: bool = True, timeout_s: float = 10.0
    ) -> dict[str, Any]:
        return await self._rt().outbox.poll(audio=audio, events=events, timeout_s=timeout_s)

    # -- control ---------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return self._rt().info()

    def ping(self) -> str:
        return self.runtime.state.value if self.runtime else "starting"

    def set_agent(self, callback: Any = None, instance: Any = None, spec: Any = None) -> None:
        self._rt().set_agent(build_agent(callback, instance, spec))

    def update_metadata(self, values: dict[str, Any]) -> dict[str, Any]:
        return self._rt().update_metadata(values)

    # -- hosted speech (Vapi): the call's service sends text turns, we answer them -----------
    async def agent_turn(self, text: str) -> AsyncIterator[str]:
        """One agent turn from a transcript, streamed; kept in the history and the events."""
        rt = self._rt()
        rt.start()
        rt.outbox.put_event({"type": "transcript", "text": text, "final": True, "source": "vapi"})
        rt.ctx.history.append({"role": "user", "content": text})
        parts: list[str] = []
        async for piece in rt.pipeline.agent.stream(text, rt.ctx):
            parts.append(piece)
            yield piece
        reply = "".join(parts).strip()
        rt.ctx.history.append({"role": "assistant", "content": reply})
        rt.outbox.put_event({"type": "agent_reply", "text": reply, "source": "vapi"})

    def add_event(self, event: dict[str, Any]) -> None:
        self._rt().outbox.put_event(event)

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        """Run one of the agent's tools (`agent.tools`: name → sync or async callable)."""
        agent = self._rt().pipeline.agent
        owner = getattr(agent, "_obj", agent)  # an agent instance given by user code
        tool = (getattr(owner, "tools", None) or {}).get(name)
        if tool is None:
            raise BackendError("tool", ErrorCode.INVALID_CONFIG, f"no tool named {name!r}")
        result = tool(**arguments)
        return await result if inspect.isawaitable(result) else result

    async def close(self, reason: str = "closed") -> None:
        if self.runtime is not None:
            await self.runtime.aclose(reason)
        if self.media is not None:
            await self.media.aclose()
