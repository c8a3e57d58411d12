"""Backend provider contract: what differs between local, LiveKit, Vapi, ... at the session level.

`open_session` runs only after admission, so a refused session never creates a remote resource
(a known fault of the Go original); `close_session` undoes it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from backend.errors import BackendError, ErrorCode
from backend.iface import MediaInfo, ProviderCapabilities
from providers.wire import SessionMedia, WireCodec


class ProviderConfig(BaseModel):
    """Base of every provider's `provider_config` model: unknown keys are errors, not ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class TransportSpec:
    """A media transport the session actor runs itself, e.g. joining a LiveKit room as the agent:
    `name` is a key of `providers.registry.TRANSPORTS`, `options` its constructor's options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookUpdate:
    """A verified provider webhook, reduced to what it means for sessions."""

    # user_dropped: lost by the network, may come back; user_left: gone on purpose
    kind: Literal["user_joined", "user_left", "user_dropped", "room_finished", "ignored"]
    event: str
    session_id: str | None = None  # None: every session in `room`
    room: str | None = None


class BackendProvider(ABC):
    name: ClassVar[str]
    config_model: ClassVar[type[ProviderConfig]] = ProviderConfig

    def __init__(self, provider_config: dict[str, Any] | None = None) -> None:
        self.config = self.parse_config(provider_config or {})

    @classmethod
    def parse_config(cls, values: dict[str, Any]) -> ProviderConfig:
        try:
            return cls.config_model(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err.get("loc", ()))
            raise BackendError(
                f"{cls.name}.config",
                ErrorCode.INVALID_CONFIG,
                f"provider_config.{key}: {str(err.get('msg')).removeprefix('Value error, ')}",
                field=f"provider_config.{key}",
            ) from None

    @abstractmethod
    def capabilities(self) -> ProviderCapabilities: ...

    @abstractmethod
    async def open_session(self, session_id: str, user_id: str, media_base_url: str) -> MediaInfo:
        """Create whatever the session needs outside this cluster; return where media connects."""

    async def close_session(self, session_id: str) -> None:
        return None

    def check_stage_providers(self, stt_provider: str | None, tts_provider: str | None) -> None:
        """Refuse stage providers this backend cannot run (`invalid_config` naming the field)."""
        return None

    def wire_codec(self, media: SessionMedia) -> WireCodec | None:
        """The wire format of this provider's session websockets, one codec per connection;
        None: the native protocol (binary PCM16 + JSON events)."""
        return None

    async def media_upstream(self, session_id: str, user_id: str) -> str | None:
        """A websocket URL to relay this client connection to, byte for byte, instead of the
        session's own pipeline (a bot elsewhere); None: the session's pipeline answers."""
        return None

    def stage_options(self) -> dict[str, dict[str, Any]]:
        """Constructor options for stage providers, keyed by stage provider name."""
        return {}

    def webrtc_options(self) -> dict[str, Any]:
        """For sessions whose transport is webrtc: `ice_servers` (STUN/TURN, as in the browser's
        RTCIceServer) and `host_addresses` (local addresses to offer; None: all but loopback)."""
        return {}

    def agent_transport(self, session_id: str, user_id: str) -> TransportSpec | None:
        """A transport for the session actor to run (after `open_session`); None when the
        client connects to this backend itself (websocket)."""
        return None

    def receive_webhook(self, body: str, authorization: str) -> WebhookUpdate:
        """Verify and decode a webhook from the provider's service."""
        raise BackendError(
            f"{self.name}.webhook",
            ErrorCode.INVALID_CONFIG,
            f"provider: {self.name!r} takes no webhooks",
            field="provider",
        )

    async def check_health(self) -> dict[str, Any]:
        """Reachability of the provider's remote side, for `health_check` details."""
        return {"reachable": True}
