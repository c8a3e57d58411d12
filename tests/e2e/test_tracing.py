"""One trace per session, exported over OTLP/HTTP to a loopback collector: the caller's
`traceparent` → the ingress's HTTP span → `voice.session.create` → the session actor's
`voice.session` → its turns (`voice.turn` with a span per stage) and its stage actors' calls
(`stt.finish`, `tts.synthesize`), each from its own process."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from backend.http_client import HttpClient
from tests.conftest import SESSION_STAGES, make_config, wait_for
from tests.fakes.otlp_collector import OtlpCollector, ReceivedSpan

pytestmark = pytest.mark.ray

SECRET = "turn-credential-" + secrets.token_hex(8)


@pytest.fixture
def collector() -> Iterator[OtlpCollector]:
    with OtlpCollector() as c:
        yield c


def ancestors(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[str]:
    names = []
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        names.append(span.name)
    return names


async def test_a_session_is_one_trace_across_ingress_session_and_stage_actors(
    backend: Any, base_url: str, hello_16k: bytes, collector: OtlpCollector
) -> None:
    ice = [{"urls": "turn:127.0.0.1:3478", "username": "u", "credential": SECRET}]
    await backend.update_config(
        make_config(
            enable_tracing=True,
            tracing_endpoint=collector.url,
            provider_config={"ice_servers": ice},
            **SESSION_STAGES,  # each stage in a process of its own, each with its spans
        )
    )
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    async with HttpClient(base_url) as client:
        created = await client._http.post(
            "/v1/sessions",
            json={"user_id": "traced-user"},
            headers={"traceparent": f"00-{trace_id}-{caller_span}-01"},
        )
        assert created.status_code == 201, created.text
        session = created.json()
        result = await client.talk(session, hello_16k, 16000, realtime=False)
        assert result.metrics, result.events
        await client.close_session(session["session_id"])
    sid = session["session_id"]

    wanted = ("voice.session", "voice.turn", "stt.finish", "tts.synthesize", "stt_final")

    async def complete() -> bool:
        return all(collector.named(n) for n in wanted)

    assert await wait_for(complete, timeout_s=30, interval_s=0.5), [s.name for s in collector.spans]
    ours = [s for s in collector.spans if s.trace_id == trace_id]
    by_id = {s.span_id: s for s in ours}
    (http,) = [s for s in ours if s.name == "POST /v1/sessions"]
    assert http.parent_span_id == caller_span and http.kind == 2  # SERVER, child of the caller
    (create,) = [s for s in ours if s.name == "voice.session.create"]
    assert create.attributes["session.id"] == sid
    (session_span,) = [s for s in ours if s.name == "voice.session"]
    assert session_span.attributes["session.id"] == sid
    assert session_span.attributes["user.id"] == "traced-user"
    assert ancestors(session_span, by_id)[:2] == ["voice.session.create", "POST /v1/sessions"]
    turns = [s for s in ours if s.name == "voice.turn"]
    assert turns and all(t.parent_span_id == session_span.span_id for t in turns)
    assert all(t.attributes["turn.response_ms"] > 0 for t in turns), "the turn's timings"
    assert any(by_id[s.parent_span_id].name == "voice.turn" for s in ours if s.name == "stt_final")
    stt = [s for s in ours if s.name == "stt.finish"]
    tts = [s for s in ours if s.name == "tts.synthesize"]
    assert stt and tts
    assert all(s.parent_span_id == session_span.span_id for s in stt + tts)
    # Every span of the session is in this one trace.
    assert not [
        s.name
        for s in collector.spans
        if s.attributes.get("session.id") == sid and s.trace_id != trace_id
    ]

    # Spans came from the processes that did the work.
    def component(s: ReceivedSpan) -> tuple[str, int]:
        return s.resource["service.component"], s.resource["process.pid"]

    assert component(http)[0] == "ingress" and component(session_span)[0] == "session"
    assert component(stt[0])[0] == "stt" and component(tts[0])[0] == "tts"
    pids = {component(s)[1] for s in (http, session_span, stt[0], tts[0])}
    assert len(pids) == 4, "ingress, session actor and both stage actors are separate processes"
    assert session_span.resource["ray.actor"].startswith("worker:")

    # No secret of the provider config in any span or resource.
    for s in collector.spans:
        assert SECRET not in repr(s.attributes) and SECRET not in repr(s.resource), s.name
