"""The registry's security side: the user hooks every ingress replica loads, what a replica
needs to authenticate a request, the cluster-wide creation rate per user, and the providers'
circuit-breaker states reported by the workers. Mixed into `SessionRegistry`.
"""

from __future__ import annotations

import time
from typing import Any

from actors.hooks import SecurityState
from actors.task_events import untracked
from backend.auth import check_rate
from backend.iface import Config


class RegistrySecurityMixin:
    config: Config
    rev: int
    security: SecurityState
    breakers: dict[str, dict[str, Any]]

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def set_hooks(self, hooks: dict[str, bytes]) -> int:
        return self.security.set_hooks(hooks)

    @untracked
    def auth_view(self, config_rev: int, hooks_rev: int) -> dict[str, Any]:
        """What an ingress replica needs to authenticate a request: the config and the hooks,
        each only if it changed since the revision the replica holds."""
        out: dict[str, Any] = {"hooks_rev": self.security.hooks_rev}
        if config_rev != self.rev:
            out["config"] = self.get_config()
        if hooks_rev != self.security.hooks_rev:
            out["hooks"] = dict(self.security.hooks)
        return out

    async def check_rate(self, user_id: str, hooks_rev: int = -1) -> dict[str, Any]:
        """Session creation rate per user: one limiter for the whole cluster. Returns the hooks
        if the caller's are older than `hooks_rev` (a session's spec carries its retention hook)."""
        await check_rate(self.security.limiter(self.config.session_rate_per_user), user_id)
        return self.auth_view(self.rev, hooks_rev)

    def provider_state(self, worker: str, provider: str, state: dict[str, Any]) -> None:
        """A worker's circuit breaker for `provider` changed state (`providers/resilience.py`)."""
        by_worker = self.breakers.setdefault(provider, {})
        if state.get("state") == "closed":
            by_worker.pop(worker, None)
        else:
            by_worker[worker] = {**state, "at": time.time()}
        if not by_worker:
            self.breakers.pop(provider, None)
