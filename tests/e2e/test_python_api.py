"""The Python API (README, "Python API") against the embedded `local` provider, on real Ray."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from backend import new_backend
from backend.errors import BackendError, ErrorCode
from backend.iface import Config, PipelineState, PipelineType, SessionConfig
from tests.conftest import (
    TEST_CAP,
    make_config,
    only_warm_pool_left,
    wait_for,
    worker_actor_names,
)

pytestmark = pytest.mark.ray


async def collect_turn(sess: Any, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Events until the turn ends (metrics, error or an empty transcript)."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        async for event in sess.events():
            events.append(event)
            kind = event["type"]
            if kind in ("metrics", "error") or (kind == "transcript" and not event["text"]):
                return events
    return events


async def test_seed_tutorial_flow(backend_holder: Any) -> None:
    """The seed tutorial's flow, translated line by line."""
    cfg = Config(
        provider="local",
        pipeline_type=PipelineType.STT_TTS,
        stt_provider="pocketsphinx",
        tts_provider="espeak",
        max_concurrent_sessions=100,
        latency_target=0.5,
        timeout=30,
    )
    be = await new_backend("local", cfg, port=backend_holder.port)
    status = await be.health_check()
    assert status.healthy and status.status == "healthy"
    before = be.get_active_session_count()
    sess = await be.create_session(
        SessionConfig(
            user_id="user-1",
            transport="websocket",
            connection_url="ws://127.0.0.1:8000/voice",
            pipeline_type=PipelineType.STT_TTS,
            agent_callback=lambda transcript: "You said: " + transcript,
        )
    )
    assert be.get_active_session_count() == before + 1
    assert await sess.get_state() is PipelineState.IDLE
    await be.close_session(sess.id)
    assert be.get_active_session_count() == before
    await be.stop()
    assert be.get_connection_state().value == "disconnected"


async def test_session_methods(backend: Any, hello_16k: bytes) -> None:
    replies: list[str] = []

    async def agent(transcript: str) -> str:  # async callbacks work too
        return f"async heard {transcript}"

    sess = await backend.create_session(SessionConfig(user_id="u-methods", agent_callback=agent))
    assert (await backend.get_session(sess.id)).id == sess.id
    assert sess.id in [s.id for s in await backend.list_sessions()]
    await sess.start()
    assert await sess.get_state() is PipelineState.LISTENING
    assert await sess.get_persistence_status() == "active"
    assert (await sess.update_metadata({"crm": 42}))["crm"] == 42

    await sess.process_audio(hello_16k + bytes(32000))
    events = await collect_turn(sess)
    replies = [e["text"] for e in events if e["type"] == "agent_reply"]
    assert replies and replies[0].startswith("async heard") and "hello" in replies[0]
    audio = b""
    async with asyncio.timeout(10):
        async for chunk in sess.receive_audio():
            audio += chunk
            if len(audio) >= 16000 * 2 * 0.3:
                break
    assert len(audio) >= 16000 * 2 * 0.3

    await sess.set_agent_callback(lambda t: "swapped agent")
    await sess.process_audio(hello_16k + bytes(32000))
    events = await collect_turn(sess)
    assert [e["text"] for e in events if e["type"] == "agent_reply"] == ["swapped agent"]

    await sess.send_audio(bytes(640))
    with pytest.raises(BackendError) as bad:
        await sess.process_audio(b"\x00\x01\x02")
    assert bad.value.code is ErrorCode.INVALID_FORMAT
    await sess.stop()
    assert await sess.get_state() is PipelineState.CLOSED
    assert await sess.get_persistence_status() == "completed"
    with pytest.raises(BackendError) as gone:
        await backend.close_session(sess.id)
    assert gone.value.code is ErrorCode.SESSION_NOT_FOUND


async def test_agent_errors_and_timeouts_are_events_and_the_session_keeps_listening(
    backend: Any, hello_16k: bytes
) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        def reply(self, transcript: str) -> str:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("the agent broke")
            return "recovered"

    sess = await backend.create_session(SessionConfig(user_id="u-flaky", agent_instance=Flaky()))
    await sess.process_audio(hello_16k + bytes(32000))
    first = await collect_turn(sess)
    err = [e for e in first if e["type"] == "error"]
    assert err and err[0]["code"] == "agent_error" and "the agent broke" in err[0]["message"]
    states = [e["state"] for e in first if e["type"] == "state"]
    assert states[:3] == ["idle", "listening", "processing"] and states[-1] == "listening"
    await sess.process_audio(hello_16k + bytes(32000))
    second = await collect_turn(sess)
    assert [e["text"] for e in second if e["type"] == "agent_reply"] == ["recovered"]
    states = [e["state"] for e in second if e["type"] == "state"]
    assert states == ["processing", "speaking", "listening"]

    await backend.update_config(make_config(timeout=1))

    async def slow(transcript: str) -> str:
        await asyncio.sleep(5)
        return "too late"

    slow_sess = await backend.create_session(SessionConfig(user_id="u-slow", agent_callback=slow))
    await slow_sess.process_audio(hello_16k + bytes(32000))
    events = await collect_turn(slow_sess)
    err = [e for e in events if e["type"] == "error"]
    assert err and err[0]["code"] == "timeout"
    assert await slow_sess.get_state() is PipelineState.LISTENING


async def test_capacity_burst_never_overshoots_and_leaves_nothing(backend: Any) -> None:
    await backend.update_config(make_config(max_concurrent_sessions=3))

    async def one(i: int) -> Any:
        try:
            return await backend.create_session(
                SessionConfig(user_id=f"burst-{i}", agent={"type": "echo"})
            )
        except BackendError as err:
            return err

    results = await asyncio.gather(*(one(i) for i in range(10)))
    sessions = [r for r in results if not isinstance(r, BackendError)]
    errors = [r for r in results if isinstance(r, BackendError)]
    assert len(sessions) == 3 and len(errors) == 7
    assert {e.code for e in errors} == {ErrorCode.SESSION_LIMIT_EXCEEDED}
    assert "3 of 3" in errors[0].message
    assert (await backend.health_check()).details["active_sessions"] == 3
    names = set(worker_actor_names())
    workers, stt_hosts = set(), set()
    for s in sessions:  # each session: one process of its own; the node's STT host is shared
        info = (await backend.get_session(s.id)).info
        w = info["worker"]
        workers.add(w)
        assert w in names and f"{w}/stt" not in names and f"{w}/tts" not in names
        stages = info["stages"]
        assert {stages[stage]["node_id"] for stage in ("stt", "tts")} == {info["node_id"]}
        assert stages["stt"]["placement"] == "node" and stages["tts"]["placement"] == "inline"
        assert stages["tts"]["pid"] == info["pid"] != stages["stt"]["pid"]
        stt_hosts.add(stages["stt"]["pid"])
    assert len(workers) == 3 and len(stt_hosts) == 1

    for s in sessions:
        await backend.close_session(s.id)
    assert backend.get_active_session_count() == 0
    assert await wait_for(only_warm_pool_left), worker_actor_names()


async def test_lowered_cap_refuses_new_sessions_and_keeps_live_ones(backend: Any) -> None:
    live = [
        await backend.create_session(SessionConfig(user_id=f"cap-{i}", agent={"type": "echo"}))
        for i in range(2)
    ]
    await backend.update_config(make_config(max_concurrent_sessions=1))
    assert (await backend.get_config()).max_concurrent_sessions == 1
    with pytest.raises(BackendError) as refused:
        await backend.create_session(SessionConfig(user_id="cap-x", agent={"type": "echo"}))
    assert refused.value.code is ErrorCode.SESSION_LIMIT_EXCEEDED
    assert [await s.get_state() for s in live] == [PipelineState.IDLE] * 2
    health = await backend.health_check()
    assert health.status == "degraded" and health.details["session_utilization"] == 2.0


async def test_killed_session_actor_is_reaped_and_its_slot_freed(backend: Any) -> None:
    sess = await backend.create_session(SessionConfig(user_id="u-kill", agent={"type": "echo"}))
    other = await backend.create_session(
        SessionConfig(user_id="u-bystander", agent={"type": "echo"})
    )
    info = (await backend.get_session(sess.id)).info
    other_worker = (await backend.get_session(other.id)).info["worker"]
    os.kill(info["pid"], signal.SIGKILL)

    async def reaped() -> bool:
        health = await backend.health_check()
        return health.details["active_sessions"] == 1 and health.details["reaped_total"] >= 1

    assert await wait_for(reaped, timeout_s=15)
    assert backend.get_active_session_count() == 1
    with pytest.raises(BackendError) as gone:
        await backend.get_session(sess.id)
    assert gone.value.code is ErrorCode.SESSION_NOT_FOUND
    assert await other.get_state() is PipelineState.IDLE

    async def killed_worker_gone() -> bool:  # its stage actors went with it
        names = worker_actor_names()
        return not [n for n in names if n.startswith(info["worker"])] and other_worker in names

    assert await wait_for(killed_worker_gone)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"latency_target": 0.05}, "latency_target"),
        ({"latency_target": 6}, "latency_target"),
        ({"timeout": 0.5}, "timeout"),
        ({"timeout": 301}, "timeout"),
        ({"max_retries": 11}, "max_retries"),
        ({"retry_delay": 0.01}, "retry_delay"),
        ({"retry_delay": 31}, "retry_delay"),
        ({"max_concurrent_sessions": -1}, "max_concurrent_sessions"),
        ({"pipeline_type": "duplex"}, "pipeline_type"),
        ({"stt_provider": ""}, "stt_provider"),
        ({"tts_provider": None}, "tts_provider"),
        ({"pipeline_type": "s2s"}, "s2s_provider"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_config_rules_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(BackendError) as info:
        Config(**kwargs)
    assert info.value.code is ErrorCode.INVALID_CONFIG
    assert info.value.field == field and field in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "user_id"),
        ({"user_id": "  "}, "user_id"),
        ({"user_id": "u", "transport": "carrier-pigeon"}, "transport"),
        ({"user_id": "u", "connection_url": "not a url"}, "connection_url"),
        ({"user_id": "u", "pipeline_type": "duplex"}, "pipeline_type"),
        ({"user_id": "u", "sample_rate_hz": 12345}, "sample_rate_hz"),
        ({"user_id": "u", "agent": {"name": "echo"}}, "agent"),
        ({"user_id": "u", "agent_callback": "not callable"}, "agent_callback"),
        ({"user_id": "u", "agent": None}, "agent"),
    ],
)
def test_session_config_rules_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    kwargs = {"agent": {"type": "echo"}, **kwargs} if "agent" not in kwargs else kwargs
    if "agent_callback" in kwargs:
        kwargs.pop("agent")
    with pytest.raises(BackendError) as info:
        SessionConfig(**kwargs)
    assert info.value.code is ErrorCode.INVALID_CONFIG
    assert info.value.field == field


async def test_wss_urls_are_accepted() -> None:
    sc = SessionConfig(
        user_id="u", connection_url="wss://voice.example.com/ws", agent={"type": "echo"}
    )
    assert sc.connection_url.startswith("wss://")


async def test_unknown_providers_are_named(backend: Any) -> None:
    with pytest.raises(BackendError) as info:
        await new_backend("telepathy", Config(provider="telepathy"))
    assert info.value.code is ErrorCode.PROVIDER_NOT_FOUND and "local" in info.value.message
    await backend.update_config(make_config(stt_provider="whisper-9000"))
    with pytest.raises(BackendError) as stt:
        await backend.create_session(SessionConfig(user_id="u", agent={"type": "echo"}))
    assert stt.value.code is ErrorCode.PROVIDER_NOT_FOUND and "pocketsphinx" in stt.value.message
    assert backend.get_active_session_count() == 0
    with pytest.raises(BackendError) as bad_key:
        await backend.update_config(make_config(provider_config={"colour": "blue"}))
    assert bad_key.value.field == "provider_config.colour"
    assert (await backend.get_config()).max_concurrent_sessions == TEST_CAP


async def test_a_provider_option_updated_through_one_replica_applies_on_every_replica(
    backend: Any, backend_holder: Any, base_url: str
) -> None:
    """update_config reaches one ingress replica; the others pick the change up from the
    registry on their next admission (here: where the local provider says media is served)."""
    import serve_app
    from backend.http_client import HttpClient

    port = backend_holder.port
    await asyncio.to_thread(serve_app.deploy, "local", make_config(), port=port, replicas=2)
    try:
        before = (await backend.capacity())["admissions_by_replica"]
        await backend.update_config(
            make_config(provider_config={"host": "media.example", "port": 9443})
        )
        sessions: list[dict[str, Any]] = []
        after: dict[str, int] = {}

        async def both_replicas_admitted() -> bool:
            # The HTTP proxy learns of the second replica a moment after deploy returns, so a
            # burst may all go to one: burst until both have admitted since the update.
            nonlocal after
            async with HttpClient(base_url) as client:
                burst = await asyncio.gather(
                    *(client.create_session(user_id=f"replicas-{i}") for i in range(8))
                )
                for s in burst:
                    await client.close_session(s["session_id"])
            sessions.extend(burst)
            after = (await backend.capacity())["admissions_by_replica"]
            return len([r for r, n in after.items() if n > before.get(r, 0)]) == 2

        admitted_by_both = await wait_for(both_replicas_admitted, timeout_s=30, interval_s=1)
    finally:
        await asyncio.to_thread(serve_app.deploy, "local", make_config(), port=port, replicas=1)
    assert admitted_by_both, (before, after)
    bases = {s["media"]["url"].split("/v1/")[0] for s in sessions}
    assert bases == {"ws://media.example:9443"}
