"""Shared benchmark plumbing: a private local Ray + Serve backend, percentiles, per-process
accounting with psutil, and writing `results/<name>.json` + `.png`.

Each benchmark starts its own Ray instance (never joins another's) and stops it at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

RESULTS = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: Sequence[float], q: float) -> float:
    """Percentile by linear interpolation (q in 0..100)."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(pct(values, 50), 2),
        "p95": round(pct(values, 95), 2),
        "p99": round(pct(values, 99), 2),
        "mean": round(statistics.fmean(values), 2) if values else float("nan"),
        "min": round(min(values), 2) if values else float("nan"),
        "max": round(max(values), 2) if values else float("nan"),
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "load_avg_1_5_15_min": [round(x, 2) for x in os.getloadavg()],  # others share it
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


@contextlib.contextmanager
def local_backend(session_slots: int, **config: Any) -> Iterator[tuple[Any, str]]:
    """A private Ray node with `session_slots` slots and the Serve app on a free port.
    Yields (DeploymentHandle, base_url); stops everything it started on exit."""
    import ray
    from ray import serve

    import serve_app
    from backend.iface import Config

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["VOICE_RAY_DASHBOARD"] = "0"
    serve_app.ensure_ray(session_slots=session_slots)
    port = free_port()
    try:
        handle = serve_app.deploy("local", Config(**config), port=port)
        yield handle, f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()


def update_config(handle: Any, **config: Any) -> None:
    from backend.iface import Config

    env = handle.api_update_config.remote(Config(**config).model_dump(mode="json")).result()
    if "error" in env:
        raise RuntimeError(env["error"])


def wait_pool(base_url: str, idle: int, timeout_s: float = 300.0) -> float:
    """Block until the warm pool has at least `idle` idle workers; returns seconds waited."""
    import httpx

    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        cap = httpx.get(f"{base_url}/v1/capacity", timeout=30).json()
        if cap["warm_pool"]["idle"] >= idle:
            return time.monotonic() - start
        time.sleep(0.1)
    raise TimeoutError(f"warm pool did not reach {idle} idle workers")


def session_pids(info: dict[str, Any]) -> list[int]:
    return [info["pid"], info["stages"]["stt"]["pid"], info["stages"]["tts"]["pid"]]


def uss_mb(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_full_info().uss
    return total / 2**20


def rss_mb(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total / 2**20


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return total


def ray_processes() -> list[psutil.Process]:
    """Every process of the Ray instance this driver started (its children, recursively)."""
    return psutil.Process().children(recursive=True)


def write(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def pyplot() -> Any | None:
    """matplotlib's pyplot on the file-only backend, or None (and a note) where it is missing:
    a benchmark's figures stay in its JSON either way."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return None
    return plt


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header, *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def process_tree(pids: Iterable[int]) -> set[int]:
    """`pids` and every descendant of theirs still alive."""
    out: set[int] = set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            out.add(pid)
            out.update(c.pid for c in proc.children(recursive=True))
    return out


class CpuMeter:
    """CPU seconds a changing set of processes used over a window.

    `processes()` is listed every `interval_s` in a thread and each process's CPU time read,
    keyed by (pid, create time). A process alive when the window opens counts from its time
    then; one that starts during the window counts from zero; one that ends counts up to its
    last sample (at most `interval_s` of its CPU is missed). Taking a snapshot only at both
    ends instead subtracts the whole lifetime of every process that ended in between and never
    sees one that came and went: Ray workers retire and start during a benchmark level.
    Child times (`children_user`) are not added: a reaped Ray worker is counted here already."""

    def __init__(
        self, processes: Callable[[], Iterable[psutil.Process]], interval_s: float = 0.25
    ) -> None:
        self._processes = processes
        self.interval_s = interval_s
        self._first: dict[tuple[int, float], float] = {}
        self._last: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = self._wall0 = 0.0

    def _sample(self, opening: bool = False) -> None:
        for proc in self._processes():
            try:
                key = (proc.pid, proc.create_time())
                t = proc.cpu_times()
            except psutil.Error:
                continue
            total = t.user + t.system
            if key not in self._first:
                # Alive at the opening sample: from its time then. Seen later: it started in the
                # window (from zero), unless it is older than the window (from now, to be safe).
                new = not opening and key[1] >= self._wall0 - 1.0
                self._first[key] = 0.0 if new else total
            self._last[key] = total

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> CpuMeter:
        self._t0, self._wall0 = time.monotonic(), time.time()
        self._sample(opening=True)
        self._opened = set(self._first)
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        alive = {(p.pid, _create_time(p)) for p in self._processes()}
        self._sample()
        wall = time.monotonic() - self._t0
        used = {k: self._last[k] - self._first[k] for k in self._first}
        started = [k for k in used if k not in self._opened]
        ended = [k for k in used if k not in alive]
        cpu = sum(used.values())
        # What a snapshot at each end gives instead (kept to show the difference): processes
        # alive at the end minus those alive at the start, whatever ended or came and went.
        two_snapshots = sum(self._last[k] for k in alive if k in self._last) - sum(
            self._first[k] for k in self._opened
        )
        return {
            "cpu_s": round(cpu, 2),
            "wall_s": round(wall, 2),
            "cores_busy": round(cpu / wall, 3) if wall else None,
            "processes": len(used),
            "processes_started": len(started),
            "processes_ended": len(ended),
            "cpu_s_of_processes_started_or_ended": round(
                sum(used[k] for k in {*started, *ended}), 2
            ),
            "cpu_s_two_snapshots": round(two_snapshots, 2),
        }


def _create_time(proc: psutil.Process) -> float:
    try:
        return proc.create_time()
    except psutil.Error:
        return -1.0


def ray_processes_except(exclude: Iterable[int]) -> list[psutil.Process]:
    """`ray_processes()` without the given processes and their descendants (a benchmark's own
    subprocesses: callers, fake providers)."""
    skip = process_tree(exclude)
    return [p for p in ray_processes() if p.pid not in skip]
