"""Voice-to-voice latency of real spoken turns at N offered calls, under the node's speech
capacity, and what this architecture costs (issue 19's targets).

    python -m benchmarks.voice_latency                 # 1, 3, 5, 10 calls offered
    python -m benchmarks.voice_latency --concurrency 1 3 5 10 --min-turns 30
    python -m benchmarks.voice_latency --quick         # 1 and 8 offered: voice_latency_quick.json

Why: with the `local` provider a node used to admit every call and then answer all of them
late. It now admits only the calls its CPUs can decode in time (`speech_load_threshold`, the
product default: 6 on 2 cores) and refuses the rest at once. This measures both halves with the
product's admission defaults: at each level N calls are offered at once over HTTP; the refused
ones must come back at once (503 `session_limit_exceeded`, the speech capacity named); the
admitted ones each hold a scripted conversation of espeak-ng phrases streamed in real time over
their `media.url` websocket, starting at seeded random offsets within `--stagger` seconds.
Per turn: the client's voice-to-voice latency (last speech frame sent → first reply audio byte),
the server's waterfall and what the recogniser heard (word accuracy per level). Per level: the
CPU of the calls' processes, of every Ray process and of the machine.

First, on a freshly started backend (its own Ray, before anything else has warmed it), one call
takes 5 turns of one phrase: turn 1 against the median of turns 2-5. Then the baseline: the same
stages in this one process (no Ray, no transport); its difference from the 1-call level is the
runtime overhead. Barge-in: the user talks over a long reply; the figure is the time from the
audio frame that makes the interruption due to the last reply byte received.

Writes benchmarks/results/voice_latency.json (and .png), with the targets checked in `targets`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import time
from collections import Counter
from typing import Any

import httpx
import numpy as np
import websockets

from backend.http_client import send_realtime
from benchmarks.common import (
    RESULTS,
    CpuMeter,
    cpu_seconds,
    machine,
    pct,
    ray_processes,
    summary,
    write,
)
from benchmarks.stt_settings import word_errors

PHRASES = ["hello world", "what time is it", "open the door"]
# The first-turn call says one phrase every turn, so only the turn's place differs; not the
# workers' warm-up clip ("hello world"), which would flatter the first decode.
FIRST_TURN_PHRASE = "what time is it"
FIRST_TURN_TURNS = 5
RATE = 16000
STAGES = ["end_of_turn_delay_ms", "stt_final_ms", "agent_ms", "tts_first_audio_ms"]
LONG_PREFIX = (
    "Here is a long answer that takes several seconds to say out loud. It keeps going for a "
    "while so that you can interrupt it. You said: "
)
TURN_TIMEOUT_S = 60.0
# Issue 19's targets (2 cores, `local` provider).
V2V_P50_MS = 500.0  # every level, admitted calls
V2V_P95_MS = 800.0
REFUSED_AT_ONCE_MS = 500.0  # a refusal's round trip: no queue, no worker, no model touched
MIN_CALLS_WITHIN_LATENCY = 5
FIRST_TURN_RATIO = 1.10  # turn 1 v2v ÷ median of turns 2-5


async def phrases_pcm() -> dict[str, bytes]:
    from tests.conftest import speak

    return {p: await speak(p) for p in [*PHRASES, "stop please"]}


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far: everything, other users' work and this
    benchmark's own callers included (Ray's alone: `CpuMeter` over `ray_processes()`)."""
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def phrase(i: int) -> str:
    return PHRASES[i % len(PHRASES)]


def speech_s(pcm: dict[str, bytes], turns: int) -> float:
    """Seconds of speech a session says in `turns` turns."""
    return sum(len(pcm[phrase(i)]) / 2 / RATE for i in range(turns))


# -- through Ray + Serve + the websocket -----------------------------------------------------
async def create(http: httpx.AsyncClient, user_id: str) -> dict[str, Any]:
    """One `POST /v1/sessions`: the answer, its status and how long it took."""
    t0 = time.monotonic()
    resp = await http.post("/v1/sessions", json={"user_id": user_id})
    ms = (time.monotonic() - t0) * 1000
    try:
        body = resp.json()
    except ValueError:
        body = {"error": {"code": "?", "message": resp.text[:200]}}
    return {
        "status": resp.status_code,
        "ms": ms,
        "body": body,
        "retry_after": resp.headers.get("retry-after"),
    }


async def offer(http: httpx.AsyncClient, n: int) -> list[dict[str, Any]]:
    """`n` calls offered at once: every create sent together."""
    return list(await asyncio.gather(*(create(http, "bench") for _ in range(n))))


def is_speech_refusal(r: dict[str, Any]) -> bool:
    err = r["body"].get("error") or {}
    return (
        r["status"] == 503
        and err.get("code") == "session_limit_exceeded"
        and "speech capacity" in str(err.get("message", ""))
    )


async def talk(
    session: dict[str, Any], pcm: dict[str, bytes], phrases: list[str], delay_s: float
) -> list[dict[str, Any]]:
    """One admitted call says `phrases`, a turn each, over its `media.url` websocket."""
    await asyncio.sleep(delay_s)
    url = f"{session['media']['url']}?token={session['media']['token']}"
    async with websockets.connect(url, max_size=None) as ws:
        return [{**await ws_turn(ws, pcm[p]), "spoken": p} for p in phrases]


async def ws_turn(ws: Any, speech: bytes) -> dict[str, Any]:
    sent_speech_end: float | None = None
    first_audio: float | None = None
    metrics: dict[str, Any] = {}
    heard: str | None = None

    async def send() -> None:
        nonlocal sent_speech_end
        sent_speech_end = await send_realtime(
            ws.send, speech + bytes(RATE * 2 * 2), RATE, mark_at_s=len(speech) / 2 / RATE
        )

    async def receive() -> None:
        nonlocal first_audio, metrics, heard
        async for msg in ws:
            if isinstance(msg, bytes):
                first_audio = first_audio or time.monotonic()
                continue
            event = json.loads(msg)
            if event["type"] == "transcript" and event.get("final"):
                heard = event.get("text", "")
                if not heard:  # nothing recognised: the turn ends without a reply
                    return
            elif event["type"] == "metrics":
                metrics = event
                return
            elif event["type"] == "error":
                raise RuntimeError(event)

    sender = asyncio.create_task(send())
    await asyncio.wait_for(receive(), TURN_TIMEOUT_S)
    await sender
    v2v = (first_audio - sent_speech_end) * 1000 if first_audio and sent_speech_end else None
    return {
        "client_v2v_ms": v2v,
        "heard": heard,
        **{k: v for k, v in metrics.items() if k.endswith("_ms")},
    }


async def ws_barge_in(base: str, pcm: dict[str, bytes], onset_s: float) -> float:
    """ms from sending the frame that makes the interruption due to the last reply byte."""
    from backend.http_client import HttpClient

    async with HttpClient(base, timeout_s=120) as client:
        session = await client.create_session(
            user_id="bench-barge", agent={"type": "echo", "prefix": LONG_PREFIX}
        )
        url = f"{session['media']['url']}?token={session['media']['token']}"
        try:
            async with websockets.connect(url, max_size=None) as ws:
                return await _barge(ws, pcm, onset_s)
        finally:
            await client.close_session(session["session_id"])


async def _barge(ws: Any, pcm: dict[str, bytes], onset_s: float) -> float:
    last_audio = 0.0
    speaking = asyncio.Event()
    interrupted = asyncio.Event()
    due_at: float | None = None

    async def receive() -> None:
        nonlocal last_audio
        async for msg in ws:
            if isinstance(msg, bytes):
                last_audio = time.monotonic()
                speaking.set()
            elif json.loads(msg)["type"] == "interrupted":
                interrupted.set()
            elif interrupted.is_set() and json.loads(msg)["type"] == "transcript":
                return

    async def send(audio: bytes, mark_at_s: float | None = None) -> None:
        nonlocal due_at
        due_at = await send_realtime(ws.send, audio + bytes(RATE * 2), RATE, mark_at_s=mark_at_s)

    receiver = asyncio.create_task(receive())
    await send(pcm["hello world"])
    await asyncio.wait_for(speaking.wait(), 60)
    await asyncio.sleep(1.0)
    await send(pcm["stop please"], mark_at_s=onset_s + 0.5)  # Config.min_interruption_duration
    await asyncio.wait_for(receiver, 60)
    assert due_at is not None
    return (last_audio - due_at) * 1000


def speech_onset_s(pcm: bytes) -> float:
    """Where silero first hears speech in `pcm` (the server's VAD, run here)."""
    from providers.vad.silero import SileroVAD

    vad = SileroVAD()
    n = vad.frame_samples * 2
    for i in range(0, len(pcm) - n, n):
        if vad.speech_probability(pcm[i : i + n]) >= 0.5:
            return i / 2 / RATE
    return 0.0


async def capacity(http: httpx.AsyncClient) -> dict[str, Any]:
    return (await http.get("/v1/capacity")).json()


async def settle(http: httpx.AsyncClient, timeout_s: float = 300.0) -> dict[str, Any]:
    """Wait until no session is left and the warm pool is full again: every level starts from
    the same state. Returns /v1/capacity then."""
    deadline = time.monotonic() + timeout_s
    while True:
        cap = await capacity(http)
        pool = cap["warm_pool"]
        if cap["active_sessions"] == 0 and pool["idle"] >= pool["warm_pool_size"]:
            return cap
        if time.monotonic() > deadline:
            raise TimeoutError(f"backend did not settle: {cap}")
        await asyncio.sleep(0.2)


async def stage_pids(sessions: list[dict[str, Any]]) -> dict[str, set[int]]:
    """The calls' processes by kind: each call's own process (as its worker actor describes
    it; inline stages run there), and, from the create answers, the STT / TTS processes that
    are not inline (a `node` host shared by the node's calls is one process, counted once)."""
    import ray

    import serve_app

    out: dict[str, set[int]] = {"session": set(), "stt": set(), "tts": set()}
    for s in sessions:
        worker = ray.get_actor(s["worker"], namespace=serve_app.NAMESPACE)
        out["session"].add(int((await worker.describe.remote())["pid"]))
        for kind in ("stt", "tts"):
            stage = (s.get("stages") or {}).get(kind) or {}
            if stage.get("placement") != "inline" and stage.get("pid"):
                out[kind].add(int(stage["pid"]))
    return out


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


# -- in one process, no Ray, no transport ----------------------------------------------------
async def local_turns(pcm: dict[str, bytes], turns: int, endpoint_s: float) -> list[dict[str, Any]]:
    """One session's turns with every stage in this process: v2v and the same waterfall."""
    from pipelines.endpointing import EndpointingConfig
    from pipelines.session import SessionRuntime
    from pipelines.stt_tts import PipelineSettings
    from providers.agents import build_agent
    from providers.espeak.tts import EspeakTTS
    from providers.messages import AudioChunk, Metrics, Transcript
    from providers.pocketsphinx.stt import PocketsphinxSTT
    from providers.vad.silero import SileroVAD

    rt = SessionRuntime(
        session_id="local",
        user_id="bench",
        input_sample_rate_hz=RATE,
        settings=PipelineSettings(endpointing=EndpointingConfig(min_silence_s=endpoint_s)),
        vad=SileroVAD(),
        stt=PocketsphinxSTT(),
        tts=EspeakTTS(),
        agent=build_agent(spec={"type": "echo"}),
    )
    out = []
    for i in range(turns):
        speech = pcm[phrase(i)]
        first_audio: float | None = None
        metrics: dict[str, Any] = {}
        heard: str | None = None

        async def push(frame: bytes) -> None:
            rt.push_audio([frame])

        feeder = asyncio.create_task(
            send_realtime(
                push, speech + bytes(RATE * 2 * 2), RATE, mark_at_s=len(speech) / 2 / RATE
            )
        )
        while not metrics and heard != "":
            polled = await rt.outbox.poll(timeout_s=30)
            for item in polled["items"]:
                if isinstance(item, AudioChunk):
                    first_audio = first_audio or time.monotonic()
                elif isinstance(item, Transcript) and item.final:
                    heard = item.text
                elif isinstance(item, Metrics):
                    metrics = item.to_wire()
        speech_end = await feeder
        v2v = (first_audio - speech_end) * 1000 if first_audio and speech_end else None
        out.append(
            {
                "client_v2v_ms": v2v,
                "heard": heard,
                "spoken": phrase(i),
                **{k: v for k, v in metrics.items() if k.endswith("_ms")},
            }
        )
    await rt.aclose()
    return out


def sample(turn: dict[str, Any]) -> dict[str, Any]:
    """What the JSON keeps of one turn."""
    return {k: turn.get(k) for k in ("client_v2v_ms", "response_ms", *STAGES, "heard")}


def level_figures(turns: list[dict[str, Any]]) -> dict[str, Any]:
    v2v = [t["client_v2v_ms"] for t in turns if t["client_v2v_ms"] is not None]
    return {
        "client_v2v_ms": summary(v2v),
        "v2v_within_500ms": round(sum(v <= 500 for v in v2v) / len(v2v), 3) if v2v else None,
        "turns_without_reply": sum(t["client_v2v_ms"] is None for t in turns),
        "server_response_ms": summary([t["response_ms"] for t in turns if t.get("response_ms")]),
        "waterfall_p50_ms": {
            s: round(pct([t[s] for t in turns if t.get(s) is not None], 50), 1) for s in STAGES
        },
    }


def word_accuracy(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """What the recogniser heard against what was spoken: 1 - word errors / words spoken, and
    every transcript heard per phrase with its count."""
    words = sum(len(t["spoken"].split()) for t in turns)
    errors = sum(word_errors(t["spoken"], t["heard"] or "") for t in turns)
    heard: dict[str, Counter[str]] = {}
    for t in turns:
        heard.setdefault(t["spoken"], Counter())[t["heard"] or ""] += 1
    return {
        "word_accuracy": round(1 - errors / words, 4) if words else None,
        "words": words,
        "word_errors": errors,
        "turns": len(turns),
        "turns_exact": sum((t["heard"] or "") == t["spoken"] for t in turns),
        "heard_vs_spoken": {p: dict(c.most_common()) for p, c in heard.items()},
    }


def ms_p50_max(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "max": None}
    return {"n": len(values), "p50": round(pct(values, 50), 1), "max": round(max(values), 1)}


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


def within_latency(e: dict[str, Any]) -> bool:
    v = e["client_v2v_ms"]
    return bool(v["n"]) and v["p50"] <= V2V_P50_MS and v["p95"] <= V2V_P95_MS


def targets(report: dict[str, Any], room: int) -> dict[str, Any]:
    """Issue 19's targets, each with its figure and whether it was met."""
    levels = report["concurrency"]
    over = {n: e for n, e in levels.items() if e["offered"] > room}
    within = [e["admitted"] for e in levels.values() if within_latency(e)]
    first = report["first_turn"]
    return {
        "admitted_v2v": {
            "bound_ms": {"p50": V2V_P50_MS, "p95": V2V_P95_MS},
            "by_level": {
                n: {
                    "admitted": e["admitted"],
                    "p50": e["client_v2v_ms"]["p50"],
                    "p95": e["client_v2v_ms"]["p95"],
                    "met": within_latency(e),
                }
                for n, e in levels.items()
            },
            "met": all(within_latency(e) for e in levels.values()),
        },
        "beyond_capacity_refused_at_once": {
            "speech_capacity": room,
            "bound_ms": REFUSED_AT_ONCE_MS,
            "by_level": {
                n: {
                    "offered": e["offered"],
                    "refused": e["refused"],
                    "expected_refused": e["offered"] - room,
                    "refusal_ms_max": e["refusal_ms"]["max"],
                    "met": e["refused"] == e["offered"] - room
                    and e["admitted"] == room
                    and e["refusals_name_speech_capacity"]
                    and (e["refusal_ms"]["max"] or 0) <= REFUSED_AT_ONCE_MS,
                }
                for n, e in over.items()
            },
            # No level offered more than the capacity: nothing to check.
            "met": all(
                e["refused"] == e["offered"] - room
                and e["admitted"] == room
                and e["refusals_name_speech_capacity"]
                and (e["refusal_ms"]["max"] or 0) <= REFUSED_AT_ONCE_MS
                for e in over.values()
            )
            if over
            else None,
        },
        "max_calls_within_latency": {
            "value": report["max_calls_within_latency"],
            "bound": MIN_CALLS_WITHIN_LATENCY,
            "met": bool(within) and max(within) >= MIN_CALLS_WITHIN_LATENCY,
        },
        "first_turn_within_10pct": {
            "ratio": first["ratio"],
            "bound": FIRST_TURN_RATIO,
            "met": first["ratio"] is not None and first["ratio"] <= FIRST_TURN_RATIO,
        },
        # Reported, no bound here: the phrase set's table (and today's defaults) is
        # stt_settings.json; these are the benchmark's own three phrases under load.
        "word_accuracy": {k: v["word_accuracy"] for k, v in report["word_accuracy"].items()},
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=None, help="calls offered")
    ap.add_argument("--turns", type=int, default=3, help="turns per session, at least")
    ap.add_argument("--min-turns", type=int, default=24, help="turns per level, at least")
    ap.add_argument("--stagger", type=float, default=3.0, help="calls start talking within (s)")
    ap.add_argument("--barge-ins", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--quick",
        action="store_true",
        help="1 and 8 calls offered (unless --concurrency), 1 turn per call, 3 per level, "
        "1 barge-in; writes voice_latency_quick.json",
    )
    ap.add_argument(
        "--endpointing", type=float, default=0.3, help="min_endpointing_delay (s) for the run"
    )
    args = ap.parse_args()
    name = "voice_latency"
    if args.quick:
        name = "voice_latency_quick"
        args.concurrency = args.concurrency or [1, 8]
        args.turns, args.min_turns, args.barge_ins = 1, 3, 1
    args.concurrency = args.concurrency or [1, 3, 5, 10]
    endpoint_s = args.endpointing
    rng = random.Random(args.seed)

    import serve_app
    from backend.iface import Config
    from benchmarks.common import local_backend

    pcm = await phrases_pcm()
    onset = speech_onset_s(pcm["stop please"])
    report: dict[str, Any] = {
        "settings": {**vars(args), "phrases": PHRASES},
        "machine": machine(),
    }
    # Before anything warms a model: its own fresh Ray, stopped before the rest.
    report["first_turn"] = await first_turn(pcm, endpoint_s)
    print_first_turn(report["first_turn"])
    baseline = await local_turns(pcm, args.min_turns, endpoint_s)
    report["in_process"] = {
        **level_figures(baseline),
        "samples": [sample(t) for t in baseline],
    }
    accuracy = {
        "first_turn": word_accuracy(
            [{**t, "spoken": FIRST_TURN_PHRASE} for t in report["first_turn"]["samples"]]
        ),
        "in_process": word_accuracy(baseline),
    }

    # The product's defaults for admission (session slots, cap, speech_load_threshold): only
    # the endpointing delay is the run's own.
    with local_backend(serve_app.SESSION_SLOTS_PER_NODE, min_endpointing_delay=endpoint_s) as (
        _,
        base,
    ):
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            cap = await settle(http)
            speech = cap["speech"]
            assert speech["speech_load_threshold"] == Config().speech_load_threshold, speech
            (room,) = speech["capacity_by_node"].values()  # one node
            report["speech_capacity"] = {
                **speech,
                "cpus_by_node": {n: u["cpus"] for n, u in cap["nodes"].items()},
                "max_concurrent_sessions": cap["max_concurrent_sessions"],
                "session_slots": cap["session_slots"],
                "warm_pool_size": cap["warm_pool"]["warm_pool_size"],
            }
            print(f"speech capacity: {room} calls ({speech})", flush=True)
            report["concurrency"] = {}
            for n in args.concurrency:
                entry, turns = await run_level(http, pcm, n, args, rng)
                accuracy[str(n)] = word_accuracy(turns)
                if n == 1:
                    one, local = entry, report["in_process"]
                    report["runtime_overhead_ms"] = {
                        "v2v_p50": round(
                            one["client_v2v_ms"]["p50"] - local["client_v2v_ms"]["p50"], 1
                        ),
                        "v2v_p95": round(
                            one["client_v2v_ms"]["p95"] - local["client_v2v_ms"]["p95"], 1
                        ),
                        "by_stage_p50": {
                            s: round(one["waterfall_p50_ms"][s] - local["waterfall_p50_ms"][s], 1)
                            for s in STAGES
                        },
                    }
                report["concurrency"][str(n)] = entry
                print_row(n, entry, accuracy[str(n)])
            await settle(http)
        barge = [await ws_barge_in(base, pcm, onset) for _ in range(args.barge_ins)]
        report["barge_in_last_byte_after_due_ms"] = summary(barge)
    report["word_accuracy"] = accuracy
    within = [e["admitted"] for e in report["concurrency"].values() if within_latency(e)]
    report["max_calls_within_latency"] = max(within, default=0)
    report["targets"] = targets(report, room)
    print_report(report)
    write(name, report)
    plot(report, name)


def print_first_turn(f: dict[str, Any]) -> None:
    print(
        f"first turn on a fresh backend ({f['worker']} worker, create {f['create_ms']} ms): "
        f"turn 1 v2v {f['turn_1_v2v_ms']} ms, turns 2-{FIRST_TURN_TURNS} median "
        f"{f['turns_2_5_median_v2v_ms']} ms, ratio {f['ratio']}",
        flush=True,
    )


def print_row(n: int, e: dict[str, Any], acc: dict[str, Any]) -> None:
    v, w, c = e["client_v2v_ms"], e["waterfall_p50_ms"], e["cpu"]
    within = f"{e['v2v_within_500ms']:.0%}" if e["v2v_within_500ms"] is not None else "-"
    print(
        f"N={n:<3} admitted {e['admitted']} refused {e['refused']} "
        f"(p50 {e['refusal_ms']['p50']} max {e['refusal_ms']['max']} ms) | "
        f"v2v p50 {v['p50']:7.1f} p95 {v['p95']:7.1f} ms (n={v['n']}, {within} ≤ 500) | p50 "
        + ", ".join(f"{k.removesuffix('_ms')} {x:.1f}" for k, x in w.items())
        + f" | Ray {c['ray_cores_busy']} cores (machine {c['machine_cores_busy']}), "
        + f"STT {c['stt_cpu_per_speech_s']} s/s speech | word acc {acc['word_accuracy']}",
        flush=True,
    )


def print_report(r: dict[str, Any]) -> None:
    b = r["in_process"]["client_v2v_ms"]
    print(f"\nin-process baseline v2v (1 session): p50 {b['p50']:.1f} p95 {b['p95']:.1f} ms")
    one = r.get("runtime_overhead_ms")
    if one:
        print(
            f"runtime overhead (Ray + Serve + websocket, 1 session): p50 {one['v2v_p50']:.1f} "
            f"p95 {one['v2v_p95']:.1f} ms; by stage (p50): {one['by_stage_p50']}"
        )
    g = r["barge_in_last_byte_after_due_ms"]
    print(
        f"barge-in: last reply byte after the interruption was due: p50 {g['p50']:.1f} "
        f"max {max(g['p50'], g['p99']):.1f} ms (n={g['n']})"
    )
    print(f"max calls within latency: {r['max_calls_within_latency']}")
    for k, t in r["targets"].items():
        if isinstance(t, dict) and "met" in t:
            print(f"target {k}: {'met' if t['met'] else 'MISSED' if t['met'] is False else '-'}")


def plot(r: dict[str, Any], name: str = "voice_latency") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    levels = list(r["concurrency"])
    entries = [r["concurrency"][n] for n in levels]
    stages = list(entries[0]["waterfall_p50_ms"])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 5), width_ratios=[3, 2])
    x = np.arange(len(levels))
    bottom = np.zeros(len(levels))
    for s in stages:
        vals = np.array([e["waterfall_p50_ms"][s] for e in entries], dtype=float)
        vals = np.nan_to_num(vals)
        ax.bar(x, vals, bottom=bottom, label=s.removesuffix("_ms"), width=0.6)
        bottom += vals
    p50 = [e["client_v2v_ms"]["p50"] for e in entries]
    p95 = [e["client_v2v_ms"]["p95"] for e in entries]
    ax.plot(x, p50, "k^", label="client v2v p50 (admitted)")
    ax.plot(x, p95, "kv", mfc="none", label="client v2v p95 (admitted)")
    ax.axhline(V2V_P50_MS, color="tab:green", ls="--", lw=1, label=f"target p50 ≤ {V2V_P50_MS:g}")
    ax.axhline(V2V_P95_MS, color="tab:red", ls=":", lw=1, label=f"target p95 ≤ {V2V_P95_MS:g}")
    top = max([V2V_P95_MS, *[v for v in p95 if v == v]]) * 1.15
    for i, e in enumerate(entries):
        ax.text(
            i,
            top * 0.97,
            f"{e['admitted']} admitted\n{e['refused']} refused",
            ha="center",
            va="top",
            fontsize=8,
        )
    ax.set_ylim(0, top)
    ax.set_xticks(x, levels)
    cap = r.get("speech_capacity", {}).get("capacity_by_node", {})
    ax.set_xlabel(f"calls offered at once (speech capacity {', '.join(map(str, cap.values()))})")
    ax.set_ylabel("ms")
    ax.set_title("Admitted calls' voice-to-voice latency and waterfall (p50)", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4)
    f = r["first_turn"]
    v = [s["client_v2v_ms"] for s in f["samples"]]
    turns = np.arange(1, len(v) + 1)
    ax2.bar(turns, [x or 0 for x in v], color=["tab:orange", *["tab:blue"] * (len(v) - 1)])
    if f["turns_2_5_median_v2v_ms"]:
        m = f["turns_2_5_median_v2v_ms"]
        ax2.axhline(m, color="k", lw=1, label="median of turns 2-5")
        ax2.axhline(m * FIRST_TURN_RATIO, color="tab:red", ls=":", lw=1, label="+10 % (target)")
    ax2.set_ylim(0, max([x or 0 for x in v] + [(f["turns_2_5_median_v2v_ms"] or 0) * 1.1]) * 1.1)
    ax2.set_xlabel("turn of the first call on a fresh backend")
    ax2.set_ylabel("client v2v (ms)")
    ax2.set_title(f"First turn: ratio {f['ratio']}", fontsize=10)
    ax2.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=120)


if __name__ == "__main__":
    asyncio.run(main())
