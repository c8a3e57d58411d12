"""The `vapi` backend against a loopback Vapi: calls created through the official SDK only after
admission, Vapi's webhooks (verified by secret) and its custom-LLM requests answered by the
session's agent, tools, and the end-of-call report that ends the session and frees its slot.

The `vapi` provider is a different ingress deployment, so this module redeploys the shared app
with it and puts the `local` one back afterwards (every other test sees it unchanged)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets

from backend.iface import SessionConfig
from tests.conftest import BackendHolder, make_config, speak, wait_for
from tests.fakes.vapi import VALID_KEY, FakeVapi, running_fake_vapi

pytestmark = pytest.mark.ray

SECRET = "vapi-server-secret"


@pytest.fixture(scope="module")
async def vapi(backend_holder: BackendHolder) -> AsyncIterator[tuple[FakeVapi, str]]:
    import serve_app

    await backend_holder.get()  # the shared app exists, so it can be restored afterwards
    base_url = f"http://127.0.0.1:{backend_holder.port}"
    async with running_fake_vapi() as fake:
        config = make_config(
            provider="vapi",
            max_concurrent_sessions=2,
            provider_config={
                "api_key": VALID_KEY,
                "api_url": fake.base_url,
                "server_secret": SECRET,
                "public_url": base_url,
            },
        )
        await asyncio.to_thread(serve_app.deploy, "vapi", config, port=backend_holder.port)
        try:
            yield fake, base_url
        finally:
            async with httpx.AsyncClient(base_url=base_url) as http:
                for s in (await http.get("/v1/sessions")).json()["sessions"]:
                    await http.delete(f"/v1/sessions/{s['session_id']}")
            await asyncio.to_thread(
                serve_app.deploy, "local", make_config(), port=backend_holder.port
            )


async def create(http: httpx.AsyncClient, user: str) -> dict[str, Any]:
    resp = await http.post("/v1/sessions", json={"user_id": user})
    assert resp.status_code == 201, resp.text
    return resp.json()


def call_of(fake: FakeVapi, session_id: str) -> str:
    """The id of the Vapi call the backend placed for `session_id`."""
    return next(
        c
        for c, call in fake.calls.items()
        if call["assistant"]["metadata"]["session_id"] == session_id
    )


async def test_a_vapi_call_is_answered_by_the_session_agent_and_ends_with_its_report(
    vapi: tuple[FakeVapi, str],
) -> None:
    fake, base_url = vapi
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        session = await create(http, "caller-vapi")
        sid = session["session_id"]
        (call_id,) = list(fake.calls)
        assistant = fake.requests[0]["assistant"]
        assert assistant["model"]["provider"] == "custom-llm"
        assert assistant["model"]["url"] == f"{base_url}/v1/vapi/{sid}"
        assert assistant["server"]["url"] == f"{base_url}/v1/vapi/webhook"
        # The caller's media socket is this session's; Vapi's own URL never leaves the backend.
        assert session["media"]["url"].endswith(f"/v1/sessions/{sid}/audio")
        assert call_id not in json.dumps(session)

        assert (await fake.status(call_id, "in-progress"))[0] == 200
        assert await fake.user_says(call_id, "hello there") == "You said: hello there"
        info = (await http.get(f"/v1/sessions/{sid}")).json()
        assert info["state"] == "listening"

        # Forged requests: no secret or a wrong one is refused and changes nothing.
        status, body = await fake.post_message(
            call_id, {"type": "end-of-call-report", "endedReason": "x"}, headers={}
        )
        assert status == 401 and body["error"]["code"] == "authentication_failed"
        forged = await http.post(
            f"/v1/vapi/{sid}/chat/completions",
            headers={"X-Vapi-Secret": "guess"},
            json={"messages": [{"role": "user", "content": "hi"}], "stream": True},
        )
        assert forged.status_code == 401
        assert (await http.get(f"/v1/sessions/{sid}")).status_code == 200

        # Vapi reports the call over: the session ends, its slot is free, the report is kept.
        assert (await fake.end_call(call_id))[0] == 200
        assert (await http.get(f"/v1/sessions/{sid}")).status_code == 404
        assert (await http.get("/v1/sessions")).json()["sessions"] == []
        call = (await http.get(f"/v1/vapi/calls/{sid}")).json()
        assert call["end_of_call_report"]["ended_reason"] == "customer-ended-call"
        assert "You said: hello" in call["end_of_call_report"]["transcript"]


async def test_a_refused_session_creates_no_call(vapi: tuple[FakeVapi, str]) -> None:
    fake, base_url = vapi
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        before = len(fake.calls)
        first, second = await create(http, "a"), await create(http, "b")  # the cap is 2
        refused = await http.post("/v1/sessions", json={"user_id": "c"})
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "session_limit_exceeded"
        assert len(fake.calls) == before + 2, "no remote call for the refused session"
        # Closing a live session ends its call at Vapi (control URL `end-call`).
        await http.delete(f"/v1/sessions/{first['session_id']}")
        await http.delete(f"/v1/sessions/{second['session_id']}")
    assert [c["status"] for c in list(fake.calls.values())[before:]] == ["ended", "ended"]


async def test_tool_calls_are_answered_from_the_session_tools(
    vapi: tuple[FakeVapi, str], backend_holder: BackendHolder
) -> None:
    fake, _ = vapi

    class WithTools:
        def __init__(self) -> None:
            self.tools = {"weather": lambda city: f"sunny in {city}"}

        def reply(self, transcript: str) -> str:
            return "ok"

    be = backend_holder.backend
    sess = await be.create_session(SessionConfig(user_id="u-tools", agent_instance=WithTools()))
    call_id = list(fake.calls)[-1]
    tool_id, answer = await fake.tool_call(call_id, "weather", {"city": "Paris"})
    assert answer == {"results": [{"toolCallId": tool_id, "result": "sunny in Paris"}]}
    _, answer = await fake.tool_call(call_id, "missing", {})
    assert "no tool named 'missing'" in answer["results"][0]["error"]
    await be.close_session(sess.id)


async def test_a_websocket_call_streams_its_audio_both_ways_through_the_session(
    vapi: tuple[FakeVapi, str],
) -> None:
    fake, base_url = vapi
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        session = await create(http, "caller-socket")
        sid = session["session_id"]
        call_id = call_of(fake, sid)
        media = session["media"]
        listed = (await http.get(f"/v1/sessions/{sid}")).text
        assert call_id not in listed and "upstream" not in listed
        async with websockets.connect(f"{media['url']}?token={media['token']}") as ws:
            # The caller's audio reaches Vapi's call socket byte for byte...
            said = await speak("hello world")
            for i in range(0, len(said), 640):
                await ws.send(said[i : i + 640])

            async def vapi_heard_it() -> bool:
                return bytes(fake.heard.get(call_id, b"")) == said

            assert await wait_for(vapi_heard_it, 20)
            # ...and the assistant's audio comes back the same way.
            answer = await speak("you said hello world")
            await fake.speak(call_id, answer)
            got = bytearray()
            while len(got) < len(answer):
                frame = await asyncio.wait_for(ws.recv(), 20)
                assert isinstance(frame, bytes), frame
                got += frame
            assert bytes(got) == answer

            # The caller hangs up on the socket: Vapi ends the call and reports it, which ends
            # the session and frees its slot; the socket is closed for the caller.
            await ws.send(json.dumps({"type": "hangup"}))

            async def session_gone() -> bool:
                return (await http.get(f"/v1/sessions/{sid}")).status_code == 404

            assert await wait_for(session_gone, 30)
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 20)
        assert fake.calls[call_id]["status"] == "ended"
        call = (await http.get(f"/v1/vapi/calls/{sid}")).json()
        assert call["end_of_call_report"]["ended_reason"] == "customer-ended-call"


async def test_a_bad_token_never_reaches_the_call(vapi: tuple[FakeVapi, str]) -> None:
    fake, base_url = vapi
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        session = await create(http, "caller-bad-token")
        sid = session["session_id"]
        call_id = call_of(fake, sid)
        async with websockets.connect(f"{session['media']['url']}?token=guess") as ws:
            error = json.loads(await asyncio.wait_for(ws.recv(), 20))
            assert error["code"] == "authentication_failed"
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 20)
        assert call_id not in fake.sockets and not fake.heard.get(call_id)
        await http.delete(f"/v1/sessions/{sid}")
