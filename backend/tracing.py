"""OpenTelemetry traces of the backend, set up per process from `Config`.

`enable_tracing` turns them on. Spans go to an OTLP/HTTP collector at `Config.tracing_endpoint`
(e.g. `http://collector:4318/v1/traces`), else at the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
/ `OTEL_EXPORTER_OTLP_ENDPOINT` variables of the process; `tracing_endpoint: console` prints them;
with neither, nothing is exported. Every process of a session (ingress, session actor, stage
actors) calls `configure` with the config it runs, and the trace context crosses Ray calls as a
W3C `traceparent` carrier (`inject` / `extract`), so one session is one trace.

The provider is this module's own (not the global one): a config change swaps it at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import NoOpTracer, Span, Tracer, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

SERVICE_NAME = "voice-backend"
EXPORT_DELAY_MS = 1000  # spans reach the collector within about a second
_propagator = TraceContextTextMapPropagator()
_lock = threading.Lock()
_state: dict[str, Any] = {"key": None, "provider": None}


def endpoint_for(config_endpoint: str | None) -> str | None:
    """Where spans go: the config's endpoint, else the standard OTLP variables."""
    if config_endpoint:
        return config_endpoint
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return traces
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return f"{base.rstrip('/')}/v1/traces" if base else None


def configure(enabled: bool, endpoint: str | None, role: str, **resource: Any) -> bool:
    """Set this process's tracer for `role` (ingress, session, stt, tts, s2s); idempotent.
    Returns whether spans are recorded."""
    target = endpoint_for(endpoint) if enabled else None
    key = (target, role, tuple(sorted(resource.items())))
    with _lock:
        if key == _state["key"]:
            return _state["provider"] is not None
        old, _state["provider"], _state["key"] = _state["provider"], None, key
        if target:
            _state["provider"] = _provider(target, role, resource)
    if old is not None:  # flushes what it still holds: off this thread (an actor's event loop)
        threading.Thread(target=old.shutdown, name="otel-shutdown", daemon=True).start()
    return _state["provider"] is not None


def _provider(target: str, role: str, resource: dict[str, Any]) -> TracerProvider:
    attrs = {
        "service.name": SERVICE_NAME,
        "service.component": role,
        "process.pid": os.getpid(),
        **{k: str(v) for k, v in resource.items() if v is not None},
    }
    provider = TracerProvider(resource=Resource.create(attrs))
    exporter: SpanExporter
    if target == "console":
        exporter = ConsoleSpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=target, timeout=5)
        provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=EXPORT_DELAY_MS)
        )
    return provider


def tracer() -> Tracer:
    provider = _state["provider"]
    return provider.get_tracer("voice_backend") if provider is not None else NoOpTracer()


def enabled() -> bool:
    return _state["provider"] is not None


def inject(ctx: Context | None = None) -> dict[str, str]:
    """The current (or given) trace context as a W3C carrier, to send with a Ray call."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=ctx)
    return carrier


def extract(carrier: Mapping[str, str] | None) -> Context:
    return _propagator.extract(dict(carrier or {}))


def span_context(span: Span) -> Context:
    return set_span_in_context(span)


@contextlib.contextmanager
def attached(ctx: Context) -> Iterator[None]:
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


class ParentedTracer(Tracer):
    """A tracer whose spans without an explicit parent go under `parent` (a session's span):
    the turn traces recorded after each turn hang off the session's trace."""

    def __init__(self, inner: Tracer, parent: Context) -> None:
        self._inner, self._parent = inner, parent

    def start_span(self, name: str, context: Context | None = None, *args: Any, **kw: Any) -> Span:
        return self._inner.start_span(name, context or self._parent, *args, **kw)

    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: Context | None = None, *args: Any, **kw: Any
    ) -> Any:
        return self._inner.start_as_current_span(name, context or self._parent, *args, **kw)
