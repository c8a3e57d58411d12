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
import random
from typing import Any

import httpx

from benchmarks.common import machine, summary, write
from benchmarks.voice_latency_baseline import local_turns
from benchmarks.voice_latency_calls import (
    FIRST_TURN_PHRASE,
    PHRASES,
    STAGES,
    phrases_pcm,
    settle,
    speech_onset_s,
    ws_barge_in,
)
from benchmarks.voice_latency_figures import level_figures, sample, word_accuracy
from benchmarks.voice_latency_levels import first_turn, run_level
from benchmarks.voice_latency_report import plot, print_first_turn, print_report, print_row
from benchmarks.voice_latency_targets import targets, within_latency


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


if __name__ == "__main__":
    asyncio.run(main())
