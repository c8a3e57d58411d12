"""The Serve ingress replica dies (SIGKILL) or is replaced by a redeploy, mid-call.

The audio websocket ends at the ingress, so a killed replica drops it; the call itself lives in
its session actor (owned by the detached registry, not by the replica). What must hold: the
session survives, the client reconnects to it with the same media token on the new replica and
keeps talking, and the new replica lists it (its view is the registry's).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

import psutil
import pytest
import ray

import serve_app
from backend.http_client import HttpClient
from tests.conftest import BackendHolder, make_config, wait_for
from tests.e2e.live_call import Call

pytestmark = pytest.mark.ray

REPLICA_TITLE = f"ServeReplica:{serve_app.APP_NAME}:VoiceIngress"


def ingress_pids() -> set[int]:
    """The ingress replicas of this test run's own Ray instance (other Ray clusters may run
    on this machine: only our descendants count)."""
    pids = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if REPLICA_TITLE in " ".join(p.cmdline()):
                pids.add(p.pid)
        except psutil.Error:
            continue
    return pids


async def worker_pid(session: dict[str, Any]) -> int:
    actor = ray.get_actor(session["worker"], namespace=serve_app.NAMESPACE)
    return (await actor.describe.remote())["pid"]


async def talk_one_turn(
    session: dict[str, Any], hello: bytes, turn_id: int, via: str = "url"
) -> Call:
    async with Call.open(session, via) as call:
        await call.say(hello)
        assert (await call.turn_done(turn_id))["type"] == "metrics", call.events
        assert call.of("transcript", turn_id=turn_id)[0]["text"] == "hello world"
        return call


async def test_killed_ingress_replica_the_call_survives_and_reconnects(
    backend: Any, base_url: str, hello_16k: bytes
) -> None:
    async with HttpClient(base_url) as client:
        session = await client.create_session(user_id="survivor")
        pid_before = await worker_pid(session)
        old = ingress_pids()
        assert len(old) == 1
        async with Call.open(session) as direct, contextlib.AsyncExitStack() as stack:
            await direct.say(hello_16k)
            assert (await direct.turn_done(1))["type"] == "metrics"
            # A second client, through the Serve port, joins between turns (two sockets of one
            # call share its events: none is expected while both are open).
            relayed = await stack.enter_async_context(Call.open(session, "fallback_url"))
            os.kill(next(iter(old)), signal.SIGKILL)

            async def dropped() -> Any:
                return relayed.close

            assert await wait_for(dropped, 60), "the socket through the dead replica must end"
            # The direct socket never went through the replica: the call goes on, on it.
            await direct.say(hello_16k)
            assert (await direct.turn_done(2))["type"] == "metrics", direct.events
            assert direct.close is None

        async def new_replica_serves() -> Any:
            if not ingress_pids() - old:
                return None
            try:
                return [s["session_id"] for s in await client.list_sessions()]
            except Exception:  # the replica is still starting
                return None

        listed = await wait_for(new_replica_serves, 120, 0.5)
        assert listed and session["session_id"] in listed  # rebuilt from the registry
        health = await client.health()
        assert health["active_sessions"] >= 1
        assert await worker_pid(session) == pid_before  # the same call, never restarted

        await talk_one_turn(session, hello_16k, 3, "fallback_url")  # same token, new replica
        await client.close_session(session["session_id"])


async def test_redeploy_keeps_live_calls_and_the_new_version_sees_them(
    backend: Any, base_url: str, backend_holder: BackendHolder, hello_16k: bytes
) -> None:
    async with HttpClient(base_url) as client:
        session = await client.create_session(user_id="through-a-deploy")
        pid_before = await worker_pid(session)
        old = ingress_pids()
        async with Call.open(session) as call:
            await call.say(hello_16k)
            assert (await call.turn_done(1))["type"] == "metrics", call.events
            # A new version (a changed option): Serve starts a new replica and stops the old
            # one, and with it the sockets it terminates (Ray 2.60 does not wait for them).
            new_config = make_config(latency_target=0.7)
            await asyncio.to_thread(serve_app.deploy, "local", new_config, port=backend_holder.port)
            assert ingress_pids() - old, "a new replica runs the new version"

            async def old_replica_gone() -> bool:
                return not (ingress_pids() & old)

            assert await wait_for(old_replica_gone, 90, 0.5)
            assert not call.of("closed"), "the session itself was never closed"

        # The call lives on: the new version lists it and the client reconnects to it.
        assert session["session_id"] in [s["session_id"] for s in await client.list_sessions()]
        assert (await client.get_session(session["session_id"]))["state"] != "closed"
        assert await worker_pid(session) == pid_before
        await talk_one_turn(session, hello_16k, 2)  # the turn count goes on: the same call
        assert (await backend.get_config()).latency_target == 0.7  # the new version's config
        await client.close_session(session["session_id"])
