"""WebRTC sessions through the real stack: HTTP create, SDP offer/answer through Serve, the peer
connection terminated inside the session actor, a Python aiortc client on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest

from backend.http_client import HttpClient
from backend.webrtc_client import WebRtcCall
from pipelines.audio import rms
from tests.conftest import busy_workers, make_config, wait_for
from tests.e2e.conftest import LOOPBACK

pytestmark = pytest.mark.ray


async def session_ids(client: HttpClient) -> set[str]:
    return {s["session_id"] for s in await client.list_sessions()}


async def test_five_concurrent_webrtc_calls_then_hang_up_frees_every_slot(
    rtc_backend: Any, base_url: str, hello_16k: bytes
) -> None:
    async with HttpClient(base_url) as client:
        sessions = await asyncio.gather(
            *(
                client.create_session(user_id=f"rtc-{i}", transport="webrtc", sample_rate_hz=48000)
                for i in range(5)
            )
        )
        for s in sessions:
            assert s["transport"] == "webrtc"
            assert s["media"]["url"].endswith(f"/v1/sessions/{s['session_id']}/webrtc/offer")
            assert s["media"]["ice_servers"] == []
        calls = [WebRtcCall(s, host_addresses=LOOPBACK) for s in sessions]
        await asyncio.gather(*(c.connect() for c in calls))
        await asyncio.gather(*(c.wait_connected() for c in calls))
        results = await asyncio.gather(*(c.talk(hello_16k, 16000, timeout_s=90) for c in calls))
        stats = await asyncio.gather(*(c.inbound_stats() for c in calls))
        for result, stat in zip(results, stats, strict=True):
            assert any("hello" in t.lower() for t in result.transcripts), result.events
            assert result.replies and "hello" in result.replies[0].lower()
            reply = np.frombuffer(bytes(result.audio), dtype="<i2")
            assert rms(reply) > 100, "reply speech came back on the peer connection"
            assert stat["packets_received"] > 0
        ids = {s["session_id"] for s in sessions}
        assert ids <= await session_ids(client)
        await asyncio.gather(*(c.aclose() for c in calls))  # hang up
        assert await wait_for(lambda: _gone(client, ids), timeout_s=30), "slots freed"
        # Health counts what the registry holds, and none of these calls. (Once, in a clean-clone
        # CI run, it counted one session that was not one of them: named here if it recurs.)
        left = await client.list_sessions()
        health = await client.health()
        assert health["active_sessions"] == len(left) and not ids & {
            s["session_id"] for s in left
        }, [(s["user_id"], s["transport"], s["created_at"], s["state"]) for s in left]

        async def workers_free() -> bool:  # no worker still hosts one of these hung-up calls
            return not set((await busy_workers()).values()) & ids

        assert await wait_for(workers_free, timeout_s=30), (await busy_workers(), ids, left)


async def _gone(client: HttpClient, ids: set[str]) -> bool:
    return not (ids & await session_ids(client))


async def test_peer_connection_closing_ends_the_session(rtc_backend: Any, base_url: str) -> None:
    async with HttpClient(base_url) as client:
        session = await client.create_session(user_id="rtc-close", transport="webrtc")
        call = WebRtcCall(session, host_addresses=LOOPBACK)
        await call.connect()
        await call.wait_connected()
        await call.aclose(hangup=False)  # the browser tab closes: no goodbye message
        sid = session["session_id"]
        assert await wait_for(lambda: _gone(client, {sid}), timeout_s=45)
        with pytest.raises(Exception) as err:
            await client.get_session(sid)
        assert getattr(err.value, "code", None).value == "session_not_found"


async def test_offer_errors_name_what_is_wrong(rtc_backend: Any, base_url: str) -> None:
    async with HttpClient(base_url) as client, httpx.AsyncClient(timeout=30) as http:
        rtc = await client.create_session(user_id="rtc-errors", transport="webrtc")
        ws = await client.create_session(user_id="ws-errors")
        url, token = rtc["media"]["url"], rtc["media"]["token"]
        call = WebRtcCall(rtc, host_addresses=LOOPBACK)
        offer = await call.offer()

        async def post(target: str, body: Any) -> tuple[int, dict[str, Any]]:
            resp = await http.post(target, json=body)
            return resp.status_code, resp.json()

        status, body = await post(url, {"sdp": offer, "token": "wrong"})
        assert (status, body["error"]["code"], body["error"]["field"]) == (
            401,
            "authentication_failed",
            "token",
        )
        ws_url = f"{base_url}/v1/sessions/{ws['session_id']}/webrtc/offer"
        status, body = await post(ws_url, {"sdp": offer, "token": ws["media"]["token"]})
        assert (status, body["error"]["field"]) == (422, "transport")
        status, body = await post(url, {"sdp": "garbage", "token": token})
        assert (status, body["error"]["code"], body["error"]["field"]) == (
            422,
            "invalid_format",
            "sdp",
        )
        status, body = await post(url, {"token": token})
        assert (status, body["error"]["field"]) == (422, "sdp")
        status, body = await post(f"{base_url}/v1/sessions/nope/webrtc/offer", {"sdp": offer})
        assert (status, body["error"]["code"]) == (404, "session_not_found")
        # A good offer connects; a second one is refused while the first peer is there.
        await call.accept((await post(url, {"sdp": offer, "token": token}))[1])
        await call.wait_connected()
        again = WebRtcCall(rtc, host_addresses=LOOPBACK)
        status, body = await post(url, {"sdp": await again.offer(), "token": token})
        assert (status, body["error"]["code"]) == (409, "session_already_active")
        await again.aclose(hangup=False)
        await call.aclose()


async def test_ice_servers_config_is_validated_and_reaches_the_client(
    backend: Any, base_url: str
) -> None:
    from backend.errors import BackendError

    with pytest.raises(BackendError) as err:
        await backend.update_config(make_config(provider_config={"ice_servers": [{"url": "x"}]}))
    assert err.value.code.value == "invalid_config" and "ice_servers" in (err.value.field or "")
    turn = {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "s3cret"}
    await backend.update_config(make_config(provider_config={"ice_servers": [turn]}))
    async with HttpClient(base_url) as client:
        session = await client.create_session(user_id="rtc-ice", transport="webrtc")
        assert session["media"]["ice_servers"] == [turn]  # the browser needs them
        config = (await httpx.AsyncClient().get(f"{base_url}/v1/config")).json()
        assert config["provider_config"]["ice_servers"][0]["credential"] == "***"
        await client.close_session(session["session_id"])


LONG_PREFIX = (
    "Here is a long answer that takes several seconds to say out loud. It keeps going for a "
    "while so that you can interrupt it. And it goes on even longer than that. You said: "
)


async def test_talking_over_the_agent_cuts_the_webrtc_reply(
    rtc_backend: Any, base_url: str, hello_16k: bytes
) -> None:
    from tests.conftest import speak

    stop = await speak("stop please")
    async with HttpClient(base_url) as client:
        session = await client.create_session(
            user_id="rtc-barge",
            transport="webrtc",
            agent={"type": "echo", "prefix": LONG_PREFIX},
        )
        call = WebRtcCall(session, host_addresses=LOOPBACK)
        await call.connect()
        await call.wait_connected()
        try:
            call.play(hello_16k + bytes(16000 * 2), 16000)
            await wait_for(lambda: _speaking(call), timeout_s=60)
            await asyncio.sleep(1.0)  # the agent is well into its long reply
            call.play(stop + bytes(16000 * 3), 16000)
            second = await wait_for(lambda: _transcript_of_turn(call, 2), timeout_s=60)
        finally:
            await call.aclose()
    kinds = [e["type"] for e in call.events]
    assert "interrupted" in kinds, kinds
    t_int = call.event_at[kinds.index("interrupted")]
    # Until the user's new turn is transcribed, the long reply would still be playing; after the
    # cut only what was already in flight (pipeline lead + track + jitter buffer) may arrive.
    late = [t for t in call.loud_at if t_int + 0.5 < t < second]
    assert len(late) * 0.02 < 0.2, f"{len(late) * 20} ms of reply audio after the interruption"


async def _speaking(call: WebRtcCall) -> bool:
    return len(call.loud_at) > 10


async def _transcript_of_turn(call: WebRtcCall, turn_id: int) -> float | None:
    for event, at in zip(call.events, call.event_at, strict=True):
        if event["type"] == "transcript" and event.get("turn_id") == turn_id:
            return at
    return None
