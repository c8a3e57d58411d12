"""The soak's fault injector: SIGKILLs a real process of the running backend now and then."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from typing import Any

import ray

import serve_app
from benchmarks.soak_tally import Tally


async def injector(t: Tally, until: float, every_s: float, rng: random.Random) -> None:
    while True:
        await asyncio.sleep(rng.uniform(0.5, 1.5) * every_s)
        if time.monotonic() >= until:
            return
        kind = rng.choice(t.fault_kinds)
        try:
            fault = await inject(kind, t, rng)
        except (ray.exceptions.RayError, ProcessLookupError) as exc:  # its call just ended
            print(f"[{t.at():7.1f} s] no {kind} fault: {exc!r}"[:200], flush=True)
            continue
        if fault:
            t.faults.append({"at_s": t.at(), "kind": kind, **fault})
            print(f"[{t.at():7.1f} s] fault: {kind} {fault}", flush=True)


async def inject(kind: str, t: Tally, rng: random.Random) -> dict[str, Any] | None:
    if kind == "idle_worker":
        idle = []
        for a in ray.util.list_named_actors(all_namespaces=True):
            if a["name"].startswith("worker:") and "/" not in a["name"]:  # not its stages
                d = await ray.get_actor(a["name"], namespace=a["namespace"]).describe.remote()
                if d["session_id"] is None and d["state"] == "idle":
                    idle.append(d)
        if not idle:
            return None
        victim = rng.choice(idle)
        os.kill(victim["pid"], signal.SIGKILL)
        return {"worker": victim["worker"], "pid": victim["pid"]}
    calls = [c for c in t.live.values() if not c.doomed]
    if not calls:
        return None
    call = rng.choice(calls)
    worker = ray.get_actor(call.session["worker"], namespace=serve_app.NAMESPACE)
    d = await worker.describe.remote()
    if d["session_id"] != call.session["session_id"]:
        return None
    if kind == "session":
        call.doomed = True  # before the kill, so its caller never counts it as lost
        pid = d["pid"]
    else:
        pid = d["stages"]["tts" if kind == "tts_stage" else "stt"]["pid"]  # stt_host / stt_stage
    os.kill(pid, signal.SIGKILL)
    return {"session": call.session["session_id"], "pid": pid}
