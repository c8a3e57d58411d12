"""What a session worker loads, and where each of its stages runs (stage placement).

Pure: no Ray. The registry turns a `Config` into a `WorkerProfile`; workers whose profile matches
the running one are interchangeable, so a config change makes old workers drain out of the pool.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from backend.errors import BackendError, ErrorCode
from backend.iface import Config, PipelineType
from providers.backend import BackendProvider
from providers.registry import BACKENDS, S2S_PROVIDERS, STT_PROVIDERS, TTS_PROVIDERS, VAD_PROVIDERS

log = logging.getLogger(__name__)

DEFAULT_S2S_PROVIDER = "local"  # s2s sessions on a backend configured without an s2s provider
PLACEMENTS = ("inline", "node", "session")
NODE_PLACEABLE = frozenset({"stt"})  # stages a node-shared host can serve (streams, no turns)


def stage_options(provider: BackendProvider, config: Config) -> dict[str, dict[str, Any]]:
    """Constructor options per stage provider: the backend provider's, then the config's."""
    merged = {name: dict(values) for name, values in provider.stage_options().items()}
    for name, values in config.stage_provider_config.items():
        merged[name] = {**merged.get(name, {}), **values}
    return merged


def resolve_placement(kind: str, requested: str, provider_class: Any) -> str:
    """`auto` becomes what the provider declares; `node` is refused where a shared host cannot
    serve the stage (a TTS's turns and an s2s connection belong to one call)."""
    placement = getattr(provider_class, "placement", "inline") if requested == "auto" else requested
    if placement not in PLACEMENTS:
        raise BackendError(
            "config", ErrorCode.INVALID_CONFIG, f"{kind}_placement: unknown {placement!r}"
        )
    if placement == "node" and kind not in NODE_PLACEABLE:
        if requested == "node":
            raise BackendError(
                "config",
                ErrorCode.INVALID_CONFIG,
                f"{kind}_placement: 'node' is offered for STT only; use 'inline' or 'session'",
                field=f"{kind}_placement",
            )
        placement = "session"
    return placement


def placements(config: Config) -> dict[str, str]:
    """Where stt, tts and s2s run under `config` (provider classes are imported, not built)."""
    return {
        "stt": resolve_placement(
            "stt", config.stt_placement, STT_PROVIDERS.resolve(config.stt_provider or "")
        ),
        "tts": resolve_placement(
            "tts", config.tts_placement, TTS_PROVIDERS.resolve(config.tts_provider or "")
        ),
        "s2s": resolve_placement(
            "s2s",
            config.s2s_placement,
            S2S_PROVIDERS.resolve(config.s2s_provider or DEFAULT_S2S_PROVIDER),
        ),
    }


def cpu_cores_per_call(config: Config) -> float:
    """The CPU share one talking call declares, for the stages this node runs for it."""
    if config.pipeline_type is PipelineType.S2S:
        s2s = S2S_PROVIDERS.resolve(config.s2s_provider or DEFAULT_S2S_PROVIDER)
        return float(getattr(s2s, "cpu_cores_per_call", 0.0))
    stt = STT_PROVIDERS.resolve(config.stt_provider or "")
    tts = TTS_PROVIDERS.resolve(config.tts_provider or "")
    return float(getattr(stt, "cpu_cores_per_call", 0.0) + getattr(tts, "cpu_cores_per_call", 0.0))


@dataclass(frozen=True)
class WorkerProfile:
    """What a warm worker has loaded, and where its stages run."""

    stt_provider: str
    tts_provider: str
    vad_provider: str
    stage_options: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False)
    stage_spares: bool = False  # a loaded spare of each session stage (`stage_failover.py`)
    placements: dict[str, str] = field(default_factory=dict, hash=False)

    @classmethod
    def from_config(cls, config: Config, options: dict[str, dict[str, Any]]) -> WorkerProfile:
        return cls(
            config.stt_provider or "",
            config.tts_provider or "",
            config.vad_provider,
            options,
            config.stage_spares,
            placements(config),
        )

    def placement(self, kind: str) -> str:
        return self.placements.get(kind, "session")

    @property
    def node_stages(self) -> dict[str, str]:
        """Stage kind → provider for the stages a node-shared host serves."""
        names = {"stt": self.stt_provider, "tts": self.tts_provider}
        return {k: names[k] for k in ("stt", "tts") if self.placement(k) == "node"}

    @property
    def key(self) -> str:
        return json.dumps(
            [
                self.stt_provider,
                self.tts_provider,
                self.vad_provider,
                self.stage_options,
                self.stage_spares,
                self.placements,
            ],
            sort_keys=True,
            default=str,
        )

    def host_key(self, kind: str) -> str:
        """What a node's stage host for `kind` is shared over: provider and its options."""
        provider = self.stt_provider if kind == "stt" else self.tts_provider
        return json.dumps(
            [kind, provider, self.stage_options.get(provider, {})], sort_keys=True, default=str
        )


def profile_for(config: Config) -> WorkerProfile | None:
    """The workers this config needs, or None if one of its providers cannot be loaded."""
    try:
        for registry, name in (
            (STT_PROVIDERS, config.stt_provider),
            (TTS_PROVIDERS, config.tts_provider),
            (VAD_PROVIDERS, config.vad_provider),
        ):
            registry.resolve(name or "")
        options = stage_options(BACKENDS.create(config.provider, config.provider_config), config)
    except BackendError as err:
        log.warning("warm pool paused: %s", err)
        return None
    return WorkerProfile.from_config(config, options)


def cpu_share_or_zero(config: Config) -> float:
    """What one call costs in cores (0 when a provider cannot be loaded: admission pauses)."""
    try:
        return cpu_cores_per_call(config)
    except BackendError:
        return 0.0


def hosts_wanted(profile: WorkerProfile | None) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """The node-shared hosts a profile needs: host key -> (kind, provider, options)."""
    if profile is None:
        return {}
    return {
        profile.host_key(kind): (kind, provider, profile.stage_options.get(provider, {}))
        for kind, provider in profile.node_stages.items()
    }
