"""The runs of `benchmarks.voice_latency` against a backend: the first turn on a freshly
started one, and one level of N calls offered at once with its CPU.

Why apart: these compose the call driver (`voice_latency_calls`) and the figures
(`voice_latency_figures`) into one JSON entry each; `main` only sequences them.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import time
from typing import Any

import httpx

from benchmarks.common import CpuMeter, cpu_seconds, ray_processes
from benchmarks.voice_latency_calls import (
    FIRST_TURN_PHRASE,
    FIRST_TURN_TURNS,
    capacity,
    create,
    is_speech_refusal,
    offer,
    phrase,
    settle,
    speech_s,
    stage_pids,
    talk,
)
from benchmarks.voice_latency_figures import level_figures, ms_p50_max, sample


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far: everything, other users' work and this
    benchmark's own callers included (Ray's alone: `CpuMeter` over `ray_processes()`)."""
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


async def first_turn(pcm: dict[str, bytes], endpoint_s: float) -> dict[str, Any]:
    """A freshly started backend (its own Ray, product defaults), one call as soon as it
    answers, FIRST_TURN_TURNS turns of one phrase: turn 1 against the median of the others."""
    import serve_app
    from benchmarks.common import local_backend

    with local_backend(serve_app.SESSION_SLOTS_PER_NODE, min_endpointing_delay=endpoint_s) as (
        _,
        base,
    ):
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            before = await capacity(http)
            made = await create(http, "bench-first-turn")
            if made["status"] != 201:
                raise RuntimeError(f"first-turn call refused: {made}")
            session = made["body"]
            try:
                turns = await talk(session, pcm, [FIRST_TURN_PHRASE] * FIRST_TURN_TURNS, 0.0)
            finally:
                await http.delete(f"/v1/sessions/{session['session_id']}")
            after = await capacity(http)
    v2v = [t["client_v2v_ms"] for t in turns]
    later = [v for v in v2v[1:] if v is not None]
    median = statistics.median(later) if later else None
    ratio = round(v2v[0] / median, 3) if v2v[0] is not None and median else None
    cold = after["warm_pool"]["cold_starts"] - before["warm_pool"]["cold_starts"]
    if cold:
        worker = "cold start"
    elif before["warm_pool"]["idle"]:
        worker = "warm: an idle spare"
    else:  # the call took the pool's first spare while it warmed (create_ms says how long)
        worker = "warming spare, waited for"
    return {
        "phrase": FIRST_TURN_PHRASE,
        "turn_1_v2v_ms": None if v2v[0] is None else round(v2v[0], 1),
        "turns_2_5_median_v2v_ms": None if median is None else round(median, 1),
        "ratio": ratio,
        "create_ms": round(made["ms"], 1),
        # What the pool held when the call came; every worker warms its models before binding.
        "warm_pool_idle_at_create": before["warm_pool"]["idle"],
        "warm_pool_warming_at_create": before["warm_pool"]["warming"],
        "worker": worker,
        "samples": [sample(t) for t in turns],
    }


async def run_level(
    http: httpx.AsyncClient,
    pcm: dict[str, bytes],
    n: int,
    args: argparse.Namespace,
    rng: random.Random,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """N calls offered at once; the admitted ones talk. Returns the level's entry and turns."""
    cap0 = await settle(http)
    busy0, started = machine_busy_s(), time.monotonic()
    ray_meter = CpuMeter(ray_processes).start()
    answers = await offer(http, n)
    admitted = [a for a in answers if a["status"] == 201]
    refused = [a for a in answers if a["status"] == 503]
    other = [a for a in answers if a["status"] not in (201, 503)]
    sessions = [a["body"] for a in admitted]
    per = max(args.turns, math.ceil(args.min_turns / max(1, len(sessions))))
    try:
        pids = await stage_pids(sessions)
        before = {pid: cpu_seconds([pid]) for kind in pids.values() for pid in kind}
        runs = await asyncio.gather(
            *(
                talk(s, pcm, [phrase(i) for i in range(per)], rng.uniform(0, args.stagger))
                for s in sessions
            )
        )
        cpu = {k: sum(cpu_seconds([pid]) - before[pid] for pid in ps) for k, ps in pids.items()}
    finally:
        await asyncio.gather(
            *(http.delete(f"/v1/sessions/{s['session_id']}") for s in sessions),
            return_exceptions=True,
        )
    ray_cpu = ray_meter.stop()
    wall = time.monotonic() - started
    busy = machine_busy_s() - busy0
    cap1 = await capacity(http)
    turns = [t for r in runs for t in r]
    entry: dict[str, Any] = {
        "offered": n,
        "admitted": len(admitted),
        "refused": len(refused),
        "refusal_ms": ms_p50_max([a["ms"] for a in refused]),
        # None: nothing was refused.
        "refusals_name_speech_capacity": all(is_speech_refusal(a) for a in refused)
        if refused
        else None,
        "refusals_with_retry_after": all(a["retry_after"] for a in refused) if refused else None,
        "refusal_message": (refused[0]["body"].get("error") or {}).get("message")
        if refused
        else None,
        "create_errors": [{"status": a["status"], "body": a["body"]} for a in other],
        # Admitted calls' create → answer: a warm worker is taken in milliseconds; a cold
        # start (the pool held fewer idle workers than admitted calls) starts one.
        "admitted_create_ms": ms_p50_max([a["ms"] for a in admitted]),
        "warm_takes": cap1["warm_pool"]["warm_takes"] - cap0["warm_pool"]["warm_takes"],
        "cold_starts": cap1["warm_pool"]["cold_starts"] - cap0["warm_pool"]["cold_starts"],
        **level_figures(turns),
    }
    spoken = speech_s(pcm, per) * len(sessions)
    entry["turns_per_session"] = per
    entry["samples"] = [sample(t) for t in turns]
    entry["wall_s"] = round(wall, 1)
    entry["cpu"] = {
        # Each call's own process (inline stages included), and the STT / TTS processes that
        # are not inline, each counted once (a node's shared host serves every call there).
        **{f"{k}_s": round(v, 2) for k, v in cpu.items()},
        # Every process of this Ray instance, sampled through the level (those that started
        # or ended in it included), over the level's wall time.
        "ray_cores_busy": round(ray_cpu["cpu_s"] / wall, 2),
        "ray_processes": {
            k: ray_cpu[k]
            for k in (
                "processes",
                "processes_started",
                "processes_ended",
                "cpu_s_of_processes_started_or_ended",
                "cpu_s_two_snapshots",
            )
        },
        "machine_cores_busy": round(busy / wall, 2),
        "stt_cpu_per_speech_s": round(cpu["stt"] / spoken, 3) if spoken else None,
        "session_cpu_per_call_s": round(cpu["session"] / wall / len(sessions), 3)
        if sessions
        else None,
    }
    return entry, turns
