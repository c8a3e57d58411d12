"""Session admission: create→ready latency, warm pool vs cold spawn, over HTTP and over the
Python handle (the DeploymentHandle `backend.new_backend()` uses).

    .venv/bin/python -m benchmarks.admission [--rounds 3] [--warm 30] [--cold 4]

"Ready" is the create call returning: the session is admitted, its worker bound, its STT and
TTS stage actors up with models loaded, and the media endpoint known. Each round measures all
four modes in turn (warm pool of 4 per node, then no pool), so the cold baseline shares the
machine's conditions with the warm figures.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import httpx

from benchmarks.common import (
    local_backend,
    machine,
    summary,
    table,
    update_config,
    wait_pool,
    write,
)

WARM_POOL = 4


def create_http(http: httpx.Client) -> tuple[float, str]:
    t0 = time.perf_counter()
    resp = http.post("/v1/sessions", json={"user_id": "bench", "agent": {"type": "echo"}})
    ms = (time.perf_counter() - t0) * 1000
    resp.raise_for_status()
    return ms, resp.json()["session_id"]


def create_handle(handle: Any) -> tuple[float, str]:
    body = {"user_id": "bench", "agent": {"type": "echo"}}
    t0 = time.perf_counter()
    env = handle.api_create_session.remote(body, None, None, "ws://127.0.0.1:0").result()
    ms = (time.perf_counter() - t0) * 1000
    if "error" in env:
        raise RuntimeError(env["error"])
    return ms, env["ok"]["session_id"]


def measure(
    mode: str, n: int, handle: Any, http: httpx.Client, base_url: str, warm: bool
) -> tuple[list[float], int]:
    """n creates in `mode`; returns the latencies and how many were not in the expected mode
    (a warm run that found no idle worker, or a cold run that found one)."""
    samples, unexpected = [], 0
    for _ in range(n):
        if warm:
            wait_pool(base_url, 1)
        ms, sid = create_http(http) if mode == "http" else create_handle(handle)
        samples.append(ms)
        unexpected += _was_warm(handle, sid) != warm
        http.delete(f"/v1/sessions/{sid}")
    return samples, unexpected


def _was_warm(handle: Any, session_id: str) -> bool:
    env = handle.api_get_session.remote(session_id).result()
    return bool(env.get("ok", {}).get("warm_start"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warm", type=int, default=30, help="warm creates per mode per round")
    ap.add_argument("--cold", type=int, default=4, help="cold creates per mode per round")
    args = ap.parse_args()
    runs: dict[str, list[float]] = {
        k: [] for k in ("warm_http", "warm_handle", "cold_http", "cold_handle")
    }
    per_round: list[dict[str, float]] = []
    mismatched = 0
    base = {"max_concurrent_sessions": 100, "timeout": 120, "health_check_interval": 5.0}
    with (
        local_backend(16, warm_pool_size=WARM_POOL, **base) as (handle, url),
        httpx.Client(base_url=url, timeout=180) as http,
    ):
        for _ in range(3):  # warm-up: imports, first replica calls, pool fill
            wait_pool(url, WARM_POOL)
            http.delete(f"/v1/sessions/{create_http(http)[1]}")
        floor = []
        for _ in range(50):
            t0 = time.perf_counter()
            http.get("/v1/capacity")
            floor.append((time.perf_counter() - t0) * 1000)
        for r in range(args.rounds):
            medians = {}
            for warm, n in ((True, args.warm), (False, args.cold)):
                update_config(handle, warm_pool_size=WARM_POOL if warm else 0, **base)
                if warm:
                    wait_pool(url, WARM_POOL)
                else:
                    time.sleep(2.0)  # let the pool's spares stop
                for mode in ("http", "handle"):
                    key = f"{'warm' if warm else 'cold'}_{mode}"
                    samples, unexpected = measure(mode, n, handle, http, url, warm)
                    mismatched += unexpected
                    runs[key] += samples
                    medians[key] = round(sorted(samples)[len(samples) // 2], 1)
            per_round.append(medians)
            print(f"round {r + 1}: {medians}", flush=True)
    stats = {k: summary(v) for k, v in runs.items()}
    speedup = {
        m: round(stats[f"cold_{m}"]["p50"] / stats[f"warm_{m}"]["p50"], 1)
        for m in ("http", "handle")
    }
    result = {
        "benchmark": "admission",
        "machine": machine(),
        "settings": {**vars(args), "warm_pool_size": WARM_POOL},
        "create_to_ready_ms": stats,
        "per_round_p50_ms": per_round,
        "cold_over_warm_p50": speedup,
        "http_get_capacity_ms": summary(floor),
        "samples_not_in_expected_mode": mismatched,
        "targets": {
            "warm_http_p50_le_30ms": stats["warm_http"]["p50"] <= 30,
            "warm_http_p99_le_100ms": stats["warm_http"]["p99"] <= 100,
            "cold_over_warm_ge_30x": speedup["http"] >= 30,
        },
        "raw_ms": runs,
    }
    write("admission", result)
    plot(runs)
    rows = [[k, s["n"], s["p50"], s["p95"], s["p99"]] for k, s in stats.items()]
    rows.append(["GET /v1/capacity (floor)", *list(summary(floor).values())[:4]])
    print(table(rows, ["create -> ready (ms)", "n", "p50", "p95", "p99"]))
    print(f"cold / warm p50: http {speedup['http']}x, handle {speedup['handle']}x")
    print("targets:", result["targets"])


def plot(runs: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.common import RESULTS

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = list(runs)
    ax.boxplot([runs[k] for k in labels], showfliers=True)
    ax.set_xticks(range(1, len(labels) + 1), labels)
    ax.set_yscale("log")
    ax.set_ylabel("create → ready (ms, log)")
    ax.axhline(30, color="green", linestyle="--", linewidth=0.8, label="warm p50 target 30 ms")
    ax.axhline(100, color="orange", linestyle="--", linewidth=0.8, label="warm p99 target 100 ms")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Session admission: warm pool vs cold spawn (2 cores)")
    fig.tight_layout()
    fig.savefig(RESULTS / "admission.png", dpi=110)


if __name__ == "__main__":
    main()
