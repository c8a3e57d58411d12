"""Density: 100 concurrent sessions (the seed's cap) on this one node, each with an idle
websocket connected, all answering pings; then 10 of them, chosen at random, take a real turn.

    .venv/bin/python -m benchmarks.density [--sessions 100] [--windows 3] [--window-s 20]

Reports: time to fill 100 sessions from an empty pool (cold starts, all requested at once);
unique memory per call (USS of every process a call owns, plus its share of the node's shared
stage hosts); idle CPU per call (every Ray process over quiet windows, minus the same figure on
the empty system in this run); `GET /v1/health` latency with all sessions live; the turns.
Each beside its floor from the same run (benchmarks/density_floor.py): a bare Ray actor
measured the same way, and a static route through the same Serve proxy.
The calls are idle, so speech admission (`speech_load_threshold`, 6 talking local calls on
2 cores) is off here: it is measured by `benchmarks/voice_latency.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import threading
import time
from typing import Any

import httpx
import psutil
import websockets

from benchmarks.common import (
    RESULTS,
    cpu_seconds,
    local_backend,
    machine,
    ray_processes,
    rss_mb,
    session_pids,
    summary,
    table,
    uss_mb,
    write,
)
from benchmarks.density_floor import bare_actor_floor, main_thread_wakeups

# A call is one process (~70 MB) plus its share of the node's STT host. The guard never fills
# the shared machine past what it can hold, and a watchdog stops the run if memory runs low.
EST_MB_PER_SESSION = 100
TURNS = 10  # calls that take a real voice turn after the hold
TARGETS = {"uss_mb": 70.0, "idle_cpu_pct": 0.35, "health_p99_ms": 20.0}
KEEP_FREE_GB = 5
ABORT_BELOW_GB = 1.5


def watchdog() -> None:
    """Interrupt this run (cleanly: Ray is stopped on the way out) if memory runs low."""

    def watch() -> None:
        while True:
            if psutil.virtual_memory().available < ABORT_BELOW_GB * 2**30:
                print("memory low: stopping the benchmark", flush=True)
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def all_ray_pids() -> list[int]:
    return [p.pid for p in ray_processes()]


def idle_cpu(pids: list[int], window_s: float) -> float:
    """Cores used by `pids` over a quiet window (1.0 = one full core)."""
    before, t0 = cpu_seconds(pids), time.monotonic()
    time.sleep(window_s)
    return (cpu_seconds(pids) - before) / (time.monotonic() - t0)


async def fill(url: str, n: int) -> tuple[list[dict[str, Any]], list[float], float, list[str]]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:

        async def one(i: int) -> tuple[dict[str, Any] | None, float, str | None]:
            t0 = time.perf_counter()
            resp = await http.post("/v1/sessions", json={"user_id": f"density-{i}"})
            ms = (time.perf_counter() - t0) * 1000
            if resp.status_code != 201:
                return None, ms, resp.text[:200]
            return resp.json(), ms, None

        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - t0
    sessions = [r[0] for r in results if r[0] is not None]
    errors = [r[2] for r in results if r[2] is not None]
    return sessions, [r[1] for r in results], elapsed, errors


async def connect_all(sessions: list[dict[str, Any]]) -> list[Any]:
    conns = []
    for s in sessions:
        media = s["media"]
        conns.append(await websockets.connect(f"{media['url']}?token={media['token']}"))
    return conns


async def latencies(url: str, n: int, path: str = "/v1/health") -> list[float]:
    out = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for _ in range(n):
            t0 = time.perf_counter()
            resp = await http.get(path)
            out.append((time.perf_counter() - t0) * 1000)
            resp.raise_for_status()
    return out


async def pings(handle: Any, sessions: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """Get every session through the Python handle (each get pings the session's actor; the
    handle's record has the process ids); returns how many answered, and the records."""
    envs = [await handle.api_get_session.remote(s["session_id"]) for s in sessions]
    infos = [e["ok"] for e in envs if "ok" in e]
    answered = sum(1 for i in infos if i.get("state") in ("idle", "listening"))
    return answered, infos


def shared_pids(info: dict[str, Any]) -> list[int]:
    """Processes that serve every call on the node (the `node` placement's stage hosts)."""
    return [s["pid"] for s in info["stages"].values() if s.get("placement") == "node"]


async def random_turns(sessions: list[dict[str, Any]], conns: list[Any]) -> dict[str, Any]:
    """TURNS calls chosen at random say "hello world" on their open websocket, five at a time;
    each must get its transcript and reply audio back."""
    from tests.conftest import speak

    pcm = await speak("hello world")
    chosen = random.Random(7).sample(range(len(conns)), min(TURNS, len(conns)))

    async def one(i: int) -> tuple[bool, float]:
        ws, t0 = conns[i], time.monotonic()
        audio = pcm + bytes(640 * 75)  # 1.5 s of silence ends the turn
        for off in range(0, len(audio), 640):  # 20 ms frames, in real time
            await ws.send(audio[off : off + 640])
            await asyncio.sleep(0.02)
        heard, audio = "", False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60):
                while not (heard and audio):
                    msg = await ws.recv()
                    if isinstance(msg, bytes):
                        audio = True
                    elif (event := json.loads(msg)).get("type") == "transcript":
                        heard = event.get("text", "")
        return bool(heard and audio), time.monotonic() - t0

    results = []
    for batch in range(0, len(chosen), 5):
        results += await asyncio.gather(*(one(i) for i in chosen[batch : batch + 5]))
    return {
        "tried": len(chosen),
        "answered": sum(ok for ok, _ in results),
        "turn_s": [round(t, 2) for _, t in results],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--window-s", type=float, default=20.0)
    args = ap.parse_args()
    avail_gb = psutil.virtual_memory().available / 2**30
    n = min(args.sessions, int((avail_gb - KEEP_FREE_GB) * 1024 / EST_MB_PER_SESSION))
    print(f"{avail_gb:.1f} GiB available: filling {n} sessions", flush=True)
    watchdog()
    config = {
        "max_concurrent_sessions": n,
        "warm_pool_size": 0,
        "timeout": 300,
        "health_check_interval": 5.0,
        "speech_load_threshold": 0.0,
        "client_stall_timeout": 900.0,  # the calls hold silent sockets on purpose
    }
    with local_backend(n + 2, **config) as (handle, url):
        asyncio.run(_warm_up(url))
        base_pids = all_ray_pids()
        base_rss = rss_mb(base_pids)
        base_cpu = [idle_cpu(base_pids, args.window_s) for _ in range(args.windows)]
        floor = bare_actor_floor(n, args.windows, args.window_s, statistics.median(base_cpu))
        print(f"bare Ray actor floor: {floor}", flush=True)
        sessions, create_ms, fill_s, errors = asyncio.run(fill(url, n))
        print(f"filled {len(sessions)}/{n} in {fill_s:.1f} s ({len(errors)} errors)", flush=True)
        result = asyncio.run(_measure(handle, url, sessions, args, base_pids, base_rss, base_cpu))
        result["bare_actor_floor"] = floor
    result.update(
        {
            "benchmark": "density",
            "machine": machine(),
            "settings": {**vars(args), "sessions_filled": len(sessions), "requested": n},
            "fill_from_empty_pool_s": round(fill_s, 1),
            "create_to_ready_during_fill_ms": summary(create_ms),
            "fill_errors": errors[:5],
        }
    )
    write("density", result)
    plot(result)
    print(report(result))


async def _warm_up(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        sid = (await http.post("/v1/sessions", json={"user_id": "warmup"})).json()["session_id"]
        await http.delete(f"/v1/sessions/{sid}")
    await asyncio.sleep(3)


async def _measure(
    handle: Any,
    url: str,
    sessions: list[dict[str, Any]],
    args: argparse.Namespace,
    base_pids: list[int],
    base_rss: float,
    base_cpu: list[float],
) -> dict[str, Any]:
    conns = await connect_all(sessions)
    await asyncio.sleep(5)
    answered, infos = await pings(handle, sessions)
    own = [[i["pid"], *session_pids(i)] for i in infos if i.get("stages")]
    shared = {pid for i in infos for pid in shared_pids(i)}
    own = [[p for p in dict.fromkeys(group) if p not in shared] for group in own]
    flat = [p for group in own for p in group]
    n = max(1, len(own))
    hosts_uss = uss_mb(sorted(shared))
    uss = [uss_mb(group) + hosts_uss / n for group in own]  # each call's share of the hosts
    every = all_ray_pids()
    session_cpu, total_cpu = [], []
    for _ in range(args.windows):
        before_s, before_t, t0 = cpu_seconds(flat), cpu_seconds(every), time.monotonic()
        await asyncio.sleep(args.window_s)
        dt = time.monotonic() - t0
        session_cpu.append((cpu_seconds(flat) - before_s) / dt)
        total_cpu.append((cpu_seconds(every) - before_t) / dt)
    wakeups = await asyncio.to_thread(main_thread_wakeups, [i["pid"] for i in infos])
    health, static = [], []
    for _ in range(args.windows):  # interleaved, so both see the same load
        health += await latencies(url, 100)
        static += await latencies(url, 100, "/v1")
    rss_sessions, rss_every = rss_mb(flat), rss_mb(every)
    turns = await random_turns(sessions, conns)
    for c in conns:
        await c.close()
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        await asyncio.gather(*(http.delete(f"/v1/sessions/{s['session_id']}") for s in sessions))
    base = statistics.median(base_cpu)
    per_session_pct = [100 * c / n for c in session_cpu]
    per_session_all_pct = [100 * max(0.0, c - base) / n for c in total_cpu]
    return {
        "sessions_answering_pings": answered,
        "websockets_open": len(conns),
        "uss_per_session_mb": summary(uss),
        "rss_sessions_total_mb": round(rss_sessions, 0),
        "rss_ray_total_mb": round(rss_every, 0),
        "rss_ray_baseline_mb": round(base_rss, 0),
        "idle_cpu_per_session_pct_of_core": {
            "session_processes": summary(per_session_pct),
            "all_ray_processes_minus_baseline": summary(per_session_all_pct),
            "baseline_cores_empty_system": [round(b, 4) for b in base_cpu],
        },
        "session_main_thread_wakeups_per_s": wakeups,
        "health_check_ms": summary(health),
        "static_route_ms": summary(static),
        "stage_hosts_uss_mb": round(hosts_uss, 1),
        "turns_after_hold": turns,
        "targets": {
            "sessions_100": answered >= 100,
            "uss_le_70mb": summary(uss)["p50"] <= TARGETS["uss_mb"],
            "idle_cpu_le_0.35pct": statistics.median(per_session_all_pct)
            <= TARGETS["idle_cpu_pct"],
            "health_p99_le_20ms": summary(health)["p99"] <= TARGETS["health_p99_ms"],
            "turns_10_of_10": turns["answered"] == turns["tried"] == TURNS,
        },
        "raw": {
            "uss_mb": [round(u, 1) for u in uss],
            "health_ms": [round(h, 2) for h in health],
            "static_ms": [round(h, 2) for h in static],
        },
    }


def report(r: dict[str, Any]) -> str:
    cpu = r["idle_cpu_per_session_pct_of_core"]
    floor = r["bare_actor_floor"]
    rows = [
        [
            "sessions filled / answering pings",
            f"{r['settings']['sessions_filled']} / {r['sessions_answering_pings']}",
        ],
        ["fill from empty pool (s)", r["fill_from_empty_pool_s"]],
        [
            "USS per session p50 / p95 (MB)",
            f"{r['uss_per_session_mb']['p50']} / {r['uss_per_session_mb']['p95']}",
        ],
        ["RSS of session processes (MB)", r["rss_sessions_total_mb"]],
        [
            "RSS of all Ray processes (MB)",
            f"{r['rss_ray_total_mb']} (empty: {r['rss_ray_baseline_mb']})",
        ],
        ["idle CPU / session, session procs (% core)", cpu["session_processes"]["p50"]],
        [
            "idle CPU / session, all Ray - empty (% core)",
            cpu["all_ray_processes_minus_baseline"]["p50"],
        ],
        [
            "idle CPU / bare Ray actor, same method (% core)",
            floor["all_ray_processes_minus_baseline_pct_of_core"]["p50"],
        ],
        ["idle CPU / bare Ray actor, its process (%)", floor["own_process_pct_of_core"]["p50"]],
        [
            "main-thread wakeups/s: session / bare actor",
            f"{r['session_main_thread_wakeups_per_s']} / {floor['main_thread_wakeups_per_s']}",
        ],
        [
            "GET /v1/health p50 / p99 (ms)",
            f"{r['health_check_ms']['p50']} / {r['health_check_ms']['p99']}",
        ],
        [
            "GET /v1 (static, same proxy) p50 / p99 (ms)",
            f"{r['static_route_ms']['p50']} / {r['static_route_ms']['p99']}",
        ],
    ]
    return table(rows, ["density", "value"]) + f"\ntargets: {r['targets']}"


def plot(r: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    axes[0].hist(r["raw"]["uss_mb"], bins=20)
    axes[0].axvline(TARGETS["uss_mb"], color="orange", linestyle="--", linewidth=0.8)
    axes[0].set_xlabel("unique memory per call (MB, its process + share of hosts)")
    axes[0].set_ylabel("sessions")
    cpu = r["idle_cpu_per_session_pct_of_core"]
    floor = r["bare_actor_floor"]
    labels = ["call: its process", "call: all Ray − empty", "bare actor: all − empty"]
    values = [
        cpu["session_processes"]["p50"],
        cpu["all_ray_processes_minus_baseline"]["p50"],
        floor["all_ray_processes_minus_baseline_pct_of_core"]["p50"],
    ]
    axes[1].bar(labels, values)
    target = TARGETS["idle_cpu_pct"]
    axes[1].axhline(
        target, color="orange", linestyle="--", linewidth=0.8, label=f"target {target}%"
    )
    axes[1].set_ylabel("idle CPU per session (% of a core)")
    axes[1].legend(fontsize=8)
    axes[2].hist(r["raw"]["health_ms"], bins=30, alpha=0.7, label="/v1/health")
    axes[2].hist(r["raw"]["static_ms"], bins=30, alpha=0.5, label="/v1 (static)")
    axes[2].axvline(20, color="orange", linestyle="--", linewidth=0.8, label="p99 target 20 ms")
    axes[2].set_xlabel("GET latency through Serve (ms)")
    axes[2].legend(fontsize=8)
    n = r["settings"]["sessions_filled"]
    fig.suptitle(f"Density: {n} idle connected sessions on one 2-core node")
    fig.tight_layout()
    fig.savefig(RESULTS / "density.png", dpi=110)


if __name__ == "__main__":
    main()
