"""`Admission`: who may start a session now. One decision, no awaits, so the registry runs it
atomically whatever the number of ingress replicas.

In order: draining (the backend is shutting down), the nodes' speech capacity (calls of local
models their CPUs can decode in time), the cluster-wide cap (`max_concurrent_sessions`, bounded
by the nodes' `voice_session` slots), then the caller's own quota (`max_sessions_per_user`).
The creation rate per user is checked before, by `backend.auth.check_rate`. A refusal is a
`session_limit_exceeded` (HTTP 503 + Retry-After) or `rate_limit_exceeded` naming its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actors.warm_pool import WarmPool
from backend.auth import check_user_quota
from backend.errors import BackendError, ErrorCode
from backend.iface import Config

OP = "create_session"


class Admission:
    def __init__(self) -> None:
        self.draining: str | None = None  # why admission stopped
        self.by_replica: dict[str, int] = {}  # admission attempts per ingress replica

    @staticmethod
    def effective_cap(config: Config, pool: WarmPool) -> int:
        """The configured cap, bounded by what the nodes can hold (0 = none configured)."""
        room = pool.total_capacity()
        cap = config.max_concurrent_sessions
        return min(cap, room) if cap else room

    def admit(
        self,
        config: Config,
        pool: WarmPool,
        records: Mapping[str, Mapping[str, Any]],
        session_id: str,
        record: Mapping[str, Any],
    ) -> None:
        """Raise the refusal, if any; the caller then takes a worker from the pool."""
        if self.draining is not None:
            raise BackendError(
                OP,
                ErrorCode.SESSION_LIMIT_EXCEEDED,
                f"draining: {self.draining}; no new sessions are admitted",
                details={"draining": True},
            )
        replica = str(record.get("ingress_replica"))
        self.by_replica[replica] = self.by_replica.get(replica, 0) + 1
        cap = self.effective_cap(config, pool)
        active = len(records)
        configured = config.max_concurrent_sessions
        if pool.speech_full() and (not configured or active < configured):
            raise BackendError(
                OP,
                ErrorCode.SESSION_LIMIT_EXCEEDED,
                "at capacity: every node's speech capacity is in use (a node serves its CPUs x "
                f"speech_load_threshold={config.speech_load_threshold:g} / "
                f"{pool.cpu_share:g} cores per call of local speech models); retry later "
                "or add a node",
                details={"active_sessions": active, "max_sessions": cap, "speech_full": True},
            )
        if active >= cap:
            raise BackendError(
                OP,
                ErrorCode.SESSION_LIMIT_EXCEEDED,
                f"at capacity: {active} of {cap} sessions in use",
                details={"active_sessions": active, "max_sessions": cap},
            )
        if session_id in records:
            raise BackendError(OP, ErrorCode.SESSION_ALREADY_ACTIVE, f"{session_id} exists")
        check_user_quota(records, str(record.get("user_id", "")), config.max_sessions_per_user)

    @staticmethod
    def no_worker(active: int, cap: int, slot_name: str) -> BackendError:
        return BackendError(
            OP,
            ErrorCode.SESSION_LIMIT_EXCEEDED,
            f"at capacity: no node has a free {slot_name} slot",
            details={"active_sessions": active, "max_sessions": cap},
        )
