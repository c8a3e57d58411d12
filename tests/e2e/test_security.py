"""Security over the real Serve app: API keys and an auth hook on the control plane, media tokens
scoped to one session and short-lived, per-user quotas and rate limits at admission, data
retention at session end, and secrets that never reach logs or error bodies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from backend.auth import Credentials
from backend.http_client import HttpClient
from tests.conftest import make_config, wait_for

pytestmark = pytest.mark.ray

ALICE_KEY = "alice-key-" + uuid.uuid4().hex
BOB_KEY = "bob-key-" + uuid.uuid4().hex
SERVICE_KEY = "service-key-" + uuid.uuid4().hex
KEYS = [
    {"key": ALICE_KEY, "user_id": "alice"},
    {"key": BOB_KEY, "user_id": "bob"},
    SERVICE_KEY,
]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def http(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        yield client


@pytest.fixture
async def keyed(backend: Any) -> Any:
    """The shared backend with API keys (the `backend` fixture restores the open config)."""
    await backend.update_config(make_config(api_keys=KEYS))
    return backend


@pytest.fixture
async def hooks_reset(backend: Any) -> AsyncIterator[Any]:
    yield backend
    await backend.set_hooks()  # no hook outlives its test


def assert_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code and err["message"]
    assert "Traceback" not in resp.text
    return err


async def create(http: httpx.AsyncClient, user: str, key: str | None = None) -> httpx.Response:
    return await http.post(
        "/v1/sessions", json={"user_id": user}, headers=bearer(key) if key else {}
    )


# -- API keys ----------------------------------------------------------------------------------
async def test_control_routes_need_a_key_and_refusals_change_nothing(
    keyed: Any, http: httpx.AsyncClient
) -> None:
    for method, path in [
        ("POST", "/v1/sessions"),
        ("GET", "/v1/sessions"),
        ("GET", "/v1/sessions/abc"),
        ("DELETE", "/v1/sessions/abc"),
        ("GET", "/v1/config"),
        ("GET", "/v1/capacity"),
    ]:
        body = {"user_id": "alice"} if method == "POST" else None
        resp = await http.request(method, path, json=body)
        err = assert_error(resp, 401, "authentication_failed")
        assert "API key" in err["message"]
        resp = await http.request(method, path, json=body, headers=bearer("not-a-key-at-all-0"))
        assert_error(resp, 401, "authentication_failed")
        resp = await http.request(method, path, json=body, headers={"X-API-Key": "wrong" * 4})
        assert_error(resp, 401, "authentication_failed")
    resp = await http.post("/v1/sessions", json={"user_id": 7, "transport": "x"})
    assert_error(resp, 401, "authentication_failed")  # the key is checked before the body
    assert await keyed.list_sessions() == []  # the refused POSTs created nothing
    # Public: the health status for load balancers (no details), the page, the docs.
    health = (await http.get("/v1/health")).json()
    assert health["status"] in ("healthy", "degraded") and "details" not in health
    assert "details" in (await http.get("/v1/health", headers=bearer(SERVICE_KEY))).json()
    assert (await http.get("/")).status_code == 200
    assert (await http.get("/openapi.json")).status_code == 200
    config = (await http.get("/v1/config", headers=bearer(SERVICE_KEY))).json()
    assert config["api_keys"] and all(k["key_sha256"] == "***" for k in config["api_keys"])
    assert ALICE_KEY not in json.dumps(config)


async def test_a_users_key_reaches_only_that_users_sessions(
    keyed: Any, http: httpx.AsyncClient
) -> None:
    a = await create(http, "alice", ALICE_KEY)
    assert a.status_code == 201, a.text
    b = await create(http, "bob", BOB_KEY)
    assert b.status_code == 201, b.text
    sid_a, sid_b = a.json()["session_id"], b.json()["session_id"]
    # Alice may not create sessions as bob, nor read or close his.
    assert_error(await create(http, "bob", ALICE_KEY), 403, "authorization_failed")
    get_b = await http.get(f"/v1/sessions/{sid_b}", headers=bearer(ALICE_KEY))
    assert_error(get_b, 403, "authorization_failed")
    close_b = await http.delete(f"/v1/sessions/{sid_b}", headers=bearer(ALICE_KEY))
    assert_error(close_b, 403, "authorization_failed")
    listed = (await http.get("/v1/sessions", headers=bearer(ALICE_KEY))).json()["sessions"]
    assert [s["session_id"] for s in listed] == [sid_a]
    # Bob's session is untouched by alice's attempts; bob and a service key can act on it.
    assert (await http.get(f"/v1/sessions/{sid_b}", headers=bearer(BOB_KEY))).status_code == 200
    everyone = (await http.get("/v1/sessions", headers=bearer(SERVICE_KEY))).json()["sessions"]
    assert {s["session_id"] for s in everyone} == {sid_a, sid_b}
    assert (await http.delete(f"/v1/sessions/{sid_b}", headers=bearer(BOB_KEY))).status_code == 204
    resp = await http.delete(f"/v1/sessions/{sid_a}", headers=bearer(SERVICE_KEY))
    assert resp.status_code == 204


def header_hook(creds: Credentials) -> str | None:
    """An auth hook: a (toy) signed-in user from a header set by a gateway."""
    token = creds.headers.get("x-gateway-user", "")
    return token.removeprefix("signed:") if token.startswith("signed:") else None


async def test_an_auth_hook_given_in_python_guards_http(
    hooks_reset: Any, http: httpx.AsyncClient
) -> None:
    await hooks_reset.set_hooks(auth_hook=header_hook)
    assert_error(await create(http, "carol"), 401, "authentication_failed")
    resp = await http.post(
        "/v1/sessions", json={"user_id": "carol"}, headers={"x-gateway-user": "forged"}
    )
    assert_error(resp, 401, "authentication_failed")
    as_dave = {"x-gateway-user": "signed:dave"}
    resp = await http.post("/v1/sessions", json={"user_id": "carol"}, headers=as_dave)
    assert_error(resp, 403, "authorization_failed")
    resp = await http.post("/v1/sessions", json={"user_id": "dave"}, headers=as_dave)
    assert resp.status_code == 201, resp.text
    sid = resp.json()["session_id"]
    # The Python API is trusted in-cluster code: it still sees and closes everything.
    assert [s.id for s in await hooks_reset.list_sessions()] == [sid]
    assert (await http.delete(f"/v1/sessions/{sid}", headers=as_dave)).status_code == 204


# -- media tokens ------------------------------------------------------------------------------
async def refused_audio(url: str) -> tuple[int, dict[str, Any]]:
    async with websockets.connect(url) as ws:
        event = json.loads(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        return ws.close_code or 0, event


async def test_media_tokens_open_one_session_and_expire(
    backend: Any, http: httpx.AsyncClient
) -> None:
    await backend.update_config(make_config(media_token_ttl=2.0))
    a = (await create(http, "tok-a")).json()
    b = (await create(http, "tok-b")).json()
    url_b = b["media"]["url"]
    for token in (a["media"]["token"], "forged-" + b["media"]["token"][:8], ""):
        code, event = await refused_audio(f"{url_b}?token={token}")
        assert code == 1008 and event["type"] == "error"
        assert event["code"] == "authentication_failed"
    # The refused attempts changed nothing: b is still there and its own token works.
    async with websockets.connect(f"{url_b}?token={b['media']['token']}") as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert await wait_for_event(ws, "pong")
    await asyncio.sleep(2.2)  # past media_token_ttl
    code, event = await refused_audio(f"{a['media']['url']}?token={a['media']['token']}")
    assert code == 1008 and "expired" in event["message"]
    assert (await http.get(f"/v1/sessions/{a['session_id']}")).status_code == 200
    # Its owner renews it (a control call); the new token opens the audio again.
    fresh = (await http.post(f"/v1/sessions/{a['session_id']}/media_token")).json()
    assert fresh["token"] != a["media"]["token"]
    async with websockets.connect(f"{a['media']['url']}?token={fresh['token']}") as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert await wait_for_event(ws, "pong")


async def wait_for_event(ws: Any, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            msg = await ws.recv()
            if isinstance(msg, str) and json.loads(msg).get("type") == kind:
                return json.loads(msg)


# -- quotas and rate limits ----------------------------------------------------------------------
async def test_per_user_quota_refuses_only_that_user(backend: Any, http: httpx.AsyncClient) -> None:
    await backend.update_config(make_config(max_sessions_per_user=2))
    for _ in range(2):
        assert (await create(http, "greedy")).status_code == 201
    resp = await create(http, "greedy")
    err = assert_error(resp, 429, "rate_limit_exceeded")
    assert "max_sessions_per_user=2" in err["message"] and "greedy" in err["message"]
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await create(http, "modest")).status_code == 201  # others are unaffected
    assert len(await backend.list_sessions()) == 3


async def test_session_rate_per_user_is_a_token_bucket(
    backend: Any, http: httpx.AsyncClient
) -> None:
    await backend.update_config(make_config(session_rate_per_user=2))
    for _ in range(2):
        sid = (await create(http, "hasty")).json()["session_id"]
        assert (await http.delete(f"/v1/sessions/{sid}")).status_code == 204
    resp = await create(http, "hasty")
    err = assert_error(resp, 429, "rate_limit_exceeded")
    assert "too fast" in err["message"]
    assert 1 <= int(resp.headers["Retry-After"]) <= 30
    assert (await create(http, "patient")).status_code == 201


class DenyList:
    """A custom rate limiter (Beluga's `RateLimiter`): refuses the users it lists."""

    def __init__(self, denied: set[str]) -> None:
        self.denied = denied

    async def allow(self, key: str) -> bool:
        return key not in self.denied

    def retry_after(self, key: str) -> float:
        return 7.0


async def test_a_custom_rate_limiter_runs_at_admission(
    hooks_reset: Any, http: httpx.AsyncClient
) -> None:
    await hooks_reset.set_hooks(rate_limiter=DenyList({"spammer"}))
    resp = await create(http, "spammer")
    assert_error(resp, 429, "rate_limit_exceeded")
    assert resp.headers["Retry-After"] == "7"
    assert (await create(http, "regular")).status_code == 201
    assert [s.info["user_id"] for s in await hooks_reset.list_sessions()] == ["regular"]


# -- data retention ------------------------------------------------------------------------------
def file_writer(path: Path) -> Any:
    def keep(record: dict[str, Any]) -> None:  # runs in the session's actor, same host here
        path.write_text(json.dumps(record))

    return keep


@pytest.mark.parametrize("retain", [True, False])
async def test_retention_hook_gets_the_transcript_only_when_configured(
    hooks_reset: Any, base_url: str, hello_16k: bytes, tmp_path: Path, retain: bool
) -> None:
    out = tmp_path / "retained.json"
    await hooks_reset.update_config(make_config(retain_transcripts=retain))
    await hooks_reset.set_hooks(data_retention_hook=file_writer(out))
    async with HttpClient(base_url) as client:
        session = await client.create_session(user_id="retained-user")
        result = await client.talk(session, hello_16k, 16000, realtime=False)
        assert result.transcripts == ["hello world"], result.events
        await client.close_session(session["session_id"])
    record = json.loads(await wait_for(lambda: asyncio.to_thread(_read, out)))
    assert record["session_id"] == session["session_id"]
    assert record["user_id"] == "retained-user" and record["audio"] is None
    said = [m["content"] for m in record["history"] if m["role"] == "user"]
    if retain:
        assert said == ["hello world"]
    else:
        assert record["history"] == [] and record["transcripts_retained"] is False


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


# -- secrets -----------------------------------------------------------------------------------
def ray_log_text() -> str:
    """Every log file of this test run's Ray cluster: ingress, registry, workers, stages."""
    import ray

    logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path())
    return "\n".join(
        p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file() and p.stat().st_size
    )


async def logs_with(marker: str) -> str | None:
    text = await asyncio.to_thread(ray_log_text)
    return text if marker in text else None


def printer(marker: str) -> Any:
    def show(record: dict[str, Any]) -> None:
        print(marker, record["session_id"])  # lands in the session actor's log file

    return show


async def test_secrets_never_reach_logs_errors_or_config(
    hooks_reset: Any, http: httpx.AsyncClient, hello_16k: bytes
) -> None:
    backend = hooks_reset
    from tests.fakes.cartesia import VALID_KEY, running_fake_cartesia

    wrong_provider_key = "sk-canary-" + uuid.uuid4().hex
    api_key = "api-canary-" + uuid.uuid4().hex
    presented_wrong_key = "presented-canary-" + uuid.uuid4().hex
    secrets = [VALID_KEY, wrong_provider_key, api_key, presented_wrong_key]
    bodies: list[str] = []
    auth = bearer(api_key)
    # A positive control: a line a session actor prints must be found by the same search.
    marker = "visible-canary-" + uuid.uuid4().hex
    await backend.set_hooks(data_retention_hook=printer(marker))
    async with running_fake_cartesia() as fake:
        for key in (VALID_KEY, wrong_provider_key):
            options = {"api_key": key, "api_url": fake.base_url}
            await backend.update_config(
                make_config(
                    stt_provider="cartesia",
                    tts_provider="cartesia",
                    stage_provider_config={"cartesia": options},
                    api_keys=[api_key],
                )
            )
            bodies.append((await http.get("/v1/config", headers=auth)).text)
            bodies.append((await http.get("/v1/health", headers=auth)).text)
            bodies.append(
                (await http.get("/v1/sessions", headers=bearer(presented_wrong_key))).text
            )
            resp = await http.post("/v1/sessions", json={"user_id": "leaky"}, headers=auth)
            bodies.append(resp.text)
            if resp.status_code == 201:  # the working key: a call, with a bad frame in it
                session = resp.json()
                url = f"{session['media']['url']}?token={session['media']['token']}"
                async with websockets.connect(url) as ws:
                    await ws.send(b"\x01")  # odd length: an error event
                    await ws.send("not json")
                    bodies += [str(await ws.recv()) for _ in range(2)]
                async with HttpClient(str(http.base_url)) as client:
                    result = await client.talk(session, hello_16k, 16000, realtime=False)
                bodies += [json.dumps(e) for e in result.events]
                assert result.replies, result.events
                sid = session["session_id"]
                bodies.append((await http.delete(f"/v1/sessions/{sid}", headers=auth)).text)
    await asyncio.sleep(2.0)  # log lines reach their files
    logs = await wait_for(lambda: logs_with(marker))
    assert logs and marker in logs  # the search reaches the session actors' logs
    for secret in secrets:
        assert not any(secret in body for body in bodies), f"secret in a response: {secret[:6]}"
        assert secret not in logs, f"secret in the Ray logs: {secret[:6]}"


# -- oversized input and clients that do not read ------------------------------------------------
async def test_oversized_bodies_and_frames_are_refused(
    backend: Any, http: httpx.AsyncClient
) -> None:
    resp = await http.post(
        "/v1/sessions",
        content=b'{"user_id": "big", "metadata": {"x": "' + b"x" * (2 << 20) + b'"}}',
        headers={"content-type": "application/json"},
    )
    err = assert_error(resp, 413, "invalid_format")
    assert "too large" in err["message"]
    assert await backend.list_sessions() == []
    session = (await create(http, "big-frames")).json()
    async with websockets.connect(
        f"{session['media']['url']}?token={session['media']['token']}", max_size=None
    ) as ws:
        await ws.send(bytes(1 << 20))  # 1 MiB in one frame: over max_frame_bytes
        event = await wait_for_event(ws, "error")
        assert "frame too large" in event["message"]
        await ws.send("x" * 10_000)
        assert "frame too large" in (await wait_for_event(ws, "error"))["message"]
        await ws.send(json.dumps({"type": "ping"}))  # the connection still works
        assert await wait_for_event(ws, "pong")


async def test_a_client_that_stops_reading_and_sending_is_closed_with_a_reason(
    backend: Any,
) -> None:
    """It never reads its websocket while 5 minutes of reply audio are queued for it: the relay
    sends at real-time pace (so the ingress holds little), the session's outbox drops the oldest
    audio past its cap, and after `client_stall_timeout` the session is closed, saying why."""
    from backend.iface import SessionConfig

    await backend.update_config(make_config(client_stall_timeout=3.0))
    session = await backend.create_session(SessionConfig(user_id="deaf", agent={"type": "echo"}))
    other = await backend.create_session(SessionConfig(user_id="fine", agent={"type": "echo"}))
    media = session.info["media"]
    url = f"{media['url']}?token={media['token']}"
    async with websockets.connect(url, max_queue=1, ping_interval=None, max_size=None) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        for _ in range(10):
            await session.send_audio(bytes(16000 * 2 * 30))
        info = await session.get_info()
        assert info["audio_bytes_out"] == 10 * 16000 * 2 * 30

        async def gone() -> bool:
            return session.id not in {s.id for s in await backend.list_sessions()}

        assert await wait_for(gone, timeout_s=60)
        assert await other.get_state() != "closed"  # nobody else noticed
        # What the client finds when it reads at last: the reason, after the paced audio.
        reasons = []
        with contextlib.suppress(websockets.ConnectionClosed):
            async with asyncio.timeout(60):
                async for msg in ws:
                    if isinstance(msg, str) and json.loads(msg).get("type") == "closed":
                        reasons.append(json.loads(msg)["reason"])
        assert reasons and "client stalled" in reasons[-1], reasons
    assert ws.close_code == 1008


async def test_the_user_quota_holds_across_two_ingress_replicas(
    backend: Any, backend_holder: Any, http: httpx.AsyncClient
) -> None:
    """A burst for one user through two replicas: admission counts in the one registry."""
    from ray import serve

    import serve_app

    config = make_config(max_sessions_per_user=3)
    port = backend_holder.port
    await asyncio.to_thread(serve_app.deploy, "local", config, port=port, replicas=2)
    try:
        burst = await asyncio.gather(*(create(http, "bursty") for _ in range(8)))
        statuses = sorted(r.status_code for r in burst)
        assert statuses == [201] * 3 + [429] * 5, [r.text for r in burst]
        assert all(
            r.json()["error"]["code"] == "rate_limit_exceeded"
            for r in burst[3:]
            if r.status_code == 429
        )
        assert (await create(http, "calm")).status_code == 201
        status = await asyncio.to_thread(serve.status)
        ingress = status.applications[serve_app.APP_NAME].deployments["VoiceIngress"]
        assert ingress.replica_states.get("RUNNING") == 2
    finally:
        await asyncio.to_thread(serve_app.deploy, "local", make_config(), port=port, replicas=1)
