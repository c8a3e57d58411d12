"""The public types of the voice backend (the counterpart of Beluga's `backend/iface`).

Models validate on construction and raise `BackendError(code="invalid_config")` naming the field,
so Python callers and the HTTP API (422) see the same message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from backend.errors import BackendError, ErrorCode
from backend.secret_masking import mask_secrets

__all__ = [
    "BackendError",
    "Config",
    "ConnectionState",
    "ErrorCode",
    "HealthStatus",
    "MediaInfo",
    "PipelineState",
    "PipelineType",
    "ProviderCapabilities",
    "SessionConfig",
    "SessionInfo",
    "SessionRequest",
]


class PipelineType(StrEnum):
    STT_TTS = "stt_tts"
    S2S = "s2s"


class PipelineState(StrEnum):
    IDLE = "idle"
    LISTENING = "listening"
    PROCESSING = "processing"
    SPEAKING = "speaking"
    CLOSED = "closed"


class ConnectionState(StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    ERROR = "error"


SUPPORTED_SAMPLE_RATES_HZ = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def _seconds(value: Any) -> Any:
    """Durations accept seconds (int/float) or a `timedelta`, as the seed's `time.Duration`."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def _first_error(exc: ValidationError) -> tuple[str | None, str]:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ())) or None
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return field, (f"{field}: {msg}" if field else msg)


class _Model(BaseModel):
    """Base that turns pydantic's ValidationError into the project's one error family."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=False)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            field, msg = _first_error(exc)
            raise BackendError(
                f"{type(self).__name__.lower()}.validate",
                ErrorCode.INVALID_CONFIG,
                msg,
                field=field,
            ) from None

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Any:
        return cls(**data)


StagePlacement = Literal["auto", "inline", "node", "session"]


class Config(_Model):
    """Backend configuration; field names and defaults follow the seed's `iface.Config`."""

    provider: str = "local"
    pipeline_type: PipelineType = PipelineType.STT_TTS
    stt_provider: str | None = "pocketsphinx"
    tts_provider: str | None = "espeak"
    s2s_provider: str | None = None
    vad_provider: str = "silero"
    turn_detection_provider: str = "vad"
    provider_config: dict[str, Any] = Field(default_factory=dict)
    # Options of stage providers (stt, tts, s2s, vad), keyed by their name, e.g.
    # {"cartesia": {"api_key": ..., "voice_id": ...}}; merged over the backend provider's own.
    stage_provider_config: dict[str, dict[str, Any]] = Field(default_factory=dict)
    max_concurrent_sessions: int = Field(default=100, ge=0)
    latency_target: float = Field(default=0.5, ge=0.1, le=5.0, description="seconds")
    timeout: float = Field(default=30.0, ge=1.0, le=300.0, description="seconds")
    max_retries: int = Field(default=3, ge=0, le=10)
    retry_delay: float = Field(default=1.0, ge=0.1, le=30.0, description="seconds")
    # Endpointing: silence that ends a user turn (LiveKit's min/max endpointing delay).
    min_endpointing_delay: float = Field(default=0.5, ge=0.1, le=5.0, description="seconds")
    max_endpointing_delay: float = Field(default=3.0, ge=0.1, le=10.0, description="seconds")
    # Barge-in: the user speaking over the agent for this long interrupts it; shorter is a
    # backchannel ("yeah", "ok") and the agent goes on.
    allow_interruptions: bool = True
    min_interruption_duration: float = Field(default=0.5, ge=0.05, le=5.0, description="seconds")
    # Silence after which the STT is asked for its transcript, while the endpointing delay is
    # still confirming the turn (the pipeline's early finish); 0 or None: only once it has.
    # Only takes effect below the turn's endpointing delay.
    stt_early_finish_s: float | None = Field(default=0.15, ge=0.0, le=10.0, description="seconds")
    health_check_interval: float = Field(default=5.0, ge=0.2, le=300.0, description="seconds")
    # Warm pool (per node): idle session workers with their models loaded, so a new session
    # binds in milliseconds instead of starting three processes (~1 s each).
    warm_pool_size: int = Field(default=2, ge=0, le=1000, description="idle workers per node")
    warm_pool_max_starting: int = Field(
        default=2, ge=1, le=64, description="workers starting at once per node, for the pool"
    )
    worker_max_sessions: int = Field(
        default=50, ge=1, le=1_000_000, description="recycle a worker after this many sessions"
    )
    worker_max_memory_mb: int = Field(
        default=1024,
        ge=0,
        le=1_000_000,
        description="recycle a worker whose processes (session + stages) hold more RSS; 0: never",
    )
    enable_tracing: bool = False
    enable_metrics: bool = True
    enable_structured_logging: bool = False
    # OTLP/HTTP traces URL (http://collector:4318/v1/traces) or "console"; None: each process's
    # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT (backend/tracing.py).
    tracing_endpoint: str | None = Field(default=None, max_length=2048)
    # -- security (backend/auth.py; README "Security") ------------------------------------
    # Control-plane API keys; none = an open API (the dev default). Kept as SHA-256 digests
    # from validation on, so a dump of the config never holds a key. "k1=alice,k2" binds k1 to
    # user alice (it sees and closes only her sessions); k2 is a service key (any user).
    api_keys: list[dict[str, Any]] = Field(default_factory=list, repr=False)
    media_token_ttl: float = Field(
        default=300.0, ge=1.0, le=86_400.0, description="seconds a session's media token opens it"
    )
    max_sessions_per_user: int = Field(default=0, ge=0, description="0: unlimited")
    session_rate_per_user: float = Field(
        default=0.0, ge=0.0, le=1_000_000.0, description="sessions a user may create per minute"
    )
    retain_transcripts: bool = True  # hand the transcript to the data_retention_hook at close
    max_request_body_bytes: int = Field(default=1 << 20, ge=1024, le=1 << 30)
    max_frame_bytes: int = Field(default=256 * 1024, ge=1024, le=16 << 20)
    client_stall_timeout: float = Field(
        default=120.0,
        ge=1.0,
        le=86_400.0,
        description="seconds a websocket client may send nothing (audio or ping) before its "
        "session is closed",
    )
    # Faults (issue 9). A spare STT and TTS stage per worker, loaded and waiting, take over
    # from a stage whose process died in a fraction of Ray's ~1 s restart; it costs two more
    # processes per worker, so it is off by default.
    stage_spares: bool = False
    # Where each stage runs (README "Stage placement"): `inline` in the session's own process,
    # `node` in one shared stage host per node and model, `session` in the session's own pinned
    # stage actor (isolation). `auto`: what the stage's provider declares (heavy local models
    # `node`, network clients and cheap local synthesis `inline`).
    stt_placement: StagePlacement = "auto"
    tts_placement: StagePlacement = "auto"
    s2s_placement: StagePlacement = "auto"
    # Load-aware admission: a node admits local-model calls only while their declared CPU share
    # (the provider's `cpu_cores_per_call`) stays within this fraction of its CPUs; 0: no limit.
    speech_load_threshold: float = Field(default=0.75, ge=0.0, le=100.0)
    # Media straight into the session: a call's websocket is served by its own session process
    # (`media.url` names the session's node), with the Serve port's route as `media.fallback_url`.
    media_direct: bool = True
    # Ports the session processes listen on ("20000-20999"; "" = any free port): open this range
    # between clients and the nodes (KubeRay: the worker pods' container ports).
    media_port_range: str = Field(default="", pattern=r"^(\d{1,5}(-\d{1,5})?)?$")
    # Shutting the backend down: admission stops, live calls get this long to end on their
    # own, then they are closed with the reason "drain timeout".
    drain_timeout: float = Field(default=30.0, ge=0.0, le=3600.0, description="seconds")
    # Circuit breaker of hosted provider calls: open after this many failures in a row, then
    # let one trial call through after the cool-down.
    circuit_failure_threshold: int = Field(default=5, ge=1, le=1000)
    circuit_reset_timeout: float = Field(default=30.0, ge=0.1, le=3600.0, description="seconds")

    _durations = field_validator(
        "latency_target",
        "timeout",
        "retry_delay",
        "min_endpointing_delay",
        "max_endpointing_delay",
        "min_interruption_duration",
        "stt_early_finish_s",
        "health_check_interval",
        "media_token_ttl",
        "client_stall_timeout",
        "drain_timeout",
        "circuit_reset_timeout",
        mode="before",
    )(_seconds)

    @field_validator("stt_early_finish_s")
    @classmethod
    def _early_finish_off(cls, v: float | None) -> float | None:
        return v or None  # 0 would finish at every frame of speech: it means off

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys(cls, v: Any) -> list[dict[str, Any]]:
        from backend.auth import parse_api_keys

        return parse_api_keys(v)

    @field_validator("provider", "vad_provider", "turn_detection_provider")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    @model_validator(mode="after")
    def _pipeline_providers(self) -> Config:
        if self.pipeline_type is PipelineType.STT_TTS:
            for name in ("stt_provider", "tts_provider"):
                if not getattr(self, name):
                    raise BackendError(
                        "config.validate",
                        ErrorCode.INVALID_CONFIG,
                        f"{name}: required when pipeline_type is stt_tts",
                        field=name,
                    )
        elif not self.s2s_provider:
            raise BackendError(
                "config.validate",
                ErrorCode.INVALID_CONFIG,
                "s2s_provider: required when pipeline_type is s2s",
                field="s2s_provider",
            )
        if self.max_endpointing_delay < self.min_endpointing_delay:
            raise BackendError(
                "config.validate",
                ErrorCode.INVALID_CONFIG,
                "max_endpointing_delay: must be >= min_endpointing_delay",
                field="max_endpointing_delay",
            )
        return self

    def public_dict(self) -> dict[str, Any]:
        """The config as shown to users: secrets in provider options are masked."""
        data = self.model_dump(mode="json")
        data["provider_config"] = mask_secrets(self.provider_config)
        data["stage_provider_config"] = {
            name: mask_secrets(values) for name, values in self.stage_provider_config.items()
        }
        data["api_keys"] = [{**k, "key_sha256": "***"} for k in data["api_keys"]]
        return data


AgentCallback = Callable[[str], Any]  # sync or async: transcript -> reply text


class SessionRequest(_Model):
    """The JSON part of a session's settings: the body of `POST /v1/sessions`."""

    user_id: str = Field(min_length=1, max_length=256)
    transport: Literal["websocket", "webrtc"] = "websocket"
    connection_url: str | None = None
    pipeline_type: PipelineType = PipelineType.STT_TTS
    agent: dict[str, Any] | None = Field(
        default=None, description='a named agent, e.g. {"type": "echo"} (the HTTP default)'
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    sample_rate_hz: int = Field(
        default=16000, description="rate of the PCM16 audio the client sends"
    )
    output_sample_rate_hz: int = Field(default=16000, description="rate of the reply audio")

    @field_validator("user_id")
    @classmethod
    def _user_id(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v

    @field_validator("connection_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parsed = urlparse(v)
        if parsed.scheme not in ("ws", "wss", "http", "https") or not parsed.netloc:
            raise ValueError("must be a ws://, wss://, http:// or https:// URL with a host")
        return v

    @field_validator("sample_rate_hz", "output_sample_rate_hz")
    @classmethod
    def _rate(cls, v: int) -> int:
        if v not in SUPPORTED_SAMPLE_RATES_HZ:
            raise ValueError(f"must be one of {', '.join(map(str, SUPPORTED_SAMPLE_RATES_HZ))}")
        return v

    @field_validator("agent")
    @classmethod
    def _agent(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and not isinstance(v.get("type"), str):
            raise ValueError('must name a type, e.g. {"type": "echo"}')
        return v


class SessionConfig(SessionRequest):
    """Per-session settings (the seed's `SessionConfig`): the JSON fields plus Python agents."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, arbitrary_types_allowed=True
    )

    agent_callback: AgentCallback | None = Field(default=None, exclude=True)
    agent_instance: Any | None = Field(default=None, exclude=True)

    @field_validator("agent_callback")
    @classmethod
    def _callable(cls, v: Any) -> Any:
        if v is not None and not callable(v):
            raise ValueError("must be callable")
        return v

    @model_validator(mode="after")
    def _needs_agent(self) -> SessionConfig:
        if self.agent_callback is None and self.agent_instance is None and self.agent is None:
            raise BackendError(
                "sessionconfig.validate",
                ErrorCode.INVALID_CONFIG,
                "agent: one of agent_callback, agent_instance or agent is required",
                field="agent",
            )
        return self


class MediaInfo(BaseModel):
    url: str
    token: str
    room: str | None = None  # the LiveKit room, for providers whose media goes through one
    # Where the session's websocket is relayed to, byte for byte (a hosted call's own media
    # socket, e.g. Vapi's `websocketCallUrl`). A credential for that call: never sent to clients.
    upstream_url: str | None = Field(default=None, exclude=True, repr=False)


class SessionInfo(BaseModel):
    """What the supervisor knows of a session; the body of `GET /v1/sessions/{id}`."""

    session_id: str
    user_id: str
    state: PipelineState
    transport: str
    pipeline_type: PipelineType
    provider: str
    media: MediaInfo
    created_at: datetime
    node_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class HealthStatus(_Model):
    status: Literal["healthy", "degraded", "unhealthy"]
    details: dict[str, Any] = Field(default_factory=dict)
    last_check: datetime

    @property
    def healthy(self) -> bool:
        """The seed's `status.Healthy`: true unless unhealthy (degraded still serves)."""
        return self.status != "unhealthy"


class ProviderCapabilities(BaseModel):
    supports_stt_tts: bool = True
    supports_s2s: bool = False
    supports_multi_user: bool = False
    supported_codecs: list[str] = Field(default_factory=lambda: ["pcm16"])
    min_latency: float = 0.0  # seconds
    max_concurrent_sessions: int = 0  # 0: no provider-side limit
