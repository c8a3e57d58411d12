"""Node-shared stage hosts without Ray: a live host and a spare per node and model; the spare
takes over when the live one dies, and a new spare starts."""

from __future__ import annotations

from typing import Any

from actors.host_pool import HostPool

WANTED = {"stt-model": ("stt", "pocketsphinx", {})}


class Hosts:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.stopped: list[str] = []

    def pool(self) -> HostPool:
        def start(node: str, kind: str, provider: str, options: dict[str, Any]) -> str:
            name = f"{kind}@{node}#{len(self.started)}"
            self.started.append(name)
            return name

        return HostPool(start, self.stopped.append, lambda handle: handle)


def test_every_node_gets_a_live_host_and_a_spare() -> None:
    hosts = Hosts()
    pool = hosts.pool()
    pool.want(WANTED)
    pool.ensure(["n1", "n2"])
    assert len(hosts.started) == 4
    assert pool.live("n1", "stt-model") is not None
    assert pool.for_node("n1")["stt-model"].node_id == "n1"  # never another node's host
    assert pool.ensure(["n1", "n2"]) == []  # nothing missing: nothing started


def test_the_spare_takes_over_and_a_new_spare_starts() -> None:
    hosts = Hosts()
    pool = hosts.pool()
    pool.want(WANTED)
    pool.ensure(["n1"])
    live = pool.live("n1", "stt-model")
    spare = next(h for h in pool.hosts() if h is not live)
    assert live is not None
    promoted = pool.lost(live.actor_id)
    assert promoted is spare and pool.failovers == 1
    assert live.handle in hosts.stopped and len(hosts.started) == 3
    assert pool.lost(live.actor_id) is None  # a second report of the same death: no-op


def test_a_model_no_longer_wanted_is_stopped_unless_a_live_call_uses_it() -> None:
    hosts = Hosts()
    pool = hosts.pool()
    pool.want(WANTED)
    pool.ensure(["n1"])
    pool.want({})
    pool.ensure(["n1"], keep_keys={"stt-model"})
    assert hosts.stopped == []
    pool.ensure(["n1"])
    assert len(hosts.stopped) == 2 and pool.hosts() == []


def test_a_node_that_left_takes_its_hosts() -> None:
    hosts = Hosts()
    pool = hosts.pool()
    pool.want(WANTED)
    pool.ensure(["n1", "n2"])
    pool.ensure(["n1"])
    assert {h.node_id for h in pool.hosts()} == {"n1"} and len(hosts.stopped) == 2
