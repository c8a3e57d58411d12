"""Agents: what answers the user. Named agents come from the registry; user code is adapted."""

from __future__ import annotations

from typing import Any

from backend.errors import BackendError, ErrorCode
from providers.agents.callback import CallbackAgent, InstanceAgent
from providers.base import Agent
from providers.registry import AGENTS


def build_agent(
    callback: Any | None = None, instance: Any | None = None, spec: dict[str, Any] | None = None
) -> Agent:
    """One agent from the session's config: a callback wins over an instance over a named agent."""
    if callback is not None:
        return CallbackAgent(callback)
    if instance is not None:
        return instance if isinstance(instance, Agent) else InstanceAgent(instance)
    if spec is None:
        raise BackendError(
            "agent.build", ErrorCode.INVALID_CONFIG, "agent: none given", field="agent"
        )
    options = {k: v for k, v in spec.items() if k != "type"}
    cls = AGENTS.resolve(spec["type"])
    try:
        return cls(**options)
    except TypeError as exc:
        raise BackendError(
            "agent.build",
            ErrorCode.INVALID_CONFIG,
            f"agent: bad options for {spec['type']!r} agent: {exc}",
            field="agent",
        ) from exc
