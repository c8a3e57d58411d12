"""The ingress replica's view of the registry's config, API keys and hooks: cached here, so a
request needs at most one registry call, and refreshed whenever the registry says another replica
changed them (its revision numbers). Mixed into `ControlPlane`.
"""

from __future__ import annotations

import logging
from typing import Any

from actors import observability
from actors.hooks import load_hook
from actors.profile import placements
from backend.auth import Credentials, Principal, authenticate, refuse_all
from backend.errors import BackendError, ErrorCode
from backend.iface import Config, PipelineType
from providers.backend import BackendProvider
from providers.registry import BACKENDS

log = logging.getLogger(__name__)


class ConfigViewMixin:
    registry: Any
    provider: BackendProvider
    provider_name: str
    _config: Config
    _rev: int
    _hooks: dict[str, bytes]
    _hooks_rev: int
    _auth_hook: Any

    def cache_config(
        self, values: dict[str, Any], provider: BackendProvider | None = None
    ) -> Config:
        values = dict(values)
        self._rev = values.pop("_rev", -1)
        config = Config(**values)
        if provider is not None:
            self.provider = provider
        elif config.provider_config != self._config.provider_config:
            # Another replica's update_config changed the provider's options: run with them here
            # too (they were validated where they were applied).
            self.provider = BACKENDS.create(self.provider_name, config.provider_config)
        self._config = config
        observability.configure_ingress(self._config, self.provider_name)
        return self._config

    async def apply_config(self, config: Config) -> Config:
        if config.provider != self.provider_name:
            raise BackendError(
                "update_config",
                ErrorCode.INVALID_CONFIG,
                f"provider: this backend runs {self.provider_name!r}; a new provider needs a new "
                "deployment",
                field="provider",
            )
        provider = BACKENDS.create(config.provider, config.provider_config)  # validates keys
        _check_placements(config)
        if config.pipeline_type is PipelineType.STT_TTS:
            provider.check_stage_providers(config.stt_provider, config.tts_provider)
        applied = await self.registry.configure.remote(config.model_dump(mode="json"))
        return self.cache_config(applied, provider)

    @property
    def cached_config(self) -> Config:
        """The config as this replica last saw it, without asking the registry: for what is
        read per connection (relay limits), where a round trip would cost every call."""
        return self._config

    async def config(self) -> Config:
        """The registry's config is the truth: another replica may have updated it."""
        return self.cache_config(await self.registry.get_config.remote())

    # -- security (backend/auth.py) --------------------------------------------------------
    def _take_hooks(self, view: dict[str, Any]) -> None:
        if "hooks" in view:
            self._hooks = view["hooks"]
            try:
                self._auth_hook = load_hook(self._hooks.get("auth_hook"))
            except Exception as exc:  # fail closed: refuse requests rather than let them in
                log.error("auth_hook could not be loaded here: %s", type(exc).__name__)
                self._auth_hook = refuse_all
        self._hooks_rev = view.get("hooks_rev", self._hooks_rev)

    async def authenticate(self, creds: Credentials) -> Principal:
        """The caller of an HTTP request; the registry's keys and hooks are the truth, so a key
        revoked through any replica is refused by all of them at once."""
        view = await self.registry.auth_view.remote(self._rev, self._hooks_rev)
        if "config" in view:
            self.cache_config(view["config"])
        self._take_hooks(view)
        return await authenticate(creds, self._config.api_keys, self._auth_hook)

    async def set_hooks(self, hooks: dict[str, bytes]) -> int:
        return await self.registry.set_hooks.remote(hooks)


def _check_placements(config: Config) -> None:
    """A stage placed where it cannot run is refused by name when the config is applied; an
    unknown provider is refused when a session needs it (as before placements existed)."""
    try:
        placements(config)
    except BackendError as err:
        if err.code is not ErrorCode.PROVIDER_NOT_FOUND:
            raise
