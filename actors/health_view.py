"""The ingress's view of health: the registry's report, refreshed in the background while
`GET /v1/health` is asked (every `HEALTH_REFRESH_S`), so a request costs no actor call and no
fan-out; the provider's reachability, cached; and the provider-side cleanup of reaped sessions.
Mixed into `ControlPlane`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from backend.iface import Config
from providers.backend import BackendProvider

log = logging.getLogger(__name__)

HEALTH_REFRESH_S = 0.5  # how old `GET /v1/health`'s report may be (sessions are pinged apart)
HEALTH_IDLE_S = 30.0  # the refresh stops after this long without a health request
PROVIDER_HEALTH_TTL_S = 10.0


class HealthViewMixin:
    registry: Any
    provider: BackendProvider
    provider_name: str
    _config: Config
    _hooks: dict[str, bytes]
    _rev: int
    _hooks_rev: int
    _health_cache: dict[str, Any] | None
    _health_stale: bool
    _health_gen: int
    _health_task: asyncio.Task[None] | None
    _health_wanted_at: float
    _provider_health: tuple[float, dict[str, Any]]
    _reaping: asyncio.Task[None] | None

    def cache_config(self, values: dict[str, Any], provider: Any = None) -> Config:
        raise NotImplementedError

    def _take_hooks(self, view: dict[str, Any]) -> None:
        raise NotImplementedError

    async def cached_health(self) -> dict[str, Any]:
        """The health report for `GET /v1/health`: refreshed in the background while requests
        come (every `HEALTH_REFRESH_S`), so a request costs no actor call and no fan-out; this
        replica's own creates and closes refresh it at once."""
        self._health_wanted_at = time.monotonic()
        if self._health_task is None or self._health_task.done():
            self._health_task = asyncio.create_task(self._refresh_health())
        if self._health_cache is None or self._health_stale:
            self._health_stale = False
            gen = self._health_gen
            report = await self.health()
            if gen == self._health_gen:
                self._health_cache = report
            return report
        return self._health_cache

    def health_changed(self) -> None:
        """This replica created or closed a session: the next request fetches a new report,
        and a refresh already under way (asked before the change) is not kept."""
        self._health_stale = True
        self._health_gen += 1

    async def _refresh_health(self) -> None:
        while time.monotonic() - self._health_wanted_at < HEALTH_IDLE_S:
            await asyncio.sleep(HEALTH_REFRESH_S)
            try:
                gen = self._health_gen
                report = await self.health()
                if gen == self._health_gen:
                    self._health_cache = report
                # Keys or hooks added through another replica close the details here too.
                view = await self.registry.auth_view.remote(self._rev, self._hooks_rev)
                if "config" in view:
                    self.cache_config(view["config"])
                self._take_hooks(view)
            except Exception as exc:  # the registry restarting: serve the last report
                log.warning("health refresh failed: %s", type(exc).__name__)

    def may_skip_auth(self) -> bool:
        """No keys and no hook: the API is open, so a request needs no registry round trip."""
        return not self._config.api_keys and not self._hooks

    async def health(self) -> dict[str, Any]:
        health = await self.registry.health.remote()
        if health["details"]["reaped_total"]:
            self.release_reaped_soon()
        provider = await self._provider_reachability()
        health["details"]["providers"] = {self.provider_name: provider}
        if not provider.get("reachable", False) and health["status"] == "healthy":
            health["status"] = "degraded"
            health["details"]["reasons"].append(f"provider {self.provider_name} unreachable")
        return health

    async def _provider_reachability(self) -> dict[str, Any]:
        at, cached = self._provider_health
        if time.monotonic() - at < PROVIDER_HEALTH_TTL_S and cached:
            return cached
        try:
            async with asyncio.timeout(5.0):
                result = await self.provider.check_health()
        except Exception as exc:
            result = {"reachable": False, "error": str(exc)}
        self._provider_health = (time.monotonic(), result)
        return result

    def release_reaped_soon(self) -> None:
        """Provider-side cleanup of the sessions the health monitor reaped (a LiveKit call's
        room goes, so its user is told the call ended), in the background: off the path of
        the health check, and also run from Serve's periodic replica probe, so it happens
        whether or not anyone polls /v1/health."""
        if self._reaping is None:
            self._reaping = asyncio.create_task(self._release_reaped())
            self._reaping.add_done_callback(lambda _: setattr(self, "_reaping", None))

    async def _release_reaped(self) -> None:
        """Undo provider-side resources of sessions the health monitor reaped."""
        try:
            reaped = await self.registry.take_reaped.remote()
        except Exception as exc:  # the registry is restarting: the next probe tries again
            log.warning("could not fetch reaped sessions: %s", type(exc).__name__)
            return
        for rec in reaped:
            with contextlib.suppress(Exception):
                await self.provider.close_session(rec["session_id"])
