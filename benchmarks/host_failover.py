"""What a node's shared STT host dying costs the calls it serves (the `node` placement).

    .venv/bin/python -m benchmarks.host_failover [--trials 5] [--calls 3]

Each trial: `--calls` live calls on one node say "hello world" at once, twice. The first time
nothing fails (the floor); the second time the node's STT host is SIGKILLed while they speak.
The node's spare host takes over and every call replays its utterance there. Per call, the
gap is how much later its transcript arrives after the end of its speech than in the no-fault
turn of the same trial; a transcript that is wrong or missing is lost. Targets: gap ≤ 250 ms,
0 transcripts lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import time
from typing import Any

import httpx

from benchmarks.common import RESULTS, local_backend, machine, pyplot, summary, table, write

TARGET_GAP_MS = 250.0
SILENCE_S = 1.5


async def spare_ready(url: str, timeout_s: float = 180.0) -> dict[str, Any]:
    """The node's live STT host, once its spare is loaded too."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while time.monotonic() < deadline:
            hosts = (await http.get("/v1/health")).json()["details"]["stage_hosts"]
            live = [h for h in hosts if h["role"] == "live" and h["ready"]]
            if live and any(h["role"] == "spare" and h["ready"] for h in hosts):
                return live[0]
            await asyncio.sleep(0.5)
    raise TimeoutError("the node's spare STT host never loaded")


async def turn(call: Any, pcm: bytes, turn_id: int, kill_pid: int | None) -> tuple[float, str]:
    """Say `pcm`; returns (ms from the end of speech to the transcript's arrival, the text)."""
    speech_end = time.monotonic() + len(pcm) / 2 / 16000
    speaking = asyncio.create_task(call.say(pcm, SILENCE_S))
    if kill_pid is not None:
        await call.wait("speech_started", turn_id=turn_id)
        await asyncio.sleep(0.3)  # mid-utterance: the host holds audio of every call
        os.kill(kill_pid, signal.SIGKILL)
    await speaking
    event = await call.wait("transcript", turn_id=turn_id, timeout_s=60)
    arrived = call.arrived[next(i for i, e in enumerate(call.events) if e is event)]
    await call.turn_done(turn_id)
    return (arrived - speech_end) * 1000, event.get("text", "")


async def trial(url: str, pcm: bytes, calls: int) -> dict[str, Any]:
    from backend.http_client import HttpClient
    from tests.e2e.live_call import Call

    async with HttpClient(url) as client:
        sessions = [await client.create_session(user_id=f"host-kill-{i}") for i in range(calls)]
        host = await spare_ready(url)
        async with contextlib.AsyncExitStack() as stack:
            live = [await stack.enter_async_context(Call.open(s)) for s in sessions]
            base = await asyncio.gather(*(turn(c, pcm, 1, None) for c in live))
            killer = [host["pid"]] + [None] * (len(live) - 1)  # one kill, seen by every call
            fault = await asyncio.gather(
                *(turn(c, pcm, 2, k) for c, k in zip(live, killer, strict=True))
            )
            failovers = [len(c.of("stage_failover")) for c in live]
        for s in sessions:
            await client.close_session(s["session_id"])
    return {
        "gap_ms": [f[0] - b[0] for b, f in zip(base, fault, strict=True)],
        "no_fault_ms": [b[0] for b in base],
        "fault_ms": [f[0] for f in fault],
        "transcripts": [f[1] for f in fault],
        "failover_events": failovers,
    }


async def run(url: str, trials: int, calls: int) -> list[dict[str, Any]]:
    from tests.conftest import speak

    pcm = await speak("hello world")
    out = []
    for i in range(trials):
        out.append(await trial(url, pcm, calls))
        gaps = ", ".join(f"{g:.0f}" for g in out[-1]["gap_ms"])
        print(f"trial {i + 1}/{trials}: gap ms {gaps}; heard {out[-1]['transcripts']}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--calls", type=int, default=3)
    args = ap.parse_args()
    config = {"warm_pool_size": args.calls, "health_check_interval": 1.0, "timeout": 120}
    with local_backend(args.calls + 4, **config) as (_, url):
        trials = asyncio.run(run(url, args.trials, args.calls))
    gaps = [g for t in trials for g in t["gap_ms"]]
    texts = [x for t in trials for x in t["transcripts"]]
    lost = sum(1 for x in texts if x != "hello world")
    result = {
        "benchmark": "host_failover",
        "machine": machine(),
        "settings": vars(args),
        "gap_ms": summary(gaps),
        "no_fault_transcript_ms": summary([x for t in trials for x in t["no_fault_ms"]]),
        "fault_transcript_ms": summary([x for t in trials for x in t["fault_ms"]]),
        "transcripts_lost": lost,
        "targets": {
            "gap_p95_le_250ms": summary(gaps)["p95"] <= TARGET_GAP_MS,
            "transcripts_lost_0": lost == 0,
        },
        "trials": trials,
    }
    g = result["gap_ms"]
    print(
        table(
            [[f"{g['p50']} / {g['p95']} / {g['max']}", lost, len(texts)]],
            ["gap p50/p95/max ms", "lost", "transcripts"],
        )
    )
    print(f"wrote {write('host_failover', result)}")
    plot(result)


def plot(result: dict[str, Any]) -> None:
    plt = pyplot()
    if plt is None:
        return
    gaps = [g for t in result["trials"] for g in t["gap_ms"]]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(gaps, bins=15)
    ax.axvline(TARGET_GAP_MS, color="orange", linestyle="--", label=f"target {TARGET_GAP_MS:g} ms")
    ax.set_xlabel("transcript delay added by the host's death (ms, per call)")
    ax.set_ylabel("calls")
    n = result["settings"]["calls"]
    ax.set_title(f"STT host killed under {n} live calls: {result['transcripts_lost']} lost")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "host_failover.png", dpi=110)


if __name__ == "__main__":
    main()
