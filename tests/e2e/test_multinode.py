"""Placement, per-node caps, pinning, two ingress replicas, and losing a node, on a real local
multi-node Ray cluster (`multinode_cluster.py`, run in its own process: the rest of the suite
shares one single-node Ray instance)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.multinode_cluster import RESULT_PREFIX, SLOTS_A, SLOTS_B

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def observed() -> dict[str, Any]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.multinode_cluster"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its raylets are its own: stopped with its process group
        env={**os.environ, "RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0"},
    )
    try:
        out, err = proc.communicate(timeout=560)  # under the full suite its setup took ~340 s
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_PREFIX)]
    assert proc.returncode == 0 and lines, err[-3000:]
    return json.loads(lines[-1].removeprefix(RESULT_PREFIX))


def test_the_cap_holds_across_two_ingress_replicas_under_a_burst(observed: dict) -> None:
    assert observed["pool_ready"]
    assert observed["burst_admitted"] == 4
    assert observed["burst_refusals"] == ["session_limit_exceeded"] * 6
    assert len(observed["admissions_by_replica"]) == 2  # both replicas admitted concurrently


def test_sessions_spread_over_nodes_within_each_nodes_slots_with_stages_pinned(
    observed: dict,
) -> None:
    placement = observed["placement"]
    assert len(placement) == SLOTS_A + SLOTS_B  # a cap of 10 is bounded by the 5 slots
    assert observed["more_refusals"] == ["session_limit_exceeded"] * 3
    nodes = [p["node"] for p in placement]
    assert nodes.count(observed["node_a"]) == SLOTS_A
    assert nodes.count(observed["node_b"]) == SLOTS_B
    assert observed["head"] not in nodes  # the head offers no session slots
    # Each node's calls share that node's own STT host, never another node's.
    hosts = {
        p["node"]: {q["stt_pid"] for q in placement if q["node"] == p["node"]} for p in placement
    }
    assert all(len(pids) == 1 for pids in hosts.values()) and len(hosts) == 2
    assert hosts[observed["node_a"]] != hosts[observed["node_b"]]
    assert {p["stt_placement"] for p in placement} == {"node"}
    # Each call's audio goes straight to its own process: a port of its own, not Serve's.
    ports = [urlsplit(p["media_url"]).port for p in placement]
    assert len(set(ports)) == len(ports)
    assert all(urlsplit(p["fallback_url"]).port not in ports for p in placement)
    assert all(p["stt"] == p["node"] == p["tts"] for p in placement)
    assert observed["capacity_full"]["free_slots"] == 0


def test_losing_a_node_fails_only_its_sessions_and_the_others_keep_talking(
    observed: dict,
) -> None:
    assert observed["a_sessions_reaped"]
    after = observed["capacity_after"]
    assert after["active_sessions"] == SLOTS_B and after["session_slots"] == SLOTS_B
    assert list(after["nodes"]) == [observed["node_b"]]
    assert observed["health_after"]["details"]["reaped_total"] == SLOTS_A
    assert observed["b_heard"] == ["hello world"] * SLOTS_B
    end = observed["capacity_end"]
    assert end["active_sessions"] == 0 and end["free_slots"] == SLOTS_B


def test_the_lost_nodes_clients_are_told_and_capacity_returns_when_a_node_rejoins(
    observed: dict,
) -> None:
    # Its direct connection ended with the process that served it; through the Serve port,
    # the relay says why.
    assert observed["lost_client"]["close_code"] in (1006, 1011)
    lost = observed["lost_client_relayed"]
    assert lost["close_code"] == 1011
    assert [e["code"] for e in lost["errors"]] == ["session_not_active"]
    assert "died" in lost["errors"][0]["message"]
    assert observed["slots_back"]
    assert observed["node_c"] in observed["capacity_rejoined"]["nodes"]
    assert observed["rejoin_nodes"].count(observed["node_c"]) == SLOTS_A
    assert observed["c_heard"] == "hello world"
