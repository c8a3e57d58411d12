"""One level of `benchmarks.talkers` (N calls, then the in-process baseline) and the LiveKit
levels: sessions created, callers run, CPU metered and the turns reduced to the level's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import CpuMeter, pct, process_tree, ray_processes_except
from benchmarks.talkers_call import STAGES
from benchmarks.talkers_children import Child, run_children
from benchmarks.talkers_report import print_row


async def create_sessions(base: str, n: int, via: str) -> tuple[list[dict[str, Any]], float]:
    from backend.http_client import HttpClient

    gate = asyncio.Semaphore(4)
    ws_base = base.replace("http://", "ws://", 1)
    started = time.monotonic()

    async def one(i: int, client: HttpClient) -> dict[str, Any]:
        async with gate:
            s = await client.create_session(user_id=f"talker-{i}")
        media = s["media"]
        if via == "livekit":  # the room's server URL and the user's join token
            return {"index": i, "session_id": s["session_id"], **media}
        url = media["url"] if via == "media" else f"{ws_base}/v1/sessions/{s['session_id']}/audio"
        return {"index": i, "session_id": s["session_id"], "url": f"{url}?token={media['token']}"}

    async with HttpClient(base, timeout_s=300) as client:
        sessions = await asyncio.gather(*(one(i, client) for i in range(n)))
    return list(sessions), time.monotonic() - started


async def close_sessions(base: str, sessions: list[dict[str, Any]]) -> None:
    from backend.http_client import HttpClient

    gate = asyncio.Semaphore(8)

    async def one(client: HttpClient, sid: str) -> None:
        async with gate:
            with contextlib.suppress(Exception):
                await client.close_session(sid)

    async with HttpClient(base, timeout_s=120) as client:
        await asyncio.gather(*(one(client, s["session_id"]) for s in sessions))


def quantiles(values: list[float]) -> dict[str, Any]:
    return {
        "p50": round(pct(values, 50), 1) if values else None,
        "p95": round(pct(values, 95), 1) if values else None,
        "n": len(values),
    }


def turn_figures(reports: list[dict[str, Any]]) -> dict[str, Any]:
    turns = [t for r in reports for t in r["turns"]]
    metrics = [m for r in reports for m in r["metrics"]]
    v2v = [t["v2v_ms"] for t in turns if t["v2v_ms"] is not None]
    return {
        "v2v": v2v,
        "turns": len(turns),
        "lost": sum(t["v2v_ms"] is None for t in turns),
        "waterfall_p50_ms": {
            s: round(pct(xs, 50), 1) if (xs := [m[s] for m in metrics if m.get(s)]) else None
            for s in STAGES
        },
        "errors": [e for r in reports for e in r["errors"]][:5],
        "cpu_s": sum(r["cpu_s"] for r in reports),
    }


async def level(
    n: int,
    args: argparse.Namespace,
    base: str,
    config: dict[str, Any],
    fake: Child,
    tmp: Path,
    idle: float,
    sfu: Any = None,
) -> dict[str, Any]:
    """One level: N calls over the websocket, or with `sfu` (a running livekit-server, the
    backend deployed with provider `livekit`) as rtc participants in its rooms."""
    sessions, create_s = await create_sessions(base, n, "livekit" if sfu else args.via)
    per = args.livekit_calls_per_process if sfu else args.calls_per_process
    groups = [sessions[i : i + per] for i in range(0, n, per)]
    turns = max(args.turns_per_call, -(-args.min_turns // n))
    common = {
        "turns": turns,
        "interval_s": args.interval,
        "deadline_s": args.deadline,
    }
    specs = [{**common, "calls": g} for g in groups]
    ray_meter = CpuMeter(lambda: ray_processes_except(child_pids()))
    fake_meter = CpuMeter(lambda: [psutil.Process(p) for p in process_tree([fake.proc.pid])])
    meters = [ray_meter, fake_meter]
    if sfu is not None:
        meters.append(CpuMeter(lambda: [psutil.Process(sfu.process.pid)]))
    try:
        reports, readings, wall = await run_children(
            "lk-callers" if sfu else "callers", specs, tmp, tuple(meters)
        )
        ray_cpu, fake_cpu = readings[0], readings[1]
    finally:
        await close_sessions(base, sessions)
    live = turn_figures(reports)
    base_reports, _, _ = await run_children(
        "baseline",
        [{**common, "turns": args.baseline_turns, "calls": [], "config": config}],
        tmp,
    )
    baseline = turn_figures(base_reports)
    v2v, b = quantiles(live["v2v"]), quantiles(baseline["v2v"])
    overhead = {
        q: round(v2v[q] - b[q], 1) if v2v[q] is not None and b[q] is not None else None
        for q in ("p50", "p95")
    }
    return {
        "v2v_ms": v2v,
        "baseline_v2v_ms": b,
        "overhead_ms": overhead,
        "cpu_pct_per_call": round(ray_cpu["cores_busy"] / n * 100, 2),
        # the same without what Ray costs at rest (measured before the first level)
        "cpu_pct_per_call_above_idle": round((ray_cpu["cores_busy"] - idle) / n * 100, 2),
        "turns_lost": live["lost"],
        "turns": live["turns"],
        "turns_per_call": turns,
        "baseline_turns_lost": baseline["lost"],
        "ray_cores_busy": ray_cpu["cores_busy"],
        "ray_cpu": ray_cpu,
        "fake_cpu_pct": round(fake_cpu["cores_busy"] * 100, 2),
        "callers_cpu_pct": round(live["cpu_s"] / ray_cpu["wall_s"] * 100, 2),
        **({"sfu_cpu_pct": round(readings[2]["cores_busy"] * 100, 2)} if sfu else {}),
        "wall_s": round(wall, 1),
        "create_s": round(create_s, 1),
        "caller_processes": len(groups),
        "waterfall_p50_ms": live["waterfall_p50_ms"],
        "baseline_waterfall_p50_ms": baseline["waterfall_p50_ms"],
        "errors": live["errors"] + baseline["errors"],
        "samples_v2v_ms": live["v2v"],
        "baseline_samples_v2v_ms": baseline["v2v"],
        "samples_turns": [t for r in reports for t in r["turns"]],
    }


NOT_RAY: set[int] = set()  # other processes of this driver's: livekit-server


def child_pids() -> set[int]:
    """This driver's own subprocesses (fake, callers, baseline, livekit-server) now alive: not
    Ray's."""
    out = set()
    for p in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if p.pid in NOT_RAY or "benchmarks.talkers" in " ".join(p.cmdline()):
                out.add(p.pid)
    return out


async def livekit_levels(
    levels: list[int],
    args: argparse.Namespace,
    base: str,
    slots: int,
    config: dict[str, Any],
    fake: Child,
    tmp: Path,
    idle: float,
    out: dict[str, Any],
) -> None:
    """The same levels through LiveKit rooms: a real livekit-server on loopback, the backend
    redeployed (same Ray, same Serve port) with provider `livekit`, rtc callers."""
    import serve_app
    from backend.iface import Config
    from benchmarks.common import wait_pool
    from tests.e2e import livekit_server

    server = livekit_server.start(f"{base}/v1/livekit/webhook")
    NOT_RAY.add(server.process.pid)
    try:
        lk_config = {
            **config,
            "provider": "livekit",
            "provider_config": server.provider_config(),
            "max_concurrent_sessions": slots,
        }
        serve_app.deploy("livekit", Config(**lk_config), port=int(base.rsplit(":", 1)[1]))
        await asyncio.sleep(2)  # the ingress replaced
        wait_pool(base, 2)
        for n in levels:
            out[str(n)] = await level(n, args, base, config, fake, tmp, idle, sfu=server)
            print_row(n, out[str(n)], "livekit")
    finally:
        server.stop()
        NOT_RAY.discard(server.process.pid)
