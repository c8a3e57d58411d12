"""Voice-to-voice latency of real spoken turns, and what this architecture costs.

    python -m benchmarks.voice_latency                 # concurrency 1, 10, 25
    python -m benchmarks.voice_latency --concurrency 1 3 10 --min-turns 30

N concurrent sessions each hold a scripted conversation of real speech (espeak-ng phrases,
streamed in real time over the audio websocket through Serve and Ray). Sessions start at random
offsets within `--stagger` seconds (seeded), as independent calls do, rather than in lockstep.
Per turn it records the client's voice-to-voice latency (last speech frame sent → first reply
audio byte received) and the server's waterfall (endpointing, STT finalisation, agent, TTS first
audio). Per level it records the CPU the sessions' processes used (session actor, STT stage,
TTS stage) and the whole machine, so a latency figure comes with what it cost.

The baseline, measured in the same run: the same stages (silero, pocketsphinx, echo agent,
espeak-ng) called in this one process with no Ray and no transport, turns fed in real time as
well; the difference of the two at one session is the runtime overhead. Barge-in: the user talks
over a long reply; the figure is the time from sending the audio frame that makes the
interruption due to the last reply byte received.

Writes benchmarks/results/voice_latency.json (and .png).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time
from typing import Any

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

PHRASES = ["hello world", "what time is it", "open the door"]
RATE = 16000
STAGES = ["end_of_turn_delay_ms", "stt_final_ms", "agent_ms", "tts_first_audio_ms"]
LONG_PREFIX = (
    "Here is a long answer that takes several seconds to say out loud. It keeps going for a "
    "while so that you can interrupt it. You said: "
)


async def phrases_pcm() -> dict[str, bytes]:
    from tests.conftest import speak

    return {p: await speak(p) for p in [*PHRASES, "stop please"]}


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far: everything, other users' work and this
    benchmark's own callers included (Ray's alone: `CpuMeter` over `ray_processes()`)."""
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def speech_s(pcm: dict[str, bytes], turns: int) -> float:
    """Seconds of speech a session says in `turns` turns."""
    return sum(len(pcm[PHRASES[i % len(PHRASES)]]) / 2 / RATE for i in range(turns))


# -- through Ray + Serve + the websocket -----------------------------------------------------
async def session_pids(session: dict[str, Any]) -> dict[str, int]:
    """The session's processes, as its worker actor describes them."""
    import ray

    import serve_app

    worker = ray.get_actor(session["worker"], namespace=serve_app.NAMESPACE)
    d = await worker.describe.remote()
    return {"session": d["pid"], "stt": d["stages"]["stt"]["pid"], "tts": d["stages"]["tts"]["pid"]}


async def ws_session(
    base: str, pcm: dict[str, bytes], turns: int, delay_s: float
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """One call: its turns, and the CPU seconds its processes used during them."""
    from backend.http_client import HttpClient

    await asyncio.sleep(delay_s)
    out: list[dict[str, Any]] = []
    async with HttpClient(base, timeout_s=120) as client:
        session = await client.create_session(user_id="bench")
        pids = await session_pids(session)
        before = {k: cpu_seconds([pid]) for k, pid in pids.items()}
        url = f"{session['media']['url']}?token={session['media']['token']}"
        try:
            async with websockets.connect(url, max_size=None) as ws:
                for i in range(turns):
                    out.append(await ws_turn(ws, pcm[PHRASES[i % len(PHRASES)]]))
            cpu = {k: cpu_seconds([pid]) - before[k] for k, pid in pids.items()}
        finally:
            await client.close_session(session["session_id"])
    return out, cpu


async def ws_turn(ws: Any, speech: bytes) -> dict[str, Any]:
    sent_speech_end: float | None = None
    first_audio: float | None = None
    metrics: dict[str, Any] = {}

    async def send() -> None:
        nonlocal sent_speech_end
        sent_speech_end = await send_realtime(
            ws.send, speech + bytes(RATE * 2 * 2), RATE, mark_at_s=len(speech) / 2 / RATE
        )

    sender = asyncio.create_task(send())
    async for msg in ws:
        if isinstance(msg, bytes):
            first_audio = first_audio or time.monotonic()
            continue
        event = json.loads(msg)
        if event["type"] == "metrics":
            metrics = event
            break
        if event["type"] == "error":
            raise RuntimeError(event)
    await sender
    v2v = (first_audio - sent_speech_end) * 1000 if first_audio and sent_speech_end else None
    return {"client_v2v_ms": v2v, **{k: v for k, v in metrics.items() if k.endswith("_ms")}}


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


# -- in one process, no Ray, no transport ----------------------------------------------------
async def local_turns(pcm: dict[str, bytes], turns: int, endpoint_s: float) -> list[dict[str, Any]]:
    """One session's turns with every stage in this process: v2v and the same waterfall."""
    from pipelines.endpointing import EndpointingConfig
    from pipelines.session import SessionRuntime
    from pipelines.stt_tts import PipelineSettings
    from providers.agents import build_agent
    from providers.espeak.tts import EspeakTTS
    from providers.messages import AudioChunk, Metrics
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
        speech = pcm[PHRASES[i % len(PHRASES)]]
        first_audio: float | None = None
        metrics: dict[str, Any] = {}

        async def push(frame: bytes) -> None:
            rt.push_audio([frame])

        feeder = asyncio.create_task(
            send_realtime(
                push, speech + bytes(RATE * 2 * 2), RATE, mark_at_s=len(speech) / 2 / RATE
            )
        )
        while not metrics:
            polled = await rt.outbox.poll(timeout_s=30)
            for item in polled["items"]:
                if isinstance(item, AudioChunk):
                    first_audio = first_audio or time.monotonic()
                elif isinstance(item, Metrics):
                    metrics = item.to_wire()
        speech_end = await feeder
        v2v = (first_audio - speech_end) * 1000 if first_audio and speech_end else None
        out.append(
            {"client_v2v_ms": v2v, **{k: v for k, v in metrics.items() if k.endswith("_ms")}}
        )
    await rt.aclose()
    return out


def sample(turn: dict[str, Any]) -> dict[str, Any]:
    """What the JSON keeps of one turn."""
    return {k: turn.get(k) for k in ("client_v2v_ms", "response_ms", *STAGES)}


def level_figures(turns: list[dict[str, Any]]) -> dict[str, Any]:
    v2v = [t["client_v2v_ms"] for t in turns if t["client_v2v_ms"] is not None]
    return {
        "client_v2v_ms": summary(v2v),
        "v2v_within_500ms": round(sum(v <= 500 for v in v2v) / len(v2v), 3) if v2v else None,
        "server_response_ms": summary([t["response_ms"] for t in turns if t.get("response_ms")]),
        "waterfall_p50_ms": {
            s: round(pct([t[s] for t in turns if t.get(s) is not None], 50), 1) for s in STAGES
        },
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 25])
    ap.add_argument("--turns", type=int, default=3, help="turns per session, at least")
    ap.add_argument("--min-turns", type=int, default=24, help="turns per level, at least")
    ap.add_argument("--stagger", type=float, default=3.0, help="sessions start within (s)")
    ap.add_argument("--barge-ins", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--quick",
        action="store_true",
        help="1 and 3 calls, 3 turns per level, 1 barge-in; writes voice_latency_quick.json",
    )
    ap.add_argument(
        "--endpointing", type=float, default=0.3, help="min_endpointing_delay (s) for the run"
    )
    args = ap.parse_args()
    name = "voice_latency"
    if args.quick:
        name = "voice_latency_quick"
        args.concurrency, args.turns, args.min_turns, args.barge_ins = [1, 3], 1, 3, 1
    endpoint_s = args.endpointing
    rng = random.Random(args.seed)

    from benchmarks.common import local_backend

    pcm = await phrases_pcm()
    onset = speech_onset_s(pcm["stop please"])
    report: dict[str, Any] = {
        "settings": {**vars(args), "phrases": PHRASES},
        "machine": machine(),
    }
    baseline = await local_turns(pcm, args.min_turns, endpoint_s)
    report["in_process"] = {
        **level_figures(baseline),
        "samples": [sample(t) for t in baseline],
    }

    slots = max(args.concurrency) + 2
    with local_backend(slots, max_concurrent_sessions=slots, min_endpointing_delay=endpoint_s) as (
        _,
        base,
    ):
        report["concurrency"] = {}
        for n in args.concurrency:
            per = max(args.turns, math.ceil(args.min_turns / n))
            busy0, started = machine_busy_s(), time.monotonic()
            ray_meter = CpuMeter(ray_processes).start()
            runs = await asyncio.gather(
                *(ws_session(base, pcm, per, rng.uniform(0, args.stagger)) for _ in range(n))
            )
            ray_cpu = ray_meter.stop()
            wall = time.monotonic() - started
            busy = machine_busy_s() - busy0
            turns = [t for r, _ in runs for t in r]
            entry = level_figures(turns)
            spoken = speech_s(pcm, per) * n
            cpu = {k: sum(c[k] for _, c in runs) for k in ("session", "stt", "tts")}
            entry["turns_per_session"] = per
            entry["samples"] = [sample(t) for t in turns]
            entry["wall_s"] = round(wall, 1)
            entry["cpu"] = {
                **{f"{k}_s": round(v, 2) for k, v in cpu.items()},
                # Every process of this Ray instance, sampled through the level (those that
                # started or ended in it included), over the level's wall time.
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
                "stt_cpu_per_speech_s": round(cpu["stt"] / spoken, 3),
                "session_cpu_per_call_s": round(cpu["session"] / wall / n, 3),
            }
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
            print_row(n, entry)
        barge = [await ws_barge_in(base, pcm, onset) for _ in range(args.barge_ins)]
        report["barge_in_last_byte_after_due_ms"] = summary(barge)
    print_report(report)
    write(name, report)
    plot(report, name)


def print_row(n: int, e: dict[str, Any]) -> None:
    v, w, c = e["client_v2v_ms"], e["waterfall_p50_ms"], e["cpu"]
    print(
        f"N={n:<3} v2v p50 {v['p50']:7.1f} p95 {v['p95']:7.1f} ms (n={v['n']}, "
        f"{e['v2v_within_500ms']:.0%} ≤ 500) | p50 "
        + ", ".join(f"{k.removesuffix('_ms')} {x:.1f}" for k, x in w.items())
        + f" | Ray {c['ray_cores_busy']} cores (machine {c['machine_cores_busy']}), "
        + f"STT {c['stt_cpu_per_speech_s']} s/s speech",
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


def plot(r: dict[str, Any], name: str = "voice_latency") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    levels = list(r["concurrency"])
    stages = list(next(iter(r["concurrency"].values()))["waterfall_p50_ms"])
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = np.zeros(len(levels))
    for s in stages:
        vals = np.array([r["concurrency"][n]["waterfall_p50_ms"][s] or 0 for n in levels])
        ax.bar(levels, vals, bottom=bottom, label=s.removesuffix("_ms"))
        bottom += vals
    p50 = [r["concurrency"][n]["client_v2v_ms"]["p50"] for n in levels]
    ax.plot(levels, p50, "k^", label="client v2v p50")
    ax.set_xlabel("concurrent talking sessions")
    ax.set_ylabel("ms")
    ax.set_title("Voice-to-voice latency and its waterfall (p50)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=120)


if __name__ == "__main__":
    asyncio.run(main())
