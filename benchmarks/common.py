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
import time
from collections.abc import Iterator, Sequence
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
