"""The HTTP API's contract: status codes, one error shape, fields named, no 500s."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from backend.errors import BackendError, ErrorCode
from backend.http_client import HttpClient
from backend.iface import SessionConfig
from tests.conftest import make_config

pytestmark = pytest.mark.ray


@pytest.fixture
async def http(base_url: str) -> Any:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        yield client


def assert_error(resp: httpx.Response, status: int, code: str, field: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code
    assert err["message"]
    assert "Traceback" not in resp.text
    if field is not None:
        assert err["field"] == field and field in err["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "user_id"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "   "}, "user_id"),
        ({"user_id": "u", "transport": "smoke-signals"}, "transport"),
        ({"user_id": "u", "pipeline_type": "duplex"}, "pipeline_type"),
        ({"user_id": "u", "connection_url": "ftp://x"}, "connection_url"),
        ({"user_id": "u", "sample_rate_hz": 1}, "sample_rate_hz"),
        ({"user_id": "u", "output_sample_rate_hz": "fast"}, "output_sample_rate_hz"),
        ({"user_id": "u", "agent": {"kind": "echo"}}, "agent"),
        ({"user_id": "u", "metadata": "not-a-dict"}, "metadata"),
        ({"user_id": "u", "agent_callback": "lambda: 1"}, "agent_callback"),
        ({"user_id": 7}, "user_id"),
    ],
)
async def test_bad_session_bodies_are_422_naming_the_field(
    http: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    assert_error(await http.post("/v1/sessions", json=body), 422, "invalid_config", field)


async def test_unparseable_bodies_are_422(http: httpx.AsyncClient) -> None:
    resp = await http.post(
        "/v1/sessions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert_error(resp, 422, "invalid_config")
    assert_error(await http.post("/v1/sessions", json=[1, 2]), 422, "invalid_config")


async def test_unknown_agent_is_a_clear_error_and_webrtc_is_accepted(
    http: httpx.AsyncClient,
) -> None:
    resp = await http.post("/v1/sessions", json={"user_id": "u", "agent": {"type": "oracle"}})
    assert_error(resp, 422, "provider_not_found")
    assert "echo" in resp.json()["error"]["message"]
    resp = await http.post("/v1/sessions", json={"user_id": "u", "transport": "webrtc"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["media"]["url"].endswith(f"/v1/sessions/{body['session_id']}/webrtc/offer")
    assert (await http.delete(f"/v1/sessions/{body['session_id']}")).status_code == 204
    resp = await http.post("/v1/sessions", json={"user_id": "u", "transport": "carrier-pigeon"})
    assert_error(resp, 422, "invalid_config", "transport")


async def test_session_lifecycle_over_http(http: httpx.AsyncClient) -> None:
    created = await http.post("/v1/sessions", json={"user_id": "http-user", "metadata": {"a": 1}})
    assert created.status_code == 201, created.text
    body = created.json()
    sid = body["session_id"]
    assert body["media"]["token"] and body["transport"] == "websocket"
    got = await http.get(f"/v1/sessions/{sid}")
    assert got.status_code == 200 and got.json()["metadata"] == {"a": 1}
    assert "token" not in got.json()["media"]
    listed = (await http.get("/v1/sessions")).json()["sessions"]
    assert sid in [s["session_id"] for s in listed]
    health = (await http.get("/v1/health")).json()
    assert health["active_sessions"] >= 1 and health["status"] in ("healthy", "degraded")
    for key in (
        "active_sessions",
        "max_sessions",
        "session_utilization",
        "connection_state",
        "unresponsive_sessions",
        "providers",
    ):
        assert key in health["details"]
    assert (await http.delete(f"/v1/sessions/{sid}")).status_code == 204
    assert_error(await http.delete(f"/v1/sessions/{sid}"), 404, "session_not_found")
    assert_error(await http.get(f"/v1/sessions/{sid}"), 404, "session_not_found")
    assert_error(await http.get("/v1/sessions/does-not-exist"), 404, "session_not_found")


async def test_capacity_is_503_with_retry_after_at_once(
    http: httpx.AsyncClient, backend: Any, base_url: str
) -> None:
    await backend.update_config(make_config(max_concurrent_sessions=1))
    first = await http.post("/v1/sessions", json={"user_id": "a"})
    assert first.status_code == 201
    loop = asyncio.get_running_loop()
    started = loop.time()
    refused = await http.post("/v1/sessions", json={"user_id": "b"})
    assert loop.time() - started < 5, "a refusal is immediate, never a queue"
    assert_error(refused, 503, "session_limit_exceeded")
    assert int(refused.headers["Retry-After"]) >= 1
    # Both Python clients tell their caller when to come back, as the header does.
    async with HttpClient(base_url) as client:
        with pytest.raises(BackendError) as by_http:
            await client.create_session(user_id="c")
    with pytest.raises(BackendError) as by_handle:
        await backend.create_session(SessionConfig(user_id="d", agent={"type": "echo"}))
    for err in (by_http.value, by_handle.value):
        assert err.code is ErrorCode.SESSION_LIMIT_EXCEEDED
        assert err.details["retry_after_s"] == int(refused.headers["Retry-After"])
    await http.delete(f"/v1/sessions/{first.json()['session_id']}")


async def test_openapi_docs_are_served(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    assert {"/v1/sessions", "/v1/sessions/{session_id}", "/v1/health"} <= set(spec["paths"])
    assert (await http.get("/docs")).status_code == 200
