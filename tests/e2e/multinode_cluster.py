"""A local multi-node Ray cluster (three raylets on this machine) running the backend with two
ingress replicas; run by `test_multinode.py` in its own process, because the rest of the suite
shares one single-node Ray instance.

    python -m tests.e2e.multinode_cluster     # prints "RESULT {json of observations}"

Node A offers 2 `voice_session` slots, node B 3, the head none. It observes: a burst against
the cap through both replicas, where sessions and their stages land, per-node caps, and what
happens to every session when node A is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from typing import Any

import httpx
import ray
import websockets
from ray import serve
from ray.cluster_utils import Cluster

import serve_app
from backend.errors import BackendError
from backend.http_client import HttpClient
from backend.iface import Config
from tests.conftest import free_port, speak

SLOTS_A, SLOTS_B = 2, 3
RESULT_PREFIX = "RESULT "
FAST_FAILURE_DETECTION = {"health_check_period_ms": 500, "health_check_failure_threshold": 4}


async def wait_until(check: Any, timeout_s: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = await check()
        except (KeyError, ValueError, httpx.HTTPError):  # a transient answer: ask again
            value = None
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.25)


async def scenario(cluster: Cluster, node_a: Any, node_b: Any, port: int) -> dict[str, Any]:
    out: dict[str, Any] = {"node_a": node_a.node_id, "node_b": node_b.node_id}
    out["head"] = cluster.head_node.node_id
    config = Config(max_concurrent_sessions=4, warm_pool_size=1, health_check_interval=1.0)
    # All raylets share this machine's ports: one HTTP proxy, on the head.
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    handle = serve_app.deploy("local", config, port=port, replicas=2, on_head=True)
    async with HttpClient(f"http://127.0.0.1:{port}", timeout_s=120) as http:

        async def capacity() -> dict[str, Any]:
            return (await http._http.get("/v1/capacity")).json()

        async def pool_ready() -> bool:
            nodes = (await capacity())["nodes"]
            return len(nodes) == 2 and all(n["idle"] == 1 for n in nodes.values())

        out["pool_ready"] = bool(await wait_until(pool_ready, 180))
        out["capacity_before"] = await capacity()

        # 1. A burst of 10 against a cap of 4, spread over both ingress replicas.
        async def create(i: int) -> dict[str, Any] | str:
            try:
                return await http.create_session(user_id=f"burst-{i}")
            except BackendError as err:
                return err.code.value

        burst = await asyncio.gather(*(create(i) for i in range(10)))
        sessions = [s for s in burst if isinstance(s, dict)]
        out["burst_refusals"] = [s for s in burst if isinstance(s, str)]
        out["burst_admitted"] = len(sessions)
        out["admissions_by_replica"] = (await capacity())["admissions_by_replica"]

        # 2. Raise the cap above the cluster's 5 slots: the per-node caps now bound it.
        await handle.api_update_config.remote(
            config.model_copy(update={"max_concurrent_sessions": 10}).model_dump(mode="json")
        )
        more = await asyncio.gather(*(create(100 + i) for i in range(4)))
        sessions += [s for s in more if isinstance(s, dict)]
        out["more_refusals"] = [s for s in more if isinstance(s, str)]
        infos = [await http.get_session(s["session_id"]) for s in sessions]
        out["placement"] = [
            {
                "node": i["node_id"],
                "stt": i["stages"]["stt"]["node_id"],
                "tts": i["stages"]["tts"]["node_id"],
                "stt_placement": i["stages"]["stt"]["placement"],
                "stt_pid": i["stages"]["stt"]["pid"],
                "media_url": s["media"]["url"],
                "fallback_url": s["media"].get("fallback_url"),
            }
            for s, i in zip(sessions, infos, strict=True)
        ]
        out["capacity_full"] = await capacity()

        # 3. Remove node A: only its sessions fail; their slots go; B's sessions keep talking.
        on_a = [
            s["session_id"]
            for s, i in zip(sessions, infos, strict=True)
            if i["node_id"] == node_a.node_id
        ]
        on_b = [s for s, i in zip(sessions, infos, strict=True) if i["node_id"] == node_b.node_id]
        lost = next(s for s in sessions if s["session_id"] in on_a)
        listener = asyncio.create_task(listen_until_closed(lost))
        relayed = asyncio.create_task(listen_until_closed(lost, "fallback_url"))
        await asyncio.sleep(1.0)  # the client is connected and idle when its node goes
        cluster.remove_node(node_a, allow_graceful=False)
        removed_at = time.monotonic()

        async def a_sessions_gone() -> bool:
            listed = {
                s["session_id"] for s in (await http._http.get("/v1/sessions")).json()["sessions"]
            }
            return not (listed & set(on_a))

        out["a_sessions_reaped"] = bool(await wait_until(a_sessions_gone, 90))
        out["reap_s"] = round(time.monotonic() - removed_at, 1)
        out["lost_client"] = await asyncio.wait_for(listener, 90)
        out["lost_client_relayed"] = await asyncio.wait_for(relayed, 90)

        async def node_a_gone() -> dict[str, Any] | None:
            # Ray declares a node dead some seconds after its sessions' actors are (GCS health
            # checks); until then its slots are still counted, so wait for that, not a moment.
            cap = await capacity()
            return cap if node_a.node_id not in cap["nodes"] else None

        out["capacity_after"] = await wait_until(node_a_gone, 90) or await capacity()
        out["health_after"] = await http.health()
        hello = await speak("hello world")
        heard = []
        for s in on_b:
            result = await http.talk(s, hello, 16000, realtime=False, trailing_silence_s=1.0)
            heard.append(" ".join(result.transcripts))
        out["b_heard"] = heard
        for s in on_b:
            await http.close_session(s["session_id"])
        out["capacity_end"] = await capacity()

        # 4. A node joins in A's place: its slots come back and take calls.
        node_c = cluster.add_node(num_cpus=1, resources={"voice_session": SLOTS_A})
        out["node_c"] = node_c.node_id

        async def slots_back() -> bool:
            return (await capacity())["session_slots"] == SLOTS_A + SLOTS_B

        out["slots_back"] = bool(await wait_until(slots_back, 120))
        out["capacity_rejoined"] = await capacity()
        fresh = [await http.create_session(user_id=f"rejoin-{i}") for i in range(SLOTS_A + SLOTS_B)]
        infos = [await http.get_session(s["session_id"]) for s in fresh]
        out["rejoin_nodes"] = [i["node_id"] for i in infos]
        on_c = next(s for s, i in zip(fresh, infos, strict=True) if i["node_id"] == node_c.node_id)
        result = await http.talk(on_c, hello, 16000, realtime=False, trailing_silence_s=1.0)
        out["c_heard"] = " ".join(result.transcripts)
        for s in fresh:
            await http.close_session(s["session_id"])
    serve_app.undeploy()
    return out


async def listen_until_closed(session: dict[str, Any], via: str = "url") -> dict[str, Any]:
    """What the client of a session on the lost node sees: its events and the close code.
    `via`: "url" (served by the session's own process) or "fallback_url" (the Serve port)."""
    url = f"{session['media'][via]}?token={session['media']['token']}"
    events = []
    async with websockets.connect(url) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for msg in ws:
                if isinstance(msg, str):
                    events.append(json.loads(msg))
        return {"errors": [e for e in events if e["type"] == "error"], "close_code": ws.close_code}


def main() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "resources": {"voice_session": 0},
            "include_dashboard": False,
            "_system_config": FAST_FAILURE_DETECTION,
        },
    )
    try:
        node_a = cluster.add_node(num_cpus=1, resources={"voice_session": SLOTS_A})
        node_b = cluster.add_node(num_cpus=1, resources={"voice_session": SLOTS_B})
        ray.init(address=cluster.address, namespace=serve_app.NAMESPACE, log_to_driver=False)
        result = asyncio.run(scenario(cluster, node_a, node_b, free_port()))
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")  # Ray logs to stdout too


if __name__ == "__main__":
    main()
