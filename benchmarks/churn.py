"""Churn: 1,000 create → ping → close cycles over HTTP at the highest sustainable rate, then a
leak check.

    .venv/bin/python -m benchmarks.churn [--cycles 1000] [--probe 60]

First a short probe at 1, 2, 4 and 8 concurrent clients picks the concurrency with the best
rate; the main run uses it. Leaks are checked with the warm pool switched off before and after,
so both snapshots hold no worker: named worker actors, Ray processes and their total RSS must
come back to the baseline (memory within the bound stated in `MEMORY_BOUND_MB`).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx
import ray

from benchmarks.common import (
    RESULTS,
    local_backend,
    machine,
    ray_processes,
    rss_mb,
    summary,
    table,
    update_config,
    wait_pool,
    write,
)

WARM_POOL = 4
MEMORY_BOUND_MB = 150  # allowed RSS growth of the whole Ray instance over the run
BASE = {"max_concurrent_sessions": 100, "timeout": 120, "health_check_interval": 2.0}


async def cycles(url: str, n: int, concurrency: int) -> dict[str, Any]:
    todo = iter(range(n))
    lat: list[tuple[float, float]] = []  # (finished at, cycle ms)
    errors: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:

        async def client() -> None:
            for _ in todo:
                t0 = time.perf_counter()
                resp = await http.post("/v1/sessions", json={"user_id": "churn"})
                if resp.status_code != 201:
                    errors.append(resp.text[:200])
                    continue
                sid = resp.json()["session_id"]
                state = (await http.get(f"/v1/sessions/{sid}")).json().get("state")
                if state not in ("idle", "listening"):
                    errors.append(f"ping answered {state!r}")
                await http.delete(f"/v1/sessions/{sid}")
                lat.append((time.perf_counter(), (time.perf_counter() - t0) * 1000))

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "cycles": len(lat),
        "elapsed_s": round(elapsed, 2),
        "rate_per_s": round(len(lat) / elapsed, 2),
        "errors": len(errors),
        "error_samples": errors[:3],
        "cycle_ms": summary([ms for _, ms in lat]),
        "timeline": [(round(t - t0, 3), round(ms, 1)) for t, ms in lat],
    }


def snapshot() -> dict[str, Any]:
    procs = ray_processes()
    workers = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("worker:")
    ]
    return {
        "worker_actors": len(workers),
        "ray_processes": len(procs),
        "ray_rss_mb": round(rss_mb([p.pid for p in procs]), 1),
    }


def settle(url: str, handle: Any, pool: int) -> dict[str, Any]:
    """Switch the pool to `pool` and wait until the workers match it; returns a snapshot."""
    update_config(handle, warm_pool_size=pool, **BASE)
    if pool:
        wait_pool(url, pool)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and snapshot()["worker_actors"] > 3 * pool:
        time.sleep(0.5)
    time.sleep(5)  # let exited workers' processes go and Ray's idle worker pool settle
    return snapshot()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--probe", type=int, default=60, help="cycles per probe concurrency")
    args = ap.parse_args()
    with local_backend(24, warm_pool_size=WARM_POOL, **BASE) as (handle, url):
        asyncio.run(cycles(url, 10, 1))  # warm-up: imports, replica, first workers
        before = settle(url, handle, 0)
        settle(url, handle, WARM_POOL)
        probes = [asyncio.run(cycles(url, args.probe, c)) for c in (1, 2, 4, 8)]
        for p in probes:
            print(f"probe c={p['concurrency']}: {p['rate_per_s']}/s, p99 {p['cycle_ms']['p99']} ms")
        best = max((p for p in probes if not p["errors"]), key=lambda p: p["rate_per_s"])
        settle(url, handle, WARM_POOL)
        main_run = asyncio.run(cycles(url, args.cycles, best["concurrency"]))
        pool = handle.api_capacity.remote().result()["ok"]["warm_pool"]
        active = handle.api_capacity.remote().result()["ok"]["active_sessions"]
        after = settle(url, handle, 0)
    growth = after["ray_rss_mb"] - before["ray_rss_mb"]
    result = {
        "benchmark": "churn",
        "machine": machine(),
        "settings": {**vars(args), "warm_pool_size": WARM_POOL, "concurrency": best["concurrency"]},
        "probes": [{k: v for k, v in p.items() if k != "timeline"} for p in probes],
        "run": {k: v for k, v in main_run.items() if k != "timeline"},
        "pool_after_run": pool,
        "active_sessions_after_run": active,
        "leak_check": {
            "before": before,
            "after": after,
            "rss_growth_mb": round(growth, 1),
            "memory_bound_mb": MEMORY_BOUND_MB,
        },
        "targets": {
            "zero_errors": main_run["errors"] == 0,
            "zero_leaked_actors": after["worker_actors"] == 0 and active == 0,
            "zero_leaked_processes": after["ray_processes"] <= before["ray_processes"],
            "memory_growth_within_bound": growth <= MEMORY_BOUND_MB,
        },
        "timeline": main_run["timeline"],
    }
    write("churn", result)
    plot(result)
    rows = [
        [
            p["concurrency"],
            p["cycles"],
            p["rate_per_s"],
            p["cycle_ms"]["p50"],
            p["cycle_ms"]["p99"],
            p["errors"],
        ]
        for p in [*probes, main_run]
    ]
    print(table(rows, ["clients", "cycles", "cycles/s", "p50 ms", "p99 ms", "errors"]))
    print("pool:", pool)
    print("leak check:", result["leak_check"])
    print("targets:", result["targets"])


def plot(r: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [x for x, _ in r["timeline"]]
    ms = [y for _, y in r["timeline"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    a.scatter(t, ms, s=3)
    a.set_yscale("log")
    a.set_xlabel("time (s)")
    a.set_ylabel("create → ping → close (ms, log)")
    width = 10.0
    buckets: dict[int, int] = {}
    for x in t:
        buckets[int(x // width)] = buckets.get(int(x // width), 0) + 1
    keys = sorted(buckets)
    b.bar([k * width for k in keys], [buckets[k] / width for k in keys], width=width * 0.9)
    b.set_xlabel("time (s)")
    b.set_ylabel("cycles per second")
    run = r["run"]
    fig.suptitle(
        f"Churn: {run['cycles']} cycles, {run['concurrency']} clients, {run['rate_per_s']}/s"
    )
    fig.tight_layout()
    fig.savefig(RESULTS / "churn.png", dpi=110)


if __name__ == "__main__":
    main()
