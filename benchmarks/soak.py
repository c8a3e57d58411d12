"""Soak: continuous churn and talk for a long time with real processes killed at random.

    .venv/bin/python -m benchmarks.soak [--minutes 30] [--calls 3] [--fault-every 45]
                                        [--warmup-minutes 2]

`--calls` callers each run calls back to back over HTTP and the audio websocket: create a
session, speak 1-3 real phrases (espeak-ng, streamed in real time), wait for each reply's audio
and its `metrics` event, close the session. Three callers is this node's sustainable talking
load (`benchmarks.voice_latency`: voice-to-voice at 3 concurrent calls is within 5% of one).
Meanwhile an injector SIGKILLs one process every `--fault-every` seconds (jittered), chosen at
random among:

- `stt_host`: the node's shared STT host serving the live calls (the default `node`
  placement). Every call must survive: the node's spare host takes over and the utterance in
  flight is replayed (`stage_failover` event).
- `stt_stage` / `tts_stage` (with `--placement session`): a live call's own STT or TTS stage
  process. The call must survive (a warm spare or Ray's restart takes over).
- `idle_worker`: an idle warm-pool worker. No call may notice; the pool refills.
- `session`: a live call's own session process. That call is lost by design; it is counted
  apart, and every other call must go on.

Reported: sessions served, turns served, faults injected by kind, calls lost that should not
have been (target 0) with what each saw, calls lost by design, creates refused, voice-to-voice
latency per 5-minute window (the drift of a long run), and the RSS of every Ray process at the
start, after a warm-up of the same calls without faults (the node's shared model hosts and
every lazily loaded part exist by then), every minute, and at the end (each settled: no call
open, the pool back at its size). The memory target is on the growth after the warm-up,
scaled to 30 minutes: under 50 MB.
Writes benchmarks/results/soak.json (and soak.png).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import time
from typing import Any

import httpx
import psutil
import websockets

from backend.http_client import send_realtime
from benchmarks.common import (
    RESULTS,
    local_backend,
    machine,
    ray_processes,
    rss_mb,
    summary,
    table,
    write,
)
from benchmarks.soak_faults import injector
from benchmarks.soak_tally import FAULT_KINDS, SESSION_FAULT_KINDS, CallLost, Live, Tally

# Phrases the embedded recogniser gets exactly right from espeak-ng's voice when it hears them
# directly, so a served turn that comes out differently lost or damaged audio on the way.
PHRASES = ["hello world", "open the door", "how are you"]
RATE = 16000
TURN_TIMEOUT_S = 90.0  # a reply later than this is a lost call
WARM_POOL = 2


async def caller(
    url: str, pcm: dict[str, bytes], t: Tally, until: float, rng: random.Random
) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        while time.monotonic() < until:
            resp = await http.post("/v1/sessions", json={"user_id": "soak"})
            if resp.status_code != 201:
                t.refused.append(f"{resp.status_code} {resp.text[:160]}")
                await asyncio.sleep(1.0)
                continue
            session = resp.json()
            live = t.live[session["session_id"]] = Live(session)
            try:
                await one_call(session, pcm, t, rng)
                t.sessions += 1
            except (CallLost, OSError, websockets.WebSocketException, TimeoutError) as exc:
                if live.doomed:
                    t.lost_by_design += 1
                else:
                    t.lost.append(
                        {"at_s": t.at(), "session": session["session_id"], "saw": repr(exc)[:300]}
                    )
            finally:
                t.live.pop(session["session_id"], None)
                with contextlib.suppress(httpx.HTTPError):
                    await http.delete(f"/v1/sessions/{session['session_id']}")
            await asyncio.sleep(rng.uniform(0.2, 2.0))


async def one_call(
    session: dict[str, Any], pcm: dict[str, bytes], t: Tally, rng: random.Random
) -> None:
    url = f"{session['media']['url']}?token={session['media']['token']}"
    async with websockets.connect(url, max_size=None) as ws:
        for _ in range(rng.randint(1, 3)):
            phrase = rng.choice(PHRASES)
            heard, v2v_ms = await asyncio.wait_for(turn(ws, pcm[phrase], t), TURN_TIMEOUT_S)
            t.turns += 1
            if heard == phrase:
                t.transcripts_exact += 1
            else:
                t.misheard.append({"at_s": t.at(), "said": phrase, "heard": heard})
            if v2v_ms is not None:
                t.v2v.append((t.at(), v2v_ms))
            await asyncio.sleep(rng.uniform(0.5, 3.0))  # the user thinks


async def turn(ws: Any, speech: bytes, t: Tally) -> tuple[str, float | None]:
    """Speak, then wait for the reply's audio and the turn's `metrics` event."""
    sent_end: float | None = None
    first_audio: float | None = None
    heard = ""

    async def send() -> None:
        nonlocal sent_end
        sent_end = await send_realtime(
            ws.send, speech + bytes(RATE * 2 * 2), RATE, mark_at_s=len(speech) / 2 / RATE
        )

    sender = asyncio.create_task(send())
    try:
        async for msg in ws:
            if isinstance(msg, bytes):
                first_audio = first_audio or time.monotonic()
                continue
            event = json.loads(msg)
            kind = event["type"]
            if kind == "transcript" and event.get("final", True):
                heard = event.get("text", "")
                if not heard:  # the recogniser heard nothing: no reply comes, the turn is over
                    break
            elif kind == "stage_failover":
                t.failovers += 1
            elif kind in ("error", "closed"):
                said = event.get("message") or event.get("reason", "")
                raise CallLost(f"{kind}: {event.get('code', '')} {said}")
            elif kind == "metrics":
                break
        else:
            raise CallLost(f"websocket closed by the server ({ws.close_code} {ws.close_reason})")
        await sender
    finally:
        sender.cancel()
    v2v = (first_audio - sent_end) * 1000 if first_audio and sent_end else None
    return heard, v2v


async def sample_memory(t: Tally, until: float) -> None:
    while time.monotonic() < until:
        t.memory.append((t.at(), round(rss_mb([p.pid for p in ray_processes()]), 1)))
        await asyncio.sleep(60)


def settled_memory(url: str, timeout_s: float = 300.0) -> tuple[float, dict[str, dict[str, float]]]:
    """RSS of the Ray instance once the pool holds exactly its target of idle workers (spares
    returned by ended calls are trimmed after `IDLE_TRIM_S`) and nothing else runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pool = httpx.get(f"{url}/v1/capacity", timeout=30).json()["warm_pool"]
        if pool["workers"] == pool["idle"] == WARM_POOL:
            break
        time.sleep(1.0)
    else:
        raise TimeoutError(f"the warm pool did not settle at {WARM_POOL} idle workers: {pool}")
    time.sleep(10)
    return round(rss_mb([p.pid for p in ray_processes()]), 1), memory_by_kind()


def memory_by_kind() -> dict[str, dict[str, float]]:
    """Ray's processes grouped by what they are (`ray::SessionActor`, `raylet`, ...): how many,
    their RSS and their unique memory (USS: what each alone holds, so growth is attributed)."""
    kinds: dict[str, dict[str, float]] = {}
    for proc in ray_processes():
        with contextlib.suppress(psutil.Error):
            cmd = proc.cmdline()
            kind = os.path.basename(cmd[0].split()[0]) if cmd else proc.name()
            kind = kind.split(".")[0] if kind.startswith("ray::") else kind  # not the method
            mem = proc.memory_full_info()
            k = kinds.setdefault(kind, {"processes": 0, "rss_mb": 0.0, "uss_mb": 0.0})
            k["processes"] += 1
            k["rss_mb"] = round(k["rss_mb"] + mem.rss / 2**20, 1)
            k["uss_mb"] = round(k["uss_mb"] + mem.uss / 2**20, 1)
    return dict(sorted(kinds.items()))


# -- the run ------------------------------------------------------------------------------
async def phrases() -> dict[str, bytes]:
    from tests.conftest import speak

    return {p: await speak(p) for p in PHRASES}


async def warm_up(url: str, args: argparse.Namespace) -> Tally:
    """The soak's calls for a while, without faults, so that what is created once is."""
    pcm = await phrases()
    t = Tally()
    until = time.monotonic() + args.warmup_minutes * 60
    rng = random.Random(args.seed + 1)
    await asyncio.gather(
        *(caller(url, pcm, t, until, random.Random(rng.random())) for _ in range(args.calls))
    )
    return t


async def soak(url: str, args: argparse.Namespace) -> Tally:
    pcm = await phrases()
    rng = random.Random(args.seed)
    t = Tally(fault_kinds=SESSION_FAULT_KINDS if args.placement == "session" else FAULT_KINDS)
    until = time.monotonic() + args.minutes * 60
    callers = [caller(url, pcm, t, until, random.Random(rng.random())) for _ in range(args.calls)]
    await asyncio.gather(
        *callers,
        injector(t, until, args.fault_every, random.Random(rng.random())),
        sample_memory(t, until),
    )
    return t


def windows(v2v: list[tuple[float, float]], width_s: float = 300.0) -> list[dict[str, Any]]:
    out = []
    for k in sorted({int(at // width_s) for at, _ in v2v}):
        ms = [m for at, m in v2v if int(at // width_s) == k]
        out.append({"from_s": k * width_s, **summary(ms)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--calls", type=int, default=3, help="concurrent talking callers")
    ap.add_argument("--fault-every", type=float, default=45.0, help="mean seconds between faults")
    ap.add_argument("--no-spares", action="store_true", help="stage failover by Ray restart only")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--warmup-minutes", type=float, default=2.0, help="calls without faults before measuring"
    )
    ap.add_argument(
        "--placement", choices=("auto", "session"), default="auto", help="where stages run"
    )
    args = ap.parse_args()
    config = {
        "max_concurrent_sessions": 100,
        "timeout": 120,
        "warm_pool_size": WARM_POOL,
        "stage_spares": not args.no_spares,
        "health_check_interval": 2.0,
        "stt_placement": args.placement,
        "tts_placement": args.placement,
    }
    with local_backend(max(8, 2 * args.calls + WARM_POOL), **config) as (handle, url):
        before, kinds_before = settled_memory(url)
        warm = asyncio.run(warm_up(url, args))
        warmed, kinds_warmed = settled_memory(url)
        t = asyncio.run(soak(url, args))
        after, kinds_after = settled_memory(url)
        capacity = handle.api_capacity.remote().result()["ok"]
    kinds = {k: sum(1 for f in t.faults if f["kind"] == k) for k in t.fault_kinds}
    result = {
        "benchmark": "soak",
        "machine": machine(),
        "settings": {**vars(args), "warm_pool_size": WARM_POOL},
        "sessions_served": t.sessions,
        "turns_served": t.turns,
        "transcripts_exact_pct": round(100 * t.transcripts_exact / max(1, t.turns), 1),
        "faults_injected": len(t.faults),
        "faults_by_kind": kinds,
        "stage_failover_events": t.failovers,
        "calls_lost_unexpectedly": len(t.lost),
        "calls_lost_by_design": t.lost_by_design,
        "creates_refused": len(t.refused),
        "v2v_ms": summary([ms for _, ms in t.v2v]),
        "v2v_ms_per_5_min": windows(t.v2v),
        "warm_up": {"minutes": args.warmup_minutes, "sessions": warm.sessions, "lost": warm.lost},
        "memory_mb": {
            "settled_start": before,
            "settled_after_warm_up": warmed,
            "settled_end": after,
            "growth": round(after - before, 1),
            "growth_after_warm_up": round(after - warmed, 1),
            "growth_after_warm_up_per_30_min": round((after - warmed) * 30 / args.minutes, 1),
            "by_process_kind": {
                "start": kinds_before,
                "after_warm_up": kinds_warmed,
                "end": kinds_after,
            },
        },
        "active_sessions_after_run": capacity["active_sessions"],
        "targets": {
            "zero_calls_lost_unexpectedly": not t.lost,
            "zero_creates_refused": not t.refused,
            "memory_growth_after_warm_up_under_50_mb_per_30_min": (after - warmed)
            * 30
            / args.minutes
            < 50,
        },
        "lost_samples": t.lost[:10],
        "misheard_samples": t.misheard[:20],
        "refused_samples": t.refused[:5],
        "faults": t.faults,
        "memory_timeline": t.memory,
    }
    write("soak", result)
    plot(result, t)
    print(
        table(
            [
                [k, v]
                for k, v in result.items()
                if isinstance(v, int | float | str) and k != "benchmark"
            ],
            ["figure", "value"],
        )
    )
    print("faults by kind:", kinds)
    print("memory (MB):", result["memory_mb"])
    print("targets:", result["targets"])


def plot(r: dict[str, Any], t: Tally) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    a.scatter([x for x, _ in t.v2v], [y for _, y in t.v2v], s=4)
    for f in t.faults:
        a.axvline(f["at_s"], color="red" if f["kind"] == "session" else "orange", alpha=0.3)
    a.set_xlabel("time (s); lines: faults")
    a.set_ylabel("voice-to-voice (ms)")
    b.plot([x for x, _ in t.memory], [y for _, y in t.memory])
    b.set_xlabel("time (s)")
    b.set_ylabel("RSS of all Ray processes (MB)")
    fig.suptitle(
        f"Soak: {r['sessions_served']} sessions, {r['faults_injected']} faults, "
        f"{r['calls_lost_unexpectedly']} calls lost unexpectedly"
    )
    fig.tight_layout()
    fig.savefig(RESULTS / "soak.png", dpi=110)


if __name__ == "__main__":
    main()
