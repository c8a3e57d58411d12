"""Where a call's stages run (`stt_placement`, `tts_placement`, `s2s_placement`), end to end.

`inline` stages run in the session's own process, `node` ones in the node's shared stage host,
`session` ones in the call's own pinned actors; every placement takes a real voice turn. The
node's host dying mid-utterance costs the call nothing but a pause (the spare takes over and
the utterance is replayed), and a node admits only the local calls its CPUs can decode.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import httpx
import pytest
import ray

import serve_app
from backend.errors import BackendError, ErrorCode
from backend.http_client import HttpClient
from backend.iface import SessionConfig
from tests.conftest import make_config, speak, wait_for
from tests.e2e.live_call import Call

pytestmark = pytest.mark.ray


@pytest.fixture
async def hello() -> bytes:
    return await speak("hello world")


async def one_turn(session: dict[str, Any], pcm: bytes) -> Call:
    async with Call.open(session) as call:
        await call.say(pcm)
        assert (await call.turn_done(1))["type"] == "metrics"
        assert call.of("transcript", turn_id=1)[0]["text"] == "hello world"
        assert call.of("agent_reply", turn_id=1)[0]["text"] == "You said: hello world"
        return call


@pytest.mark.parametrize(
    ("stt", "tts"), [("inline", "inline"), ("session", "session"), ("node", "inline")]
)
async def test_every_placement_takes_a_voice_turn(
    backend: Any, base_url: str, hello: bytes, stt: str, tts: str
) -> None:
    await backend.update_config(make_config(stt_placement=stt, tts_placement=tts))
    async with HttpClient(base_url) as client:
        session = await client.create_session(user_id=f"placed-{stt}-{tts}")
        worker = ray.get_actor(session["worker"], namespace=serve_app.NAMESPACE)
        stages, pid = session["stages"], (await worker.describe.remote())["pid"]
        assert stages["stt"]["placement"] == stt and stages["tts"]["placement"] == tts
        for kind, where in (("stt", stt), ("tts", tts)):
            assert stages[kind]["node_id"] == session["node_id"]
            assert (stages[kind]["pid"] == pid) is (where == "inline"), (kind, stages[kind])
        named = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}
        own = {f"{session['worker']}/{kind}" for kind in ("stt", "tts")}
        assert (own <= named) is (stt == tts == "session")
        await one_turn(session, hello)
        await client.close_session(session["session_id"])


async def test_s2s_inline_runs_in_the_session_process(
    backend: Any, base_url: str, hello: bytes
) -> None:
    await backend.update_config(make_config(s2s_placement="inline"))
    async with HttpClient(base_url) as client:
        session = await client.create_session(user_id="s2s-inline", pipeline_type="s2s")
        assert session["stages"]["s2s"]["placement"] == "inline"
        worker = ray.get_actor(session["worker"], namespace=serve_app.NAMESPACE)
        assert session["stages"]["s2s"]["pid"] == (await worker.describe.remote())["pid"]
        async with Call.open(session) as call:
            await call.say(hello)
            reply = await call.wait("agent_reply")
            assert "hello world" in reply["text"]
        await client.close_session(session["session_id"])


async def test_node_placement_is_refused_for_a_tts(backend: Any) -> None:
    with pytest.raises(BackendError) as refused:
        await backend.update_config(make_config(tts_placement="node"))
    assert refused.value.code is ErrorCode.INVALID_CONFIG
    assert "tts_placement" in refused.value.message


async def test_the_node_stt_host_killed_mid_utterance_loses_no_transcript(
    backend: Any, base_url: str, hello: bytes
) -> None:
    """Two calls on the node share its STT host; it dies while one caller speaks. The spare
    takes over, the utterance is replayed from the call's own buffer, and both calls go on."""
    async with HttpClient(base_url) as client:
        first = await client.create_session(user_id="host-kill-1")
        other = await client.create_session(user_id="host-kill-2")
        host_pid = first["stages"]["stt"]["pid"]
        assert other["stages"]["stt"]["pid"] == host_pid  # one host serves the node's calls

        async def spare_ready() -> bool:
            hosts = (await client.health())["details"]["stage_hosts"]
            return any(h["role"] == "spare" and h["ready"] for h in hosts)

        assert await wait_for(spare_ready, 120), "the node's spare host never loaded"
        async with Call.open(first) as call:
            sending = asyncio.create_task(call.say(hello))
            await call.wait("speech_started", turn_id=1)
            os.kill(host_pid, signal.SIGKILL)
            await sending
            assert (await call.turn_done(1))["type"] == "metrics"
            failover = await call.wait("stage_failover", stage="stt")
            assert failover["via"] == "node_spare"
            assert call.of("transcript", turn_id=1)[0]["text"] == "hello world"
            assert not call.of("error")
        await one_turn(other, hello)  # the other call, on the promoted host
        health = (await client.health())["details"]
        assert health["stage_host_failovers"] >= 1
        assert host_pid not in {h["pid"] for h in health["stage_hosts"]}
        for s in (first, other):
            await client.close_session(s["session_id"])


async def test_a_node_refuses_local_calls_beyond_its_speech_capacity(
    backend: Any, base_url: str
) -> None:
    await backend.update_config(make_config(speech_load_threshold=0.75))
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        capacity = (await http.get("/v1/capacity")).json()
        by_node = capacity["speech"]["capacity_by_node"]
        assert capacity["speech"]["cpu_cores_per_call"] > 0 and len(by_node) == 1
        (room,) = by_node.values()
        cpus = next(iter(capacity["nodes"].values()))["cpus"]
        assert room == int(cpus * 0.75 / capacity["speech"]["cpu_cores_per_call"])
        sessions = [
            await backend.create_session(
                SessionConfig(user_id=f"speech-{i}", agent={"type": "echo"})
            )
            for i in range(room)
        ]
        refused = await http.post("/v1/sessions", json={"user_id": "one-too-many"})
        assert refused.status_code == 503 and refused.headers["retry-after"]
        error = refused.json()["error"]
        assert error["code"] == "session_limit_exceeded"
        assert "speech capacity" in error["message"]
        assert backend.get_active_session_count() == room
        await backend.close_session(sessions[0].id)  # a slot frees: the next call gets it
        again = await http.post("/v1/sessions", json={"user_id": "next-in-line"})
        assert again.status_code == 201, again.text
