"""What the Ray dashboard, the logs and the traces show of a session's actors, and the ingress's
HTTP metrics and spans.

Workers are started by the warm pool before their session is known, and Ray actor names are fixed
at creation (`worker:<id>`, `worker:<id>/stt`). So the session and stage actors define
`__repr__` — Ray's way to name an actor in the dashboard and in log prefixes ("Customize prefixes
for Actor logs") — as `session:<id>` (`…/stt`, `…/tts`, `…/s2s`) while bound, `worker:<id>` when
idle. Ray reads the repr once, after `__init__` (the dashboard's actor table keeps that one); the
log prefix follows the `:actor_name:` line Ray writes to the worker's log for it, which we write
again on every bind and unbind, so the lines of a call carry `(session:<id> pid=…)`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import ray
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from actors import metrics
from backend import tracing
from backend.errors import BackendError
from backend.logs import configure_logging

log = logging.getLogger(__name__)

LOG_PREFIX_ACTOR_NAME = ":actor_name:"  # ray._private.ray_constants.LOG_PREFIX_ACTOR_NAME


class Observed:
    """Mixin of the session and stage actors: repr, log fields and trace context per session."""

    _obs_stage = ""  # "" for the session actor, else "stt" / "tts" / "s2s"
    _obs_session: str | None = None
    _obs_ctx: Context | None = None
    _obs_span: Span | None = None
    _obs_provider = ""  # a stage's provider (pocketsphinx, cartesia, …)
    _obs_stages: dict[str, Any] | None = None

    def __repr__(self) -> str:
        suffix = f"/{self._obs_stage}" if self._obs_stage else ""
        if self._obs_session:
            return f"session:{self._obs_session}{suffix}"
        with contextlib.suppress(Exception):
            name = ray.get_runtime_context().get_actor_name()
            if name:
                return name
        return type(self).__name__

    def _obs_started(self, provider: str) -> None:
        """Called from a stage's constructor: a constructor run again is a restart by Ray."""
        self._obs_provider = provider
        with contextlib.suppress(Exception):
            if ray.get_runtime_context().was_current_actor_reconstructed:
                metrics.stage_restarted(self._obs_stage, provider)

    def _obs_bind(self, binding: dict[str, Any] | None) -> None:
        """Serve the session described by `binding` (see `binding`), or none (None)."""
        if binding is None:
            if self._obs_session is not None:
                log.info("session ended")
            self._obs_session, self._obs_ctx = None, None  # spans export within a second
            configure_logging(structured=False)
        else:
            role = self._obs_stage or "session"
            tracing.configure(
                binding["tracing"],
                binding["tracing_endpoint"],
                role,
                **{"ray.actor": repr(self), "ray.node_id": _node_id()},
            )
            metrics.set_provider(binding["provider"])
            self._obs_session = binding["session_id"]
            self._obs_ctx = tracing.extract(binding.get("trace_context"))
            fields = {"user_id": binding["user_id"], "provider": binding["provider"]}
            if self._obs_stage:
                fields["stage"] = self._obs_stage
            configure_logging(
                structured=binding["structured_logging"],
                session_id=self._obs_session,
                fields=fields,
            )
            log.info("session started")
        _announce(repr(self))

    @contextlib.contextmanager
    def _obs_call(
        self, name: str, stage: str | None = None, provider: str | None = None, **attributes: Any
    ) -> Iterator[Span | None]:
        """One provider call of a stage: a span under the session's, and errors counted.
        `stage`, `provider`: of a stage that runs in this process for its session (inline)."""
        span = None
        if tracing.enabled() and self._obs_ctx is not None:
            span = tracing.tracer().start_span(
                name,
                context=self._obs_ctx,
                attributes={"session.id": self._obs_session or "", **attributes},
            )
        try:
            yield span
        except Exception as exc:
            code = str(getattr(getattr(exc, "code", None), "value", type(exc).__name__))
            metrics.provider_error(stage or self._obs_stage, provider or self._obs_provider, code)
            if span is not None:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, code))
            raise
        finally:
            if span is not None:
                span.end()


class ObservedStage(Observed):
    def observe_session(self, binding: dict[str, Any] | None) -> None:
        """Bind this stage's repr, logs and trace context to a session (None: unbind)."""
        self._obs_bind(binding)


class ObservedSession(Observed):
    """The session actor: its `voice.session` span spans the call; turns and stage calls are
    its children."""

    def _obs_open(self, spec: Any, config: Any, provider: str, stages: list[Any]) -> None:
        binding = {
            "session_id": spec.session_id,
            "user_id": spec.user_id,
            "provider": provider,
            "structured_logging": config.enable_structured_logging,
            "tracing": config.enable_tracing,
            "tracing_endpoint": config.tracing_endpoint,
            "trace_context": spec.trace_context,
        }
        self._obs_bind(binding)
        if tracing.enabled():
            self._obs_span = tracing.tracer().start_span(
                "voice.session",
                context=self._obs_ctx,
                kind=SpanKind.INTERNAL,
                attributes={
                    "session.id": spec.session_id,
                    "user.id": spec.user_id,
                    "backend.provider": provider,
                    "pipeline.type": spec.pipeline_type,
                    "transport": spec.transport,
                },
            )
            self._obs_ctx = tracing.span_context(self._obs_span)
        self._obs_stages = {**binding, "trace_context": tracing.inject(self._obs_ctx)}
        for stage in stages:  # in order before the session's first call to each stage
            stage.observe_session.remote(self._obs_stages)

    def _obs_stage_binding(self) -> dict[str, Any] | None:
        """What a stage started for this session (s2s) is bound with."""
        return self._obs_stages

    def _obs_turn_tracer(self) -> Tracer | None:
        """Turn spans (recorded after each turn) as children of the session's span."""
        if self._obs_span is None or self._obs_ctx is None:
            return None
        return tracing.ParentedTracer(tracing.tracer(), self._obs_ctx)

    def _obs_close(self, reason: str, stages: list[Any]) -> None:
        if self._obs_span is not None:
            self._obs_span.set_attribute("session.end_reason", reason)
            self._obs_span.end()
            self._obs_span = None
        for stage in stages:
            with contextlib.suppress(Exception):
                stage.observe_session.remote(None)
        self._obs_bind(None)


def _node_id() -> str:
    with contextlib.suppress(Exception):
        return ray.get_runtime_context().get_node_id()
    return ""


def _announce(name: str) -> None:
    """Ray's log monitor takes the latest `:actor_name:` line of a worker's log as its prefix."""
    token = f"{LOG_PREFIX_ACTOR_NAME}{name}\n"
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.write(token)
            stream.flush()


# -- ingress ---------------------------------------------------------------------------------
async def observe_http(request: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """HTTP middleware: `backend_requests_total`, `_errors_total`, `_latency_seconds`, and a
    server span (child of the caller's `traceparent`, if any) when tracing is on."""
    started = time.monotonic()
    span = None
    if tracing.enabled():
        span = tracing.tracer().start_span(
            f"HTTP {request.method}",
            context=tracing.extract(request.headers),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": request.method},
        )
    status, response = 500, None
    try:
        with tracing.attached(tracing.span_context(span)) if span else contextlib.nullcontext():
            response = await call_next(request)
        status = response.status_code
        return response
    finally:
        route_obj = request.scope.get("route")
        route = getattr(route_obj, "path", None) or "unmatched"
        error_code = ""
        if status >= 400:
            error_code = getattr(request.state, "error_code", None) or f"http_{status}"
        metrics.http_request(route, request.method, status, time.monotonic() - started, error_code)
        if span is not None:
            span.update_name(f"{request.method} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR, error_code))
            span.end()


async def observe_handle(coro: Any) -> Any:
    """A Python-API call through the ingress's DeploymentHandle (`backend.new_backend()`),
    counted as route `handle:<method>` in the same series as HTTP requests."""
    code = getattr(coro, "cr_code", None)
    qualname = getattr(code, "co_qualname", "") or "call"
    # `VoiceIngress.api_get_config.<locals>.run` or `ControlPlane.close_session`
    name = qualname.split(".<locals>")[0].rsplit(".", 1)[-1].removeprefix("api_")
    started, status, error_code = time.monotonic(), 200, ""
    try:
        return await coro
    except BackendError as err:
        status, error_code = err.http_status, err.code.value
        raise
    except BaseException:
        status, error_code = 500, "pipeline_error"
        raise
    finally:
        elapsed = time.monotonic() - started
        metrics.http_request(f"handle:{name}", "HANDLE", status, elapsed, error_code)


@contextlib.contextmanager
def create_span(user_id: str) -> Iterator[Span | None]:
    """`voice.session.create` in the ingress, current while the session is admitted and bound,
    so the carrier the supervisor hands the session actor (`tracing.inject()`) points at it."""
    if not tracing.enabled():
        yield None
        return
    with tracing.tracer().start_as_current_span(
        "voice.session.create", attributes={"user.id": user_id}
    ) as span:
        yield span


def configure_ingress(config: Any, provider: str) -> None:
    metrics.set_provider(provider)
    tracing.configure(
        config.enable_tracing, config.tracing_endpoint, "ingress", **{"ray.node_id": _node_id()}
    )
