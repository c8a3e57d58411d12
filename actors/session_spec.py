"""What the control plane hands a session worker to start a call: the session's spec, and the
pipeline settings derived from the backend's config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backend.iface import Config, PipelineType
from pipelines.endpointing import EndpointingConfig
from pipelines.stt_tts import PipelineSettings
from providers.backend import TransportSpec
from providers.retry import RetryPolicy


@dataclass
class SessionSpec:
    """Everything a session needs beyond the worker's profile, built by the supervisor."""

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
    trace_context: dict[str, str] = field(default_factory=dict)  # W3C traceparent of the create
    retention_hook: bytes | None = None  # the cloudpickled data_retention_hook, run at close
    # Serve the call's websocket from this process (`actors/media/server.py`): the media token
    # record it checks, and what one connection may cost.
    direct_media: dict[str, Any] | None = None


def settings_from(config: Config, output_sample_rate_hz: int) -> PipelineSettings:
    return PipelineSettings(
        output_sample_rate_hz=output_sample_rate_hz,
        latency_target_s=config.latency_target,
        endpointing=EndpointingConfig(min_silence_s=config.min_endpointing_delay),
        max_endpointing_delay_s=config.max_endpointing_delay,
        stt_early_finish_s=config.stt_early_finish_s,
        allow_interruptions=config.allow_interruptions,
        min_interruption_s=config.min_interruption_duration,
        retry=RetryPolicy(
            timeout_s=config.timeout,
            max_retries=config.max_retries,
            retry_delay_s=config.retry_delay,
        ),
    )
