"""Faults injected into live calls: real processes killed with SIGKILL mid-call.

A stage process (STT while the user speaks, TTS while the agent speaks) dies: the turn goes on
on a replacement (a warm spare, or Ray's restart of the same stage), the client is told with a
`stage_failover` event, and the next turn works. A session's own process dies: its client gets
an error and a close, health drops it within a round, its slot is free again, and another call
on the same node keeps talking.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

import pytest
import ray

import serve_app
from backend.errors import BackendError, ErrorCode
from backend.http_client import HttpClient
from tests.conftest import SESSION_STAGES, make_config, speak, wait_for
from tests.e2e.live_call import Call
from tests.providers.test_resilience import Endpoint

pytestmark = pytest.mark.ray

LONG_PREFIX = (
    "Here is a long answer that takes several seconds to say out loud. It keeps going for a "
    "while, so that something can go wrong in the middle of it. You said: "
)


async def worker(session: dict[str, Any]) -> Any:
    return ray.get_actor(session["worker"], namespace=serve_app.NAMESPACE)


async def spares_ready(session: dict[str, Any]) -> dict[str, Any] | None:
    stages = (await (await worker(session)).describe.remote())["stages"]
    return stages if all(s["spare"] == "ready" for s in stages.values()) else None


@pytest.fixture
async def hello() -> bytes:
    return await speak("hello world")


async def start_call(backend: Any, base_url: str, spares: bool, **fields: Any) -> Any:
    await backend.update_config(make_config(stage_spares=spares, **SESSION_STAGES))
    client = HttpClient(base_url)
    session = await client.create_session(user_id="faulty", **fields)
    if spares:
        assert await wait_for(lambda: spares_ready(session), 120), "spares never loaded"
    return client, session


@pytest.mark.parametrize("spares", [True, False], ids=["spare", "ray-restart"])
async def test_stt_stage_killed_while_the_user_speaks(
    backend: Any, base_url: str, hello: bytes, spares: bool
) -> None:
    client, session = await start_call(backend, base_url, spares)
    async with client, Call.open(session) as call:
        stages = (await (await worker(session)).describe.remote())["stages"]
        sending = asyncio.create_task(call.say(hello))
        await call.wait("speech_started", turn_id=1)
        os.kill(stages["stt"]["pid"], signal.SIGKILL)
        assert not call.of("speech_ended"), "the kill must land mid-utterance"
        await sending
        ended = await call.turn_done(1)
        assert ended["type"] == "metrics", ended
        failover = await call.wait("stage_failover", stage="stt")
        assert failover["via"] == ("spare" if spares else "restart")
        assert call.of("transcript", turn_id=1)[0]["text"] == "hello world"
        assert call.of("agent_reply", turn_id=1)
        assert not call.of("error")
        after = (await (await worker(session)).describe.remote())["stages"]["stt"]
        assert after["pid"] != stages["stt"]["pid"] and after["failovers"] == 1

        await call.say(hello)  # the next turn, on the replacement
        assert (await call.turn_done(2))["type"] == "metrics"
        assert call.of("transcript", turn_id=2)[0]["text"] == "hello world"
        await client.close_session(session["session_id"])


@pytest.mark.parametrize("spares", [True, False], ids=["spare", "ray-restart"])
async def test_tts_stage_killed_while_the_agent_speaks(
    backend: Any, base_url: str, hello: bytes, spares: bool
) -> None:
    client, session = await start_call(
        backend, base_url, spares, agent={"type": "echo", "prefix": LONG_PREFIX}
    )
    async with client, Call.open(session) as call:
        stages = (await (await worker(session)).describe.remote())["stages"]
        await call.say(hello)

        async def speaking() -> bool:
            return call.audio_frames > 0

        assert await wait_for(speaking, 90, 0.02)
        frames_at_kill = call.audio_frames
        os.kill(stages["tts"]["pid"], signal.SIGKILL)
        ended = await call.turn_done(1)
        assert ended["type"] == "metrics", ended
        assert not call.of("error")
        assert call.of("agent_reply", turn_id=1)[0]["text"].startswith(LONG_PREFIX.strip()[:20])
        assert call.audio_frames > frames_at_kill, "the reply went on after the kill"
        if spares:  # the next sentence found the stage dead and went to the spare
            assert (await call.wait("stage_failover", stage="tts"))["via"] == "spare"
            after = (await (await worker(session)).describe.remote())["stages"]["tts"]
        else:  # Ray restarted it, maybe while the sentence before was still playing
            named = ray.get_actor(f"{session['worker']}/tts", namespace=serve_app.NAMESPACE)
            after = (await named.describe.remote())[1]
        assert after["pid"] != stages["tts"]["pid"]

        await call.say(hello)
        assert (await call.turn_done(2))["type"] == "metrics"
        await client.close_session(session["session_id"])


async def test_a_session_killed_mid_call_frees_its_slot_and_spares_the_others(
    backend: Any, base_url: str, hello: bytes
) -> None:
    await backend.update_config(make_config(max_concurrent_sessions=2, health_check_interval=1.0))
    async with HttpClient(base_url) as client, contextlib.AsyncExitStack() as stack:
        doomed = await client.create_session(user_id="doomed")
        other = await client.create_session(user_id="other")
        with pytest.raises(BackendError) as full:
            await client.create_session(user_id="waiting")
        assert full.value.code is ErrorCode.SESSION_LIMIT_EXCEEDED
        doomed_pid = (await (await worker(doomed)).describe.remote())["pid"]
        other_node = (await client.get_session(other["session_id"]))["node_id"]
        assert (await client.get_session(doomed["session_id"]))["node_id"] == other_node

        # The victim listens through the Serve port (the relay outlives the session's process
        # and says why); its direct connection ends with the process that served it.
        async with (
            Call.open(doomed, "fallback_url") as victim,
            Call.open(other) as bystander,
        ):
            talking = asyncio.create_task(bystander.say(hello))
            await victim.say(hello)
            await victim.wait("speech_started")
            # Opened now, so that the session's own events went to the victim's connection.
            direct = await stack.enter_async_context(Call.open(doomed))
            before = await client.health()
            reaped_before, last_check = before["details"]["reaped_total"], before["last_check"]
            os.kill(doomed_pid, signal.SIGKILL)

            # The victim's client is told, and its socket closed: no hang.
            error = await victim.wait("error", 30)
            assert error["code"] == "session_not_active" and "died" in error["message"]

            async def closed() -> Any:
                return victim.close

            assert await wait_for(closed, 30)
            assert victim.close is not None and victim.close[0] == 1011

            async def direct_closed() -> Any:
                return direct.close

            assert await wait_for(direct_closed, 30)

            # Gone by the end of the first health round that started after the kill: wait
            # for two rounds to complete (the first may have begun before the kill).
            seen = [last_check]

            async def two_rounds_after_kill() -> bool:
                at = (await client.health())["last_check"]
                if at != seen[-1]:
                    seen.append(at)
                return len(seen) > 2

            assert await wait_for(two_rounds_after_kill, 30, 0.1)
            listed = [s["session_id"] for s in await client.list_sessions()]
            assert doomed["session_id"] not in listed and other["session_id"] in listed
            health = await client.health()
            assert health["details"]["reaped_total"] == reaped_before + 1
            await backend.health_check()
            assert backend.get_active_session_count() == 1

            # Its slot is free again: a new session takes it.
            third = await client.create_session(user_id="waiting")

            # The other call on the same node never noticed: it completes its turn.
            await talking
            assert (await bystander.turn_done(1))["type"] == "metrics"
            assert bystander.of("transcript", turn_id=1)[0]["text"] == "hello world"
            assert not bystander.of("error")
        await client.close_session(other["session_id"])
        await client.close_session(third["session_id"])


async def test_a_failing_provider_is_cut_off_and_health_names_it(
    backend: Any, base_url: str, hello: bytes
) -> None:
    endpoint = Endpoint()
    runner = await endpoint.serve()
    await backend.update_config(
        make_config(max_retries=0, circuit_failure_threshold=2, circuit_reset_timeout=600)
    )
    try:
        async with HttpClient(base_url) as client:
            endpoint.mode = "500"
            session = await client.create_session(
                user_id="unlucky", agent={"type": "webhook", "url": endpoint.url}
            )
            async with Call.open(session) as call:
                for turn in (1, 2):  # two failures in a row open the breaker
                    await call.say(hello)
                    failed = await call.turn_done(turn)
                    assert failed["type"] == "error" and "500" in failed["message"], failed
                assert endpoint.requests == 2
                health = await client.health()
                assert health["status"] == "degraded"
                name = f"webhook {endpoint.url.split('/')[2]}"
                assert any(name in r for r in health["details"]["reasons"]), health
                assert name in health["details"]["circuit_breakers"]

                await call.say(hello)  # refused at once: the provider is left alone
                refused = await call.turn_done(3)
                assert refused["type"] == "error" and "circuit open" in refused["message"]
                assert endpoint.requests == 2
            await client.close_session(session["session_id"])
            # The breaker was that session's: health no longer names the provider.
            assert name not in (await client.health())["details"].get("circuit_breakers", {})
    finally:
        await runner.cleanup()
