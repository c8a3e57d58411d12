"""The supervisor's logic, shared by the HTTP routes and the Python handle methods of the ingress.

Creating a session: validate → admit and take a warm worker (registry, atomic) → provider side
effects → bind the worker to the session → commit. Any failure after admission undoes every
earlier step, so a refused or failed session leaves no slot and no remote resource behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import ray
from ray.exceptions import ActorUnschedulableError, RayActorError

from actors import metrics, observability
from actors.config_view import ConfigViewMixin
from actors.errors import as_backend_error
from actors.health_view import HealthViewMixin
from actors.media_endpoints import direct_media, webrtc_media
from actors.names import REGISTRY_NAME
from actors.profile import DEFAULT_S2S_PROVIDER, stage_options
from actors.registry import SessionRegistry
from actors.session_ref import SessionRef
from actors.session_spec import SessionSpec
from backend import tracing
from backend.errors import BackendError, ErrorCode
from backend.iface import Config, PipelineType, SessionConfig
from pipelines.audio import PIPELINE_RATE_HZ
from providers.backend import BackendProvider
from providers.registry import (
    AGENTS,
    BACKENDS,
    S2S_PROVIDERS,
    STT_PROVIDERS,
    TTS_PROVIDERS,
    TURN_DETECTORS,
    VAD_PROVIDERS,
)
from providers.wire import SessionMedia, WireCodec

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 5.0
HANDLE_CACHE_SIZE = 10_000
DRAIN_POLL_S = 0.25
WORKER_LOST_RETRIES = 1  # a create whose worker died before starting tries another this often


class _WorkerLost(Exception):
    """The worker taken for a new session died before it started; `error` is what the caller
    gets if no retry is left."""

    def __init__(self, error: BackendError) -> None:
        super().__init__(str(error))
        self.error = error


def get_registry(namespace: str) -> Any:
    return SessionRegistry.options(
        name=REGISTRY_NAME, namespace=namespace, lifetime="detached", get_if_exists=True
    ).remote(namespace)


class ControlPlane(ConfigViewMixin, HealthViewMixin):
    """The ingress's control-plane logic, shared by its HTTP routes and its Python handle methods:
    create, close, list and health of sessions, through the registry and the session workers."""

    def __init__(self, provider_name: str, config: Config, namespace: str) -> None:
        self.namespace = namespace
        self.provider_name = provider_name
        self.provider: BackendProvider = BACKENDS.create(provider_name, config.provider_config)
        self.registry = get_registry(namespace)
        self._config = config
        self._rev = -1  # the registry's config revision `_config` matches (-1: not fetched)
        self._handles: dict[str, Any] = {}
        self._provider_health: tuple[float, dict[str, Any]] = (0.0, {})
        self.replica_id = _replica_id()
        self._reaping: asyncio.Task[None] | None = None
        self._hooks: dict[str, bytes] = {}  # packed user hooks (backend/auth.py), from the registry
        self._hooks_rev = -1
        self._auth_hook: Any = None
        self._health_cache: dict[str, Any] | None = None
        self._health_stale = False  # this replica changed something since the last report
        self._health_gen = 0
        self._health_task: asyncio.Task[None] | None = None
        self._health_wanted_at = 0.0

    # -- create ----------------------------------------------------------------------------
    def _validate(self, config: Config, sc: SessionConfig) -> None:
        if sc.pipeline_type is PipelineType.S2S:
            S2S_PROVIDERS.resolve(config.s2s_provider or DEFAULT_S2S_PROVIDER)
        else:
            self.provider.check_stage_providers(config.stt_provider, config.tts_provider)
            STT_PROVIDERS.resolve(config.stt_provider or "")
            TTS_PROVIDERS.resolve(config.tts_provider or "")
            VAD_PROVIDERS.resolve(config.vad_provider)
            TURN_DETECTORS.resolve(config.turn_detection_provider)
        if sc.agent is not None and sc.agent_callback is None and sc.agent_instance is None:
            AGENTS.resolve(sc.agent["type"])

    async def _reserve(self, sc: SessionConfig, session_id: str, record: dict[str, Any]) -> Any:
        """Validate against the cached config and admit in one registry call; if another
        replica changed the config meanwhile, the registry hands it back and we go again."""
        for _ in range(3):
            self._validate(self._config, sc)
            try:
                res = await self.registry.reserve.remote(session_id, record, self._rev)
            except Exception as exc:
                err = as_backend_error("create_session", exc)
                metrics.admission_rejected(err.code.value, err.message)
                raise err from None
            if "config" not in res:
                return res
            self.cache_config(res["config"])
        raise BackendError("create_session", ErrorCode.PIPELINE_ERROR, "config keeps changing")

    async def create_session(self, sc: SessionConfig, media_base_url: str) -> dict[str, Any]:
        with observability.create_span(sc.user_id) as span:
            for attempt in range(WORKER_LOST_RETRIES + 1):
                try:
                    rec = await self._create_session(sc, media_base_url)
                    break
                except _WorkerLost as lost:
                    # The worker taken for it died before the session started (a warm spare
                    # killed as it was handed out): its slot is free again, so another worker
                    # (or a cold start) serves the caller, who never sees the loss.
                    if attempt == WORKER_LOST_RETRIES:
                        raise lost.error from None
                    log.warning("create_session: worker died while starting; retrying")
            if span is not None:
                span.set_attribute("session.id", rec["session_id"])
            return rec

    async def _create_session(self, sc: SessionConfig, media_base_url: str) -> dict[str, Any]:
        session_id = uuid.uuid4().hex
        record = {
            "session_id": session_id,
            "user_id": sc.user_id,
            "transport": sc.transport,
            "pipeline_type": sc.pipeline_type.value,
            "provider": self.provider_name,
            "created_at": datetime.now(UTC).isoformat(),
            "metadata": sc.metadata,
            "state": "idle",
            "sample_rate_hz": sc.sample_rate_hz,
            "output_sample_rate_hz": sc.output_sample_rate_hz,
            "ingress_replica": self.replica_id,
        }
        started = time.monotonic()
        try:
            self._take_hooks(await self.registry.check_rate.remote(sc.user_id, self._hooks_rev))
        except Exception as exc:
            raise as_backend_error("create_session", exc) from None
        res = await self._reserve(sc, session_id, record)
        config, worker = self._config, res["worker"]
        opened = False
        try:
            media = await self.provider.open_session(session_id, sc.user_id, media_base_url)
            opened = True
            media_info, transport_options = media.model_dump(), {}
            media_info["token_expires_at"] = time.time() + config.media_token_ttl
            if sc.transport == "webrtc":
                media_info, transport_options = webrtc_media(
                    media_info, session_id, media_base_url, self.provider.webrtc_options()
                )
            agent_transport = self.provider.agent_transport(session_id, sc.user_id)
            if agent_transport is not None and sc.transport == "webrtc":
                raise BackendError(
                    "create_session",
                    ErrorCode.INVALID_CONFIG,
                    f"transport: provider {self.provider_name!r} carries the media itself "
                    f"({agent_transport.name}); leave transport at its default",
                    field="transport",
                )
            spec = SessionSpec(
                session_id=session_id,
                user_id=sc.user_id,
                config=config.model_dump(mode="json"),
                sample_rate_hz=sc.sample_rate_hz,
                output_sample_rate_hz=sc.output_sample_rate_hz,
                namespace=self.namespace,
                pipeline_type=sc.pipeline_type.value,
                stage_options=stage_options(self.provider, config),
                agent_spec=sc.agent,
                agent_callback=sc.agent_callback,
                agent_instance=sc.agent_instance,
                metadata=sc.metadata,
                transport=sc.transport,
                transport_options=transport_options,
                agent_transport=agent_transport,
                trace_context=tracing.inject(),
                retention_hook=self._hooks.get("data_retention_hook"),
                direct_media=direct_media(
                    self.provider, config, sc, session_id, media, media_info, media_base_url
                ),
            )
            async with asyncio.timeout(max(config.timeout, 60.0)):
                placement = await worker.start.remote(spec)
            if direct_url := placement.pop("direct_url", None):
                # Audio straight into the session's process; the Serve port's route stays open.
                media_info = {**media_info, "url": direct_url, "fallback_url": media_info["url"]}
            updates = {"media": media_info, **placement}
            if media.upstream_url:  # kept in the record so that every ingress replica relays
                updates["upstream_url"] = media.upstream_url
            if agent_transport is not None:  # the media goes through the provider (a room)
                updates.update(transport=agent_transport.name, connection="connecting")
            updates["startup_ms"] = round((time.monotonic() - started) * 1000, 1)
            if not await self.registry.commit.remote(session_id, updates):
                raise BackendError("create_session", ErrorCode.PIPELINE_ERROR, "session vanished")
        except BaseException as exc:
            if opened:
                with contextlib.suppress(Exception):
                    await self.provider.close_session(session_id)
            # A worker placed on a node that has just left: the registry re-reads the nodes.
            node_gone = isinstance(exc, ActorUnschedulableError)
            await self.registry.abort.remote(session_id, node_gone)
            if isinstance(exc, asyncio.CancelledError):
                raise
            if isinstance(exc, TimeoutError):
                raise BackendError(
                    "create_session", ErrorCode.CONNECTION_TIMEOUT, "session did not start in time"
                ) from None
            if isinstance(exc, RayActorError | ActorUnschedulableError):
                raise _WorkerLost(as_backend_error("create_session", exc)) from None
            raise as_backend_error("create_session", exc) from None
        self._handles[res["worker_name"]] = worker
        self.health_changed()
        metrics.session_created(updates["startup_ms"] / 1000, sc.pipeline_type.value, res["warm"])
        return {
            **record,
            **updates,
            "worker": res["worker_name"],
            "warm_start": res["warm"],
            "state": "idle",
        }

    # -- close -----------------------------------------------------------------------------
    async def close_session(self, session_id: str, reason: str = "closed by request") -> None:
        rec = await self.registry.claim_close.remote(session_id)
        if rec is None:
            raise _not_found("close_session", session_id)
        report = None
        try:
            worker = await self.worker_actor(rec)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_GRACE_S):
                    report = await worker.close.remote(reason)
        finally:
            with contextlib.suppress(Exception):
                await self.provider.close_session(session_id)
            await self.registry.finish.remote(session_id, report)
            self.health_changed()

    async def close_all(self, reason: str) -> int:
        records = await self.registry.list.remote()
        results = await asyncio.gather(
            *(self.close_session(r["session_id"], reason) for r in records), return_exceptions=True
        )
        return sum(1 for r in results if r is None)

    async def drain(
        self, timeout_s: float, reason: str = "the backend is shutting down"
    ) -> dict[str, Any]:
        """Graceful shutdown: stop admitting, tell every live call, give them `timeout_s` to
        end on their own, then close the rest with the reason "drain timeout"."""
        live = await self.registry.drain.remote(reason)
        notice = {"type": "draining", "reason": reason, "timeout_s": timeout_s}
        for rec in live:
            with contextlib.suppress(Exception):
                await (await self.session_ref(rec)).add_event.remote(notice)
        deadline = time.monotonic() + timeout_s
        while live and time.monotonic() < deadline:
            await asyncio.sleep(min(DRAIN_POLL_S, max(0.0, deadline - time.monotonic())))
            live = await self.registry.list.remote()
        closed = await self.close_all("drain timeout") if live else 0
        return {"closed_at_timeout": closed}

    # -- queries ---------------------------------------------------------------------------
    def wire_codec(self, rec: dict[str, Any]) -> WireCodec | None:
        """The wire format the session's websocket speaks, decided by the backend provider."""
        media = SessionMedia(
            session_id=rec["session_id"],
            user_id=rec.get("user_id", ""),
            sample_rate_hz=rec.get("sample_rate_hz", PIPELINE_RATE_HZ),
            output_sample_rate_hz=rec.get("output_sample_rate_hz", PIPELINE_RATE_HZ),
        )
        return self.provider.wire_codec(media)

    async def media_upstream(self, rec: dict[str, Any]) -> str | None:
        """Where this session's websocket is relayed, if anywhere: the URL the provider gave
        at creation, else one it makes per connection (a bot it starts)."""
        if rec.get("upstream_url"):
            return str(rec["upstream_url"])
        return await self.provider.media_upstream(rec["session_id"], rec.get("user_id", ""))

    async def worker_actor(self, rec: dict[str, Any]) -> Any:
        """The worker actor named in a session's record (cached: names never change)."""
        name = rec["worker"]
        handle = self._handles.get(name)
        if handle is None:
            try:
                handle = await asyncio.to_thread(ray.get_actor, name, namespace=self.namespace)
            except ValueError:
                raise _not_found("session", rec["session_id"]) from None
            if len(self._handles) > HANDLE_CACHE_SIZE:
                self._handles.clear()
            self._handles[name] = handle
        return handle

    async def session_ref(self, rec: dict[str, Any]) -> SessionRef:
        """A handle to a live session's actor that only ever reaches that session."""
        return SessionRef(await self.worker_actor(rec), rec["session_id"])

    async def get_session(self, session_id: str) -> dict[str, Any]:
        rec = await self.registry.get.remote(session_id)
        if rec is None:
            raise _not_found("get_session", session_id)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                ref = SessionRef(await self.worker_actor(rec), session_id)
                rec["state"] = await ref.ping.remote()
        return rec

    async def list_sessions(self) -> list[dict[str, Any]]:
        return await self.registry.list.remote()

    async def require_session(self, session_id: str) -> dict[str, Any]:
        rec = await self.registry.get.remote(session_id)
        if rec is None or rec.get("status") == "closing":
            raise _not_found("session", session_id)
        return rec

    async def annotate_session(self, session_id: str, updates: dict[str, Any]) -> bool:
        """Merge `updates` into a session's record; False if there is no such session."""
        return await self.registry.annotate.remote(session_id, updates)

    async def capacity(self) -> dict[str, Any]:
        return await self.registry.capacity.remote()


def _replica_id() -> str | None:
    """Which ingress replica admitted a session (shown in its record; None outside Serve)."""
    try:
        from ray import serve

        return serve.get_replica_context().replica_id.unique_id
    except Exception:
        return None


def _not_found(op: str, session_id: str) -> BackendError:
    return BackendError(op, ErrorCode.SESSION_NOT_FOUND, f"no session {session_id!r}")
