"""The Python API: `VoiceBackend` and `VoiceSession`, async, mirroring Beluga's Go backend.

Control calls go to the Serve ingress through its DeploymentHandle (the same supervisor the HTTP
API uses); media calls go straight to the session's actor, found by name. Agent callables travel
to the session actor with cloudpickle and run there, next to the pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import ray
from ray.exceptions import RayActorError
from ray.serve.exceptions import DeploymentUnavailableError

import serve_app
from actors.hooks import pack_hooks
from actors.session_ref import SessionRef
from backend.auth import AuthHook, DataRetentionHook, RateLimiter
from backend.errors import BackendError, ErrorCode
from backend.iface import (
    Config,
    ConnectionState,
    HealthStatus,
    PipelineState,
    SessionConfig,
)
from providers.messages import AudioChunk
from providers.registry import BACKENDS
from providers.retry import RetryPolicy, call_with_retry

MAX_CHUNK_S = 0.5  # process_audio splits long buffers into frames the session accepts
POLL_TIMEOUT_S = 5.0


def _unwrap(op: str, envelope: dict[str, Any]) -> Any:
    if "error" in envelope:
        raise BackendError.from_body(op, envelope)
    return envelope["ok"]


class VoiceSession:
    """A live session. Audio in: `process_audio`. Audio out: `receive_audio`. Events: `events`."""

    def __init__(self, backend: VoiceBackend, info: dict[str, Any], actor: Any) -> None:
        self._backend = backend
        self._actor = actor
        self.info = info
        self.id: str = info["session_id"]
        self.sample_rate_hz: int = info.get("sample_rate_hz", 16000)

    def __repr__(self) -> str:
        return f"VoiceSession(id={self.id!r}, user_id={self.info.get('user_id')!r})"

    async def _call(self, op: str, method: str, *args: Any) -> Any:
        try:
            return await getattr(self._actor, method).remote(*args)
        except RayActorError:
            raise BackendError(
                op, ErrorCode.SESSION_NOT_ACTIVE, f"session {self.id} has ended"
            ) from None
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, BackendError):
                raise BackendError(exc.cause.op, exc.cause.code, exc.cause.message) from None
            raise BackendError(op, ErrorCode.PIPELINE_ERROR, str(exc.cause)) from None

    async def start(self) -> None:
        await self._call("session.start", "start_media")

    async def stop(self) -> None:
        """End the session and free its slot (the seed's Stop)."""
        await self._backend.close_session(self.id)

    async def process_audio(self, pcm16: bytes) -> None:
        """Feed user audio (PCM16 mono at the session's `sample_rate_hz`)."""
        step = int(self.sample_rate_hz * MAX_CHUNK_S) * 2
        data = bytes(pcm16)
        frames = [data[i : i + step] for i in range(0, len(data), step)] or [data]
        errors = await self._call("session.process_audio", "push_audio", frames)
        if errors:
            first = errors[0]
            raise BackendError("session.process_audio", first["code"], first["message"])

    async def send_audio(self, pcm16: bytes) -> None:
        """Send audio to the client as-is (at the session's output rate)."""
        await self._call("session.send_audio", "send_audio", bytes(pcm16))

    async def _drain(self, *, audio: bool, events: bool) -> AsyncIterator[Any]:
        while True:
            try:
                out = await self._call("session.poll", "poll", audio, events, POLL_TIMEOUT_S)
            except BackendError as err:
                if err.code is ErrorCode.SESSION_NOT_ACTIVE:
                    return
                raise
            for item in out["items"]:  # the public API speaks the wire: bytes and event dicts
                yield item.pcm16 if isinstance(item, AudioChunk) else item.to_wire()
            if out["closed"]:
                return

    def receive_audio(self) -> AsyncIterator[bytes]:
        """Reply audio (PCM16 at the output rate) until the session closes."""
        return self._drain(audio=True, events=False)

    def events(self) -> AsyncIterator[dict[str, Any]]:
        """JSON events (`state`, `transcript`, `agent_reply`, `metrics`, `error`, ...)."""
        return self._drain(audio=False, events=True)

    async def set_agent_callback(self, callback: Callable[[str], Any]) -> None:
        if not callable(callback):
            raise BackendError(
                "session.set_agent_callback", ErrorCode.INVALID_CONFIG, "callback must be callable"
            )
        await self._call("session.set_agent", "set_agent", callback, None, None)

    async def set_agent_instance(self, instance: Any) -> None:
        await self._call("session.set_agent", "set_agent", None, instance, None)

    async def get_state(self) -> PipelineState:
        try:
            return PipelineState(await self._call("session.get_state", "ping"))
        except (BackendError, ValueError):
            return PipelineState.CLOSED

    async def get_persistence_status(self) -> str:
        """ "active" while the session's actor lives, "completed" once it has ended."""
        state = await self.get_state()
        return "completed" if state is PipelineState.CLOSED else "active"

    async def update_metadata(self, values: dict[str, Any]) -> dict[str, Any]:
        return await self._call("session.update_metadata", "update_metadata", dict(values))

    async def get_info(self) -> dict[str, Any]:
        return await self._call("session.info", "info")


class VoiceBackend:
    def __init__(self, provider: str, config: Config, handle: Any, media_base_url: str) -> None:
        self.provider = provider
        self._config = config
        self._handle = handle
        self._media_base_url = media_base_url
        self._count = 0
        self._stopped = False
        self._workers: dict[str, Any] = {}  # worker name -> actor handle

    async def _rpc(self, op: str, method: str, *args: Any) -> Any:
        if self._stopped:
            raise BackendError(op, ErrorCode.CONNECTION_FAILED, "backend is stopped")
        try:
            envelope = await getattr(self._handle, method).remote(*args)
        except DeploymentUnavailableError:
            self._stopped = True  # another client stopped the shared deployment
            raise BackendError(
                op, ErrorCode.CONNECTION_FAILED, "the backend's Serve app is not running"
            ) from None
        return _unwrap(op, envelope)

    async def start(self) -> None:
        """The backend is started by `new_backend`; kept for the seed's API."""
        if self._stopped:
            raise BackendError(
                "start", ErrorCode.CONNECTION_FAILED, "backend was stopped; call new_backend again"
            )

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Drain, then remove the Serve app (Ray itself keeps running): new sessions are
        refused at once, live calls get `drain_timeout` seconds (default: the config's) to end,
        then the rest are closed with the reason "drain timeout"."""
        if self._stopped:
            return
        await self._rpc("stop", "api_drain", drain_timeout)
        await asyncio.to_thread(serve_app.undeploy)
        self._stopped = True
        self._count = 0

    async def create_session(self, config: SessionConfig) -> VoiceSession:
        if not isinstance(config, SessionConfig):
            raise BackendError(
                "create_session", ErrorCode.INVALID_CONFIG, "config must be a SessionConfig"
            )
        body = config.model_dump(mode="json")
        # The ingress bounds each call itself: the policy only spaces the retries.
        retry = RetryPolicy(
            timeout_s=None,
            max_retries=self._config.max_retries,
            retry_delay_s=self._config.retry_delay,
        )
        info = await call_with_retry(
            "create_session",
            lambda: self._rpc(
                "create_session",
                "api_create_session",
                body,
                config.agent_callback,
                config.agent_instance,
                self._media_base_url,
            ),
            retry,
        )
        self._count += 1
        info["sample_rate_hz"] = config.sample_rate_hz
        return VoiceSession(self, info, self._actor(info))

    def _actor(self, info: dict[str, Any]) -> SessionRef:
        """The session's worker actor, reachable only for this session (workers are reused)."""
        session_id, name = info["session_id"], info.get("worker") or ""
        handle = self._workers.get(name)
        if handle is None:
            try:
                handle = ray.get_actor(name, namespace=serve_app.NAMESPACE)
            except ValueError:
                raise BackendError(
                    "get_session", ErrorCode.SESSION_NOT_FOUND, f"no session {session_id!r}"
                ) from None
            if len(self._workers) > 10_000:
                self._workers.clear()
            self._workers[name] = handle
        return SessionRef(handle, session_id)

    async def get_session(self, session_id: str) -> VoiceSession:
        info = await self._rpc("get_session", "api_get_session", session_id)
        return VoiceSession(self, info, self._actor(info))

    async def list_sessions(self) -> list[VoiceSession]:
        records = await self._rpc("list_sessions", "api_list_sessions")
        self._count = len(records)
        out = []
        for rec in records:
            try:
                out.append(VoiceSession(self, rec, self._actor(rec)))
            except BackendError:
                continue  # closed between the listing and now
        return out

    async def close_session(self, session_id: str) -> None:
        await self._rpc("close_session", "api_close_session", session_id)
        self._count = max(0, self._count - 1)

    async def health_check(self) -> HealthStatus:
        h = await self._rpc("health_check", "api_health")
        self._count = h["active_sessions"]
        return HealthStatus(
            status=h["status"],
            details=h["details"],
            last_check=datetime.fromisoformat(h["last_check"]),
        )

    def get_connection_state(self) -> ConnectionState:
        return ConnectionState.DISCONNECTED if self._stopped else ConnectionState.CONNECTED

    def get_active_session_count(self) -> int:
        """Synchronous, as in the seed: the last known count, updated by this client's own
        creates and closes at once and refreshed by `health_check` and `list_sessions`."""
        return self._count

    async def get_config(self) -> Config:
        return Config(**await self._rpc("get_config", "api_get_config"))

    async def capacity(self) -> dict[str, Any]:
        """Sessions, free `voice_session` slots and the warm pool, cluster-wide and per node."""
        return await self._rpc("capacity", "api_capacity")

    async def set_hooks(
        self,
        *,
        auth_hook: AuthHook | None = None,
        rate_limiter: RateLimiter | None = None,
        data_retention_hook: DataRetentionHook | None = None,
    ) -> None:
        """Replace the security hooks (None clears one). They are cloudpickled here and kept by
        the cluster's registry: every ingress replica authenticates HTTP requests with the
        `auth_hook`, the registry applies the `rate_limiter` to session creation cluster-wide,
        and each session's actor runs the `data_retention_hook` when the session ends."""
        packed = pack_hooks(
            auth_hook=auth_hook, rate_limiter=rate_limiter, data_retention_hook=data_retention_hook
        )
        await self._rpc("set_hooks", "api_set_hooks", packed)

    async def update_config(self, config: Config) -> Config:
        """Takes effect for what follows: a lowered cap refuses new sessions, live ones stay."""
        applied = Config(
            **await self._rpc("update_config", "api_update_config", config.model_dump(mode="json"))
        )
        self._config = applied
        return applied


async def new_backend(
    provider: str,
    config: Config | None = None,
    *,
    address: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    auth_hook: AuthHook | None = None,
    rate_limiter: RateLimiter | None = None,
    data_retention_hook: DataRetentionHook | None = None,
) -> VoiceBackend:
    """Join the Ray cluster (`address`, RAY_ADDRESS) or start a local one, then start the
    supervisor on it — or reconfigure the one already running there.

    This Python API is trusted in-cluster code (no API key); the hooks apply to HTTP callers
    and to every session (see `VoiceBackend.set_hooks`)."""
    hooks = pack_hooks(
        auth_hook=auth_hook, rate_limiter=rate_limiter, data_retention_hook=data_retention_hook
    )
    config = config or Config(provider=provider)
    if provider not in BACKENDS:
        raise BackendError(
            "new_backend",
            ErrorCode.PROVIDER_NOT_FOUND,
            f"unknown backend provider {provider!r}; registered: {', '.join(BACKENDS.names())}",
            field="provider",
        )
    if config.provider != provider:
        raise BackendError(
            "new_backend",
            ErrorCode.INVALID_CONFIG,
            f"provider: config says {config.provider!r} but {provider!r} was asked for",
            field="provider",
        )
    BACKENDS.resolve(provider).parse_config(config.provider_config)  # fail fast on bad keys
    await asyncio.to_thread(serve_app.ensure_ray, address)
    handle = await asyncio.to_thread(serve_app.app_handle)
    if handle is not None and not await _serves(handle, provider):
        handle = None  # another provider runs there: redeploy the app with this one
    backend: VoiceBackend
    if handle is not None:
        backend = VoiceBackend(provider, config, handle, f"ws://{host}:{port}")
        await backend.update_config(config)
    else:
        handle = await asyncio.to_thread(serve_app.deploy, provider, config, host=host, port=port)
        backend = VoiceBackend(provider, config, handle, f"ws://{host}:{port}")
    await backend._rpc("set_hooks", "api_set_hooks", hooks)
    await backend.health_check()
    return backend


async def _serves(handle: Any, provider: str) -> bool:
    """Whether the running app already serves `provider`; switching needs it to be idle, since
    its live sessions belong to the other provider."""
    running = Config(**_unwrap("new_backend", await handle.api_get_config.remote())).provider
    if running == provider:
        return True
    live = _unwrap("new_backend", await handle.api_list_sessions.remote())
    if live:
        raise BackendError(
            "new_backend",
            ErrorCode.SESSION_ALREADY_ACTIVE,
            f"provider: the running backend serves {running!r} with {len(live)} live session(s);"
            f" close them before switching to {provider!r}",
            field="provider",
        )
    return False
