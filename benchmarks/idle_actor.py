"""The floor under idle CPU: what an idle Ray actor process costs with nothing of ours in it.

    .venv/bin/python -m benchmarks.idle_actor [--actors 10] [--windows 3] [--window-s 20]

A session is three actor processes (session, STT stage, TTS stage); the density benchmark's
idle CPU per session is compared against three times this figure.
"""

from __future__ import annotations

import argparse
import os
import time

import ray

from benchmarks.common import RESULTS, cpu_seconds, machine, summary, table, write


@ray.remote(num_cpus=0)
class Bare:
    def pid(self) -> int:
        return os.getpid()


@ray.remote(num_cpus=0)
class BareAsync:
    async def pid(self) -> int:
        return os.getpid()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--actors", type=int, default=10)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--window-s", type=float, default=20.0)
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        half = args.actors // 2
        actors = [Bare.remote() for _ in range(half)] + [BareAsync.remote() for _ in range(half)]
        pids = ray.get([a.pid.remote() for a in actors])
        time.sleep(5)
        per_actor = []
        for _ in range(args.windows):
            before, t0 = cpu_seconds(pids), time.monotonic()
            time.sleep(args.window_s)
            per_actor.append(
                100 * (cpu_seconds(pids) - before) / (time.monotonic() - t0) / len(pids)
            )
    finally:
        ray.shutdown()
    result = {
        "benchmark": "idle_actor",
        "machine": machine(),
        "settings": vars(args),
        "idle_cpu_per_actor_pct_of_core": summary(per_actor),
        "three_processes_pct_of_core": round(3 * summary(per_actor)["p50"], 2),
    }
    write("idle_actor", result)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3.2))
    ax.bar(
        ["1 idle actor", "3 (a session)"],
        [result["idle_cpu_per_actor_pct_of_core"]["p50"], result["three_processes_pct_of_core"]],
    )
    ax.axhline(0.5, color="orange", linestyle="--", linewidth=0.8, label="session target 0.5%")
    ax.set_ylabel("% of a core, idle")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "idle_actor.png", dpi=110)
    s = result["idle_cpu_per_actor_pct_of_core"]
    print(
        table(
            [["bare idle Ray actor", s["p50"], s["min"], s["max"]]],
            ["idle CPU (% core)", "p50", "min", "max"],
        )
    )
    print(f"x3 processes per session: {result['three_processes_pct_of_core']} % of a core")


if __name__ == "__main__":
    main()
