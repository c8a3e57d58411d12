"""`provider_config` of the livekit provider, with the seed's environment fallbacks.

This is the one place that reads `LIVEKIT_URL` / `LIVEKIT_API_KEY` / `LIVEKIT_API_SECRET`: a key
given in `provider_config` wins, a missing one is taken from the environment of the process that
builds the provider (the ingress), and still missing is an `invalid_config` error naming it.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator, model_validator

from providers.backend import ProviderConfig

ENV_VARS = {"url": "LIVEKIT_URL", "api_key": "LIVEKIT_API_KEY", "api_secret": "LIVEKIT_API_SECRET"}
ROOM_PREFIX = "voice-"  # per-session rooms are named voice-<session id>


class LiveKitConfig(ProviderConfig):
    url: str | None = Field(default=None, validate_default=True)
    api_key: str | None = Field(default=None, validate_default=True)
    api_secret: SecretStr | None = Field(default=None, validate_default=True)
    room_name: str | None = Field(default=None, min_length=1, max_length=128)
    # The user's join token is short-lived: it only has to last until the client joins.
    token_ttl_s: float = Field(default=600.0, ge=10.0, le=86400.0)
    # The agent's token lasts the call, so it can rejoin after a network loss.
    agent_token_ttl_s: float = Field(default=6 * 3600.0, ge=60.0, le=7 * 86400.0)
    # How long a room the backend created lives on once empty (LiveKit's own GC).
    empty_timeout_s: int = Field(default=60, ge=1, le=86400)
    # A user who drops without leaving (network loss) has this long to come back.
    rejoin_grace_s: float = Field(default=10.0, ge=0.0, le=300.0)

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        filled = dict(values)
        for key, var in ENV_VARS.items():
            if filled.get(key) in (None, "") and os.environ.get(var):
                filled[key] = os.environ[var]
        return filled

    @field_validator("url", "api_key", "api_secret")
    @classmethod
    def _required(cls, v: Any, info: Any) -> Any:
        if v is None or (isinstance(v, SecretStr) and not v.get_secret_value()) or v == "":
            name = info.field_name
            raise ValueError(f"required: set provider_config.{name} or {ENV_VARS[name]}")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parsed = urlparse(v)
        if parsed.scheme not in ("ws", "wss", "http", "https") or not parsed.netloc:
            raise ValueError("must be a ws://, wss://, http:// or https:// URL with a host")
        return v

    @property
    def ws_url(self) -> str:
        """What rtc clients connect to (LiveKit accepts http(s) too, but ws(s) is the norm)."""
        url = self.url or ""
        return url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)

    @property
    def http_url(self) -> str:
        """Where the server API (RoomService, Twirp over HTTP) listens."""
        url = self.url or ""
        return url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)

    def room_for(self, session_id: str) -> str:
        return self.room_name or f"{ROOM_PREFIX}{session_id}"

    def secret(self) -> str:
        return self.api_secret.get_secret_value() if self.api_secret else ""


def user_identity(session_id: str) -> str:
    """Unique per session even in a shared room, so events map back to their session."""
    return f"user-{session_id}"


def agent_identity(session_id: str) -> str:
    return f"agent-{session_id}"


def session_of(identity: str) -> str | None:
    for prefix in ("user-", "agent-"):
        if identity.startswith(prefix):
            return identity[len(prefix) :] or None
    return None
