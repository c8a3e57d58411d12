"""Voice-to-voice latency of real spoken turns, and what this architecture costs.

    python -m benchmarks.voice_latency                 # concurrency 1, 10, 25
    python -m benchmarks.voice_latency --concurrency 1 4 --turns 3

N concurrent sessions each hold a scripted conversation of real speech (espeak-ng phrases,
streamed in real time over the audio websocket through Serve and Ray). Per turn it records the
client's voice-to-voice latency (last speech frame sent → first reply audio byte received) and
the server's waterfall (endpointing, STT finalisation, agent, TTS first audio). The baseline,
measured in the same run: the same stages (silero, pocketsphinx, echo agent, espeak-ng) called in
this one process with no Ray and no transport, turns fed in real time as well; the difference
of the two is the runtime overhead. Barge-in: the user talks over a long reply; the figure is
the time from sending the audio frame that makes the interruption due to the last reply byte
received.

Writes benchmarks/results/voice_latency.json (and .png when matplotlib is installed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from backend.http_client import send_realtime

RESULTS = Path(__file__).parent / "results"
PHRASES = ["hello world", "what time is it", "open the door"]
RATE = 16000
FRAME = 640  # 20 ms
LONG_PREFIX = (
    "Here is a long answer that takes several seconds to say out loud. It keeps going for a "
    "while so that you can interrupt it. You said: "
)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values), q))


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "mean": statistics.fmean(values) if values else None,
    }


async def phrases_pcm() -> dict[str, bytes]:
    from tests.conftest import speak

    return {p: await speak(p) for p in [*PHRASES, "stop please"]}


# -- through Ray + Serve + the websocket -----------------------------------------------------
async def ws_session(base: str, pcm: dict[str, bytes], turns: int) -> list[dict[str, Any]]:
    from backend.http_client import HttpClient

    out: list[dict[str, Any]] = []
    async with HttpClient(base, timeout_s=120) as client:
        session = await client.create_session(user_id="bench")
        url = f"{session['media']['url']}?token={session['media']['token']}"
        try:
            async with websockets.connect(url, max_size=None) as ws:
                for i in range(turns):
                    out.append(await ws_turn(ws, pcm[PHRASES[i % len(PHRASES)]]))
        finally:
            await client.close_session(session["session_id"])
    return out


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
async def local_turns(
    pcm: dict[str, bytes], turns: int, sessions: int, endpoint_s: float
) -> list[float]:
    from pipelines.endpointing import EndpointingConfig
    from pipelines.session import SessionRuntime
    from pipelines.stt_tts import PipelineSettings
    from providers.agents import build_agent
    from providers.espeak.tts import EspeakTTS
    from providers.pocketsphinx.stt import PocketsphinxSTT
    from providers.vad.silero import SileroVAD

    async def one() -> list[float]:
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

            async def push(frame: bytes) -> None:
                rt.push_audio([frame])

            feeder = asyncio.create_task(
                send_realtime(
                    push, speech + bytes(RATE * 2 * 2), RATE, mark_at_s=len(speech) / 2 / RATE
                )
            )
            done = False
            while not done:
                polled = await rt.outbox.poll(timeout_s=30)
                for kind, payload in polled["items"]:
                    if kind == "audio":
                        first_audio = first_audio or time.monotonic()
                    elif payload["type"] == "metrics":
                        done = True
            speech_end = await feeder
            if first_audio and speech_end:
                out.append((first_audio - speech_end) * 1000)
        await rt.aclose()
        return out

    results = await asyncio.gather(*(one() for _ in range(sessions)))
    return [v for r in results for v in r]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 25])
    ap.add_argument("--turns", type=int, default=4, help="turns per session")
    ap.add_argument("--barge-ins", type=int, default=5)
    ap.add_argument(
        "--endpointing", type=float, default=0.3, help="min_endpointing_delay (s) for the run"
    )
    args = ap.parse_args()
    endpoint_s = args.endpointing

    import serve_app
    from backend.iface import Config
    from tests.conftest import free_port

    pcm = await phrases_pcm()
    onset = speech_onset_s(pcm["stop please"])
    report: dict[str, Any] = {"endpointing_s": endpoint_s, "turns_per_session": args.turns}

    baseline = await local_turns(pcm, args.turns, 1, endpoint_s)
    report["in_process_v2v_ms"] = summary(baseline)

    serve_app.ensure_ray(session_slots=max(args.concurrency) + 2)
    port = free_port()
    cfg = Config(
        max_concurrent_sessions=max(args.concurrency) + 2, min_endpointing_delay=endpoint_s
    )
    serve_app.deploy("local", cfg, port=port)
    base = f"http://127.0.0.1:{port}"
    try:
        report["concurrency"] = {}
        for n in args.concurrency:
            started = time.monotonic()
            runs = await asyncio.gather(*(ws_session(base, pcm, args.turns) for _ in range(n)))
            turns = [t for r in runs for t in r]
            stages = ["end_of_turn_delay_ms", "stt_final_ms", "agent_ms", "tts_first_audio_ms"]
            v2v = [t["client_v2v_ms"] for t in turns if t["client_v2v_ms"] is not None]
            entry = {
                "client_v2v_ms": summary(v2v),
                "server_response_ms": summary([t["response_ms"] for t in turns]),
                "waterfall_p50_ms": {
                    s: pct([t[s] for t in turns if t.get(s) is not None], 50) for s in stages
                },
                "wall_s": round(time.monotonic() - started, 1),
            }
            if n == 1:
                entry["runtime_overhead_ms"] = {
                    q: entry["client_v2v_ms"][q] - report["in_process_v2v_ms"][q]
                    for q in ("p50", "p95")
                }
            report["concurrency"][str(n)] = entry
            print_row(n, entry)
        barge = [await ws_barge_in(base, pcm, onset) for _ in range(args.barge_ins)]
        report["barge_in_last_byte_after_due_ms"] = summary(barge)
    finally:
        from ray import serve

        serve.shutdown()
        import ray

        ray.shutdown()
    print_report(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "voice_latency.json").write_text(json.dumps(report, indent=2))
    plot(report)


def print_row(n: int, e: dict[str, Any]) -> None:
    v = e["client_v2v_ms"]
    w = e["waterfall_p50_ms"]
    print(
        f"N={n:<3} v2v p50 {v['p50']:7.1f} p95 {v['p95']:7.1f} ms | waterfall p50: "
        + ", ".join(f"{k.removesuffix('_ms')} {x:.1f}" for k, x in w.items() if x is not None),
        flush=True,
    )


def print_report(r: dict[str, Any]) -> None:
    b = r["in_process_v2v_ms"]
    print(f"\nin-process baseline v2v (1 session): p50 {b['p50']:.1f} p95 {b['p95']:.1f} ms")
    one = r["concurrency"].get("1", {}).get("runtime_overhead_ms")
    if one:
        print(
            f"runtime overhead (Ray + Serve + websocket, 1 session): p50 {one['p50']:.1f} "
            f"p95 {one['p95']:.1f} ms"
        )
    g = r["barge_in_last_byte_after_due_ms"]
    print(
        f"barge-in: last reply byte after the interruption was due: p50 {g['p50']:.1f} "
        f"max {max(g['p50'], g['p99']):.1f} ms (n={g['n']})"
    )


def plot(r: dict[str, Any]) -> None:
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
    fig.savefig(RESULTS / "voice_latency.png", dpi=120)


if __name__ == "__main__":
    asyncio.run(main())
