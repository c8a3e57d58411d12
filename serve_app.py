"""The Ray Serve ingress: the supervisor of all voice sessions, over HTTP and Python handles.

    serve run serve_app:app                                   # defaults (provider local)
    serve run serve_app:build_app provider=local max_sessions=5
    serve run serve_app:build_app warm_pool_size=4 replicas=2 on_head=1   # ingress on the head

The deployment serves the HTTP routes of `ingress/` (one router per concern) and the `api_*`
methods `backend.new_backend()` calls through a DeploymentHandle; both go through
`actors.control_plane.ControlPlane`.
"""

import contextlib
import hashlib
import json
import logging
import os
from typing import Any

import ray
from ray import serve
from ray.serve.handle import DeploymentHandle

from actors.control_plane import ControlPlane
from actors.names import HEAD_RESOURCE, REGISTRY_NAME, SESSION_RESOURCE
from actors.observability import observe_handle
from backend.config_file import load_config
from backend.errors import BackendError
from backend.http_limits import BodySizeLimit
from backend.iface import Config, SessionConfig
from backend.secret_masking import unmask_secrets
from ingress import app as http_app  # a module: the replica uses its own, never a copy

NAMESPACE = "voice_backend"
APP_NAME = "voice_backend"
SESSION_SLOTS_PER_NODE = 100  # `voice_session` units a locally started Ray node offers


async def _envelope(coro: Any) -> dict[str, Any]:
    """Handle calls return {"ok": value} or {"error": body} (with {"details": {"retry_after_s"}}
    when the caller is told when to come back): no exception pickling across Serve."""
    try:
        return {"ok": await observe_handle(coro)}
    except BackendError as err:
        envelope: dict[str, Any] = {"error": err.to_body()["error"]}
        if (retry := err.retry_after_s) is not None:
            envelope["details"] = {"retry_after_s": retry}
        return envelope


@serve.deployment(
    name="VoiceIngress",
    # Each open audio websocket is an ongoing request for its whole life.
    max_ongoing_requests=2000,
    graceful_shutdown_timeout_s=60,
    ray_actor_options={"num_cpus": 0},
)
@serve.ingress(http_app.served)
class VoiceIngress:
    def __init__(self, provider: str = "local", config: dict[str, Any] | None = None) -> None:
        cfg = Config(**{**(config or {}), "provider": provider})
        self.sup = ControlPlane(provider, cfg, NAMESPACE)
        version = hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode())
        applied = self.sup.registry.configure.remote(
            cfg.model_dump(mode="json"), version.hexdigest()
        )
        self.sup.cache_config(ray.get(applied))
        BodySizeLimit.max_bytes = cfg.max_request_body_bytes
        http_app.bind(self.sup)  # what the routes reach (one ingress per replica process)

    async def check_health(self) -> None:
        """Serve's periodic probe of this replica (it is healthy if this returns). It also
        starts the cleanup of reaped sessions' provider resources, which must not wait for a
        client to ask for /v1/health."""
        self.sup.release_reaped_soon()

    # -- Python handle API (backend.new_backend) -------------------------------------------
    async def api_create_session(
        self, session: dict[str, Any], callback: Any, instance: Any, media_base_url: str
    ) -> dict[str, Any]:
        async def run() -> dict[str, Any]:
            sc = SessionConfig(**session, agent_callback=callback, agent_instance=instance)
            return await self.sup.create_session(sc, media_base_url)

        return await _envelope(run())

    async def api_close_session(self, session_id: str) -> dict[str, Any]:
        return await _envelope(self.sup.close_session(session_id))

    async def api_set_hooks(self, hooks: dict[str, bytes]) -> dict[str, Any]:
        """Packed `auth_hook`/`rate_limiter`/`data_retention_hook` (backend/auth.py), kept by
        the registry so every replica, and every replica started later, applies them."""
        return await _envelope(self.sup.set_hooks(hooks))

    async def api_close_all(self, reason: str) -> dict[str, Any]:
        return await _envelope(self.sup.close_all(reason))

    async def api_drain(self, timeout_s: float | None = None) -> dict[str, Any]:
        async def run() -> dict[str, Any]:
            config = await self.sup.config()
            return await self.sup.drain(config.drain_timeout if timeout_s is None else timeout_s)

        return await _envelope(run())

    async def api_get_session(self, session_id: str) -> dict[str, Any]:
        return await _envelope(self.sup.get_session(session_id))

    async def api_list_sessions(self) -> dict[str, Any]:
        return await _envelope(self.sup.list_sessions())

    async def api_health(self) -> dict[str, Any]:
        return await _envelope(self.sup.health())

    async def api_capacity(self) -> dict[str, Any]:
        return await _envelope(self.sup.capacity())

    async def api_get_config(self) -> dict[str, Any]:
        async def run() -> dict[str, Any]:
            return (await self.sup.config()).public_dict()  # secrets never leave masked

        return await _envelope(run())

    async def api_update_config(self, config: dict[str, Any]) -> dict[str, Any]:
        async def run() -> dict[str, Any]:
            current = (await self.sup.config()).model_dump(mode="json")
            new = Config(**unmask_secrets(config, current))  # a read-back config keeps secrets
            return (await self.sup.apply_config(new)).public_dict()

        return await _envelope(run())


# -- deployment ------------------------------------------------------------------------------
def config_from_args(args: dict[str, str]) -> Config:
    """The backend `Config` that `build_app`'s arguments describe (validated, Ray not needed)."""
    return load_config(
        args.get("config"),
        provider=args.get("provider"),
        max_concurrent_sessions=args.get("max_sessions"),
        warm_pool_size=args.get("warm_pool_size"),
        stt_placement=args.get("stt_placement"),
        tts_placement=args.get("tts_placement"),
        s2s_placement=args.get("s2s_placement"),
        media_port_range=args.get("media_port_range"),
    )


def build_app(args: dict[str, str]) -> Any:
    """Serve application builder: `serve run serve_app:build_app provider=local max_sessions=5`
    (also `stt_placement=`, `tts_placement=`, `s2s_placement=`, `media_port_range=`, or
    `config=backend.yaml`). Values not given come from `VOICE_BACKEND_*` variables, then the
    defaults (`backend.config_file`)."""
    if not ray.is_initialized():
        # `serve run` calls this builder before it starts Ray itself; a node it starts then
        # offers session slots (an address given to `serve run` joins a cluster as it is).
        os.environ.setdefault(
            "RAY_OVERRIDE_RESOURCES", json.dumps({SESSION_RESOURCE: SESSION_SLOTS_PER_NODE})
        )
    config = config_from_args(args)
    # Deployment options (not backend Config): replica count, and pinning them to the head.
    replicas = int(args.get("replicas") or os.environ.get("VOICE_INGRESS_REPLICAS") or 1)
    options: dict[str, Any] = {"num_replicas": replicas}
    if (args.get("on_head") or os.environ.get("VOICE_INGRESS_ON_HEAD", "0")) not in ("0", ""):
        options["ray_actor_options"] = {"num_cpus": 0, "resources": {HEAD_RESOURCE: 0.001}}
    return VoiceIngress.options(**options).bind(config.provider, config.model_dump(mode="json"))


def __getattr__(name: str) -> Any:
    """`app` is built when `serve run serve_app:app` asks for it, not at import: building reads
    the environment and may prepare the Ray node `serve run` is about to start."""
    if name == "app":
        return build_app({})
    raise AttributeError(name)


_dashboard_url: str | None = None


def ensure_ray(address: str | None = None, session_slots: int = SESSION_SLOTS_PER_NODE) -> None:
    """Join the cluster at `address` / RAY_ADDRESS, or start a local one with session slots."""
    global _dashboard_url
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    # Two malloc arenas per process instead of eight per core: Ray's many threads otherwise
    # each grow an arena of their own, and the long-lived processes' memory creeps (the soak:
    # +21.1 MB in 10 min with glibc's default, +16.2 with 2). Every Ray process started here
    # inherits it; `ray start` nodes get it from the image (Dockerfile).
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    dashboard = os.environ.get("VOICE_RAY_DASHBOARD", "1") != "0"
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        ctx = ray.init(address=address, namespace=NAMESPACE, **quiet)
    else:
        ctx = ray.init(
            # "local": start our own node even when another cluster on this host was started
            # last (ray.init() with no address would join it through /tmp/ray).
            address="local",
            namespace=NAMESPACE,
            resources={SESSION_RESOURCE: session_slots},
            include_dashboard=dashboard,
            **quiet,
        )
    _dashboard_url = ctx.dashboard_url


def deploy(
    provider: str,
    config: Config,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    replicas: int = 1,
    on_head: bool = False,
) -> DeploymentHandle:
    """Start (or reconfigure) the ingress on the current Ray cluster; returns its handle.
    Replicas share one registry, so the session cap holds whatever their number. `on_head`
    keeps the replicas on the head node, away from the nodes that host (and may lose) calls."""
    serve.start(http_options={"host": host, "port": port})
    options: dict[str, Any] = {"num_replicas": replicas}
    if on_head:
        options["ray_actor_options"] = {"num_cpus": 0, "resources": {HEAD_RESOURCE: 0.001}}
    return serve.run(
        VoiceIngress.options(**options).bind(provider, config.model_dump(mode="json")),
        name=APP_NAME,
        route_prefix="/",
        blocking=False,
    )


def app_handle() -> DeploymentHandle | None:
    try:
        return serve.get_app_handle(APP_NAME)
    except Exception:  # not deployed
        return None


def undeploy() -> None:
    """Delete the app, the warm pool and the registry (call after every session is closed)."""
    serve.delete(APP_NAME)
    with contextlib.suppress(ValueError):
        registry = ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE)
        with contextlib.suppress(Exception):
            ray.get(registry.shutdown.remote(), timeout=30)
        ray.kill(registry)


def dashboard_url() -> str | None:
    """The Ray dashboard of the cluster `ensure_ray` started or joined, if it has one."""
    url = _dashboard_url
    return f"http://{url}" if url and not url.startswith("http") else url
