"""Pipecat's SmallWebRTC clients talk to a `pipecat` session with transport "webrtc": offer/answer
with `pc_id`, trickled ICE candidates, renegotiation and restart, RTVI on the data channel and
reply audio on the track — driven by tests/peers/pipecat_webrtc_client.py with the real
`pipecat-ai` package's message types, in its own venv."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.http_client import HttpClient
from backend.webrtc_client import WebRtcCall
from tests.conftest import BackendHolder, make_config, wait_for
from tests.e2e.conftest import LOOPBACK
from tests.e2e.providers_fixture import pipecat_bot_server, run_peer, serve_provider

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
async def pipecat_rtc_url(backend_holder: BackendHolder) -> AsyncIterator[str]:
    async for url in serve_provider(backend_holder, "pipecat"):
        await _configure({})
        yield url


async def _configure(provider_config: dict[str, Any]) -> None:
    import serve_app

    # Loopback host candidates only, so no media traffic leaves the host.
    provider_config = {"ice_host_addresses": LOOPBACK, **provider_config}
    cfg = make_config(provider="pipecat", provider_config=provider_config)
    out = await serve_app.app_handle().api_update_config.remote(cfg.model_dump(mode="json"))
    assert "ok" in out, out


@pytest.fixture
def speech_file(tmp_path: Path, hello_16k: bytes) -> Path:
    path = tmp_path / "hello.pcm"
    path.write_bytes(hello_16k)
    return path


async def _gone(client: HttpClient, session_id: str) -> bool:
    return session_id not in {s["session_id"] for s in await client.list_sessions()}


async def test_smallwebrtc_client_talks_renegotiates_and_restarts(
    pipecat_rtc_url: str, speech_file: Path
) -> None:
    async with HttpClient(pipecat_rtc_url) as client:
        session = await client.create_session(
            user_id="pipecat-rtc", transport="webrtc", output_sample_rate_hz=16000
        )
        sid, media = session["session_id"], session["media"]
        assert media["url"].endswith(f"/v1/sessions/{sid}/pipecat/offer")
        got = await run_peer(
            "pipecat", "pipecat_webrtc_client.py", media["url"], media["token"], str(speech_file)
        )
        # disconnect-bot ended the session: the client heard peerLeft, the slot is free.
        assert got["peer_left"], got["all_types"]
        assert await wait_for(lambda: _gone(client, sid), timeout_s=45)
    assert got["bot_ready"] == {"id": "ready-1", "version": "2.2.0"}
    assert "not JSON" in got["malformed_error"]["error"]
    assert got["malformed_error"]["fatal"] is False
    first, renegotiated, restarted = got["pc_ids"]
    assert renegotiated == first  # the same peer connection, renegotiated
    assert restarted != first  # a new one, as Pipecat names a restarted connection
    for i, turn in enumerate(got["turns"]):  # each connection: transcript and spoken reply
        assert turn["transcripts"] == ["hello world"], (i, turn)
        assert turn["reply_done"] and turn["loud_frames"] >= 25, turn
        for kind in ("user-started-speaking", "bot-started-speaking", "bot-output"):
            assert kind in turn["types"], turn["types"]
    assert got["all_types"].count("metrics") >= 2  # the last turn's may come after the reply
    assert got["peak_rms"] > 1000


async def test_smallwebrtc_signalling_errors_name_what_is_wrong(pipecat_rtc_url: str) -> None:
    async with HttpClient(pipecat_rtc_url) as client, httpx.AsyncClient(timeout=30) as http:
        rtc = await client.create_session(user_id="pipecat-rtc-errors", transport="webrtc")
        ws = await client.create_session(user_id="pipecat-ws")
        url, token = rtc["media"]["url"], rtc["media"]["token"]
        peer = WebRtcCall(rtc, host_addresses=LOOPBACK)
        offer = await peer.offer()

        async def send(method: str, target: str, body: Any) -> tuple[int, dict[str, Any]]:
            resp = await http.request(method, target, json=body)
            return resp.status_code, resp.json()

        status, body = await send("POST", url, {"sdp": offer, "type": "offer"})
        assert (status, body["error"]["field"]) == (401, "token")
        status, body = await send("POST", f"{url}?token=wrong", {"sdp": offer})
        assert (status, body["error"]["code"]) == (401, "authentication_failed")
        # The token in request_data (camelCase, as the JS client sends it) is accepted.
        status, body = await send("POST", url, {"sdp": "garbage", "requestData": {"token": token}})
        assert (status, body["error"]["code"], body["error"]["field"]) == (
            422,
            "invalid_format",
            "sdp",
        )
        status, body = await send("POST", f"{url}?token={token}", {"type": "offer"})
        assert status == 422 and "sdp" in body["error"]["message"]
        ws_url = f"{pipecat_rtc_url}/v1/sessions/{ws['session_id']}/pipecat/offer"
        status, body = await send("POST", f"{ws_url}?token={ws['media']['token']}", {"sdp": offer})
        assert (status, body["error"]["field"]) == (422, "transport")
        patch = {"pc_id": "pc-nope", "candidates": []}
        status, body = await send("PATCH", f"{url}?token={token}", patch)
        assert (status, body["error"]["code"]) == (404, "session_not_found")
        # A good offer connects; a new call (no pc_id) is refused while it is there.
        status, answer = await send("POST", f"{url}?token={token}", {"sdp": offer})
        assert status == 200 and answer["type"] == "answer" and answer["pc_id"]
        await peer.accept(answer)
        await peer.wait_connected()
        bad = {
            "pc_id": answer["pc_id"],
            "candidates": [{"candidate": "candidate:x", "sdp_mid": "0"}],
        }
        status, body = await send("PATCH", f"{url}?token={token}", bad)
        assert (status, body["error"]["field"]) == (422, "candidate")
        again = WebRtcCall(rtc, host_addresses=LOOPBACK)
        status, body = await send("POST", f"{url}?token={token}", {"sdp": await again.offer()})
        assert (status, body["error"]["code"]) == (409, "session_already_active")
        for s in (rtc, ws):
            await client.close_session(s["session_id"])
        await again.aclose(hangup=False)
        await peer.aclose(hangup=False)


async def test_smallwebrtc_calls_relay_to_a_pipecat_bot_started_through_its_runner(
    pipecat_rtc_url: str, speech_file: Path, tmp_path: Path
) -> None:
    record = tmp_path / "bot-bodies.jsonl"
    bot_env = {"PIPECAT_BOT_ICE_LOOPBACK": "1", "PIPECAT_BOT_RECORD": str(record)}
    async with pipecat_bot_server("webrtc", **bot_env) as bot_url:
        await _configure({"pipecat_server_url": bot_url})
        try:
            async with HttpClient(pipecat_rtc_url) as client:
                session = await client.create_session(user_id="pipecat-relay", transport="webrtc")
                sid, media = session["session_id"], session["media"]
                got = await run_peer(
                    "pipecat",
                    "pipecat_webrtc_client.py",
                    *(media["url"], media["token"], str(speech_file), "--echo"),
                )
                # The client hung up: the session ends (and the relay with it).
                assert await wait_for(lambda: _gone(client, sid), timeout_s=45)
        finally:
            await _configure({})
    assert got["bot_about"]["library"] == "pipecat-ai"  # the real bot answered client-ready
    bodies = [json.loads(line) for line in record.read_text().splitlines()]
    assert bodies == [{"session_id": sid, "user_id": "pipecat-relay"}]  # started for this call
    first, renegotiated = got["pc_ids"]
    assert renegotiated == first
    for heard in got["echoes"]:  # it spoke back what it heard, before and after renegotiating
        assert heard >= 25, got
    assert got["peak_rms"] > 1000
