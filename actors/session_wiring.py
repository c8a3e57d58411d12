"""How a session's config is wired into its worker's process: the timeout, retries and circuit
breaker of the hosted calls made here, and the per-turn metrics."""

from __future__ import annotations

import contextlib
from typing import Any

import ray

from actors.metrics import record_turn
from actors.names import REGISTRY_NAME
from actors.profile import DEFAULT_S2S_PROVIDER
from backend.iface import Config, PipelineType
from providers import resilience
from providers.retry import RetryPolicy


def guard_providers(config: Config, namespace: str, worker_name: str) -> None:
    """This session's guards for its hosted calls (`providers/resilience.py`); breaker changes
    go to the registry, whose health turns `degraded` naming the provider while one is open."""
    resilience.configure(
        RetryPolicy(
            timeout_s=config.timeout,
            max_retries=config.max_retries,
            retry_delay_s=config.retry_delay,
        ),
        resilience.BreakerSettings(config.circuit_failure_threshold, config.circuit_reset_timeout),
    )

    def report(provider: str, state: dict[str, Any]) -> None:  # rare: on state changes
        with contextlib.suppress(Exception):
            registry = ray.get_actor(REGISTRY_NAME, namespace=namespace)
            registry.provider_state.remote(worker_name, provider, state)

    resilience.on_change = report


def turn_observer(config: Config, pipeline: str) -> Any:
    """What records each turn's latency metrics, or None with metrics off."""
    if not config.enable_metrics:
        return None
    provider = (
        config.s2s_provider or DEFAULT_S2S_PROVIDER
        if pipeline == PipelineType.S2S.value
        else f"{config.stt_provider}+{config.tts_provider}"
    )
    tags = {"provider": provider, "pipeline": pipeline}
    return lambda turn: record_turn(turn, config.latency_target, tags)
