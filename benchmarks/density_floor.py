"""The floors the density figures stand on, measured in the same run as the calls.

- A bare Ray actor process, with nothing of ours in it, idle: its CPU counted the way a call's
  is (every Ray process minus the empty system), and how often its main thread wakes. Ray's
  core worker runs a signal check on that thread every 10 ms, so a Ray worker process wakes
  ~100 times a second however idle it is; a call that is one process cannot cost less.
- A static route (`GET /v1`) through the same Serve proxy and replica as `GET /v1/health`:
  the latency any request pays on this loaded node before health does any work.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from benchmarks.common import cpu_seconds, ray_processes, summary


def main_thread_wakeups(pids: list[int], window_s: float = 5.0) -> float:
    """Median voluntary context switches per second of each process's main thread (Linux)."""

    def switches(pid: int) -> int | None:
        try:
            with open(f"/proc/{pid}/task/{pid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    before = {pid: switches(pid) for pid in pids}
    t0 = time.monotonic()
    time.sleep(window_s)
    dt = time.monotonic() - t0
    rates = []
    for pid, b in before.items():
        a = switches(pid)
        if a is not None and b is not None:
            rates.append((a - b) / dt)
    return round(statistics.median(rates), 1) if rates else float("nan")


def bare_actor_floor(n: int, windows: int, window_s: float, empty_cores: float) -> dict[str, Any]:
    """Start `n` idle bare async actors, measure them like the calls, then stop them."""
    import ray

    @ray.remote(num_cpus=0)
    class BareActor:
        async def pid(self) -> int:
            return os.getpid()

    actors = [BareActor.remote() for _ in range(n)]
    try:
        pids = ray.get([a.pid.remote() for a in actors], timeout=600)
        time.sleep(5)
        every = [p.pid for p in ray_processes()]
        own, total = [], []
        for _ in range(windows):
            before_own, before_all, t0 = cpu_seconds(pids), cpu_seconds(every), time.monotonic()
            time.sleep(window_s)
            dt = time.monotonic() - t0
            own.append(100 * (cpu_seconds(pids) - before_own) / dt / n)
            total.append(100 * max(0.0, (cpu_seconds(every) - before_all) / dt - empty_cores) / n)
        wakeups = main_thread_wakeups(pids)
    finally:
        for a in actors:
            ray.kill(a)
    _wait_gone(pids)
    return {
        "actors": n,
        "own_process_pct_of_core": summary(own),
        "all_ray_processes_minus_baseline_pct_of_core": summary(total),
        "main_thread_wakeups_per_s": wakeups,
    }


def _wait_gone(pids: list[int], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
        time.sleep(0.5)
