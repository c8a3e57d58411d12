"""Tracing set-up without Ray: where spans go, and the W3C context crossing a process boundary."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from backend import tracing
from backend.errors import BackendError
from backend.secret_masking import MASK, unmask_secrets


def test_endpoint_comes_from_the_config_then_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert tracing.endpoint_for(None) is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert tracing.endpoint_for(None) == "http://collector:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/x")
    assert tracing.endpoint_for(None) == "http://traces:4318/x"
    assert tracing.endpoint_for("console") == "console"


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: object) -> SpanExportResult:
        self.spans.extend(spans)  # type: ignore[arg-type]
        return SpanExportResult.SUCCESS


def test_disabled_records_nothing_and_context_survives_a_carrier() -> None:
    assert not tracing.configure(False, "console", "test")
    assert not tracing.tracer().start_span("x").get_span_context().is_valid
    assert tracing.configure(True, "console", "test")
    kept = _Keep()
    tracing._state["provider"].add_span_processor(SimpleSpanProcessor(kept))
    parent = tracing.tracer().start_span("parent")
    carrier = tracing.inject(tracing.span_context(parent))
    assert carrier["traceparent"].startswith("00-")
    # What another process does with the carrier: turn spans go under it by default.
    child_tracer = tracing.ParentedTracer(tracing.tracer(), tracing.extract(carrier))
    child_tracer.start_span("child").end()
    parent.end()
    child, root = kept.spans
    assert child.parent is not None and child.parent.span_id == root.context.span_id
    assert child.context.trace_id == root.context.trace_id
    assert root.resource.attributes["service.component"] == "test"
    tracing.configure(False, None, "test")


def test_masked_secrets_take_the_running_value_or_fail_naming_the_field() -> None:
    current = {"provider_config": {"api_key": "k", "servers": [{"credential": "c"}]}}
    sent = {"provider_config": {"api_key": MASK, "servers": [{"credential": MASK}], "x": 1}}
    assert unmask_secrets(sent, current) == {
        "provider_config": {"api_key": "k", "servers": [{"credential": "c"}], "x": 1}
    }
    with pytest.raises(BackendError) as err:
        unmask_secrets({"provider_config": {"token": MASK}}, {"provider_config": {}})
    assert err.value.field == "provider_config.token"
