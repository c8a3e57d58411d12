"""Talking density: N concurrent calls, each speaking a turn every few seconds, through the
hosted-provider path, and what the runtime costs on top of the pipeline itself.

    python -m benchmarks.talkers                           # 1, 10, 25, 50, 100 calls
    python -m benchmarks.talkers --talkers 1,10,25 --turns-per-call 5
    python -m benchmarks.talkers --quick                   # 1 and 3 calls, 3 turns each
    python -m benchmarks.talkers --via serve               # force the Serve-port websocket
    python -m benchmarks.talkers --livekit                 # then LiveKit rooms at 1, 10, 25
    python -m benchmarks.talkers --quick --livekit         # both paths at 1 and 3 calls
    voice-backend bench talkers --quick

Providers: the session's STT and TTS stages are Cartesia (the official SDK, in the stage
actors) against the loopback Cartesia server of `tests/fakes/cartesia.py`, which runs in its
own process; its CPU is reported apart. By default the fake answers every utterance with a
canned transcript and caches the speech it synthesizes (`--fake-stt pocketsphinx` keeps its real
recogniser), so the provider costs next to nothing and what is measured is the runtime.

Callers run in their own processes (asyncio, up to `--calls-per-process` calls each), so their
CPU is not the backend's. Each call connects to the `media.url` + token its create answer
returned (`--via serve` forces `ws://<serve>/v1/sessions/{id}/audio` instead), then streams PCM16
in real time in 20 ms frames without a pause: silence, and every `--interval` seconds (first turn
at a seeded random offset) an espeak-ng phrase. Voice-to-voice is client side: the last frame of
the phrase sent → the first reply audio byte received. A turn with no reply audio within
`--deadline` seconds is lost.

Baseline, in the same run, right after each level: one call with the same phrases, schedule,
VAD, endpointing, echo agent and the same fake Cartesia, but every stage in one process
(`pipelines.session.SessionRuntime`, no Ray, no Serve, no socket to the session), in a subprocess
of its own. Overhead = the level's v2v percentile − the baseline's (p50 and p95).

LiveKit (`--livekit`, levels `--livekit-talkers`): after the websocket levels, on the same Ray
and Serve port, the backend redeployed with provider `livekit` against a real livekit-server on
loopback (`tests/e2e/livekit_server.py`); each caller is an rtc participant (the `livekit` SDK,
`--livekit-calls-per-process` per process) publishing the same phrases through an `AudioSource`
and listening to the agent's track; v2v ends at the first frame of that track with speech in it.
Results under `by_talkers_livekit` (same keys, plus livekit-server's CPU), and
`livekit_minus_websocket_ms` where both paths ran the same N.

CPU per talking call: the CPU every Ray process used during the level (sampled, so processes that
start or end during it count; `benchmarks.common.CpuMeter`), over the level's wall time, / N,
in % of one core. Writes benchmarks/results/talkers.json and talkers.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import CpuMeter, machine, ray_processes_except, write
from benchmarks.talkers_baseline import run_baseline
from benchmarks.talkers_call import PHRASES
from benchmarks.talkers_callers import LK_CALLS_PER_PROCESS, run_callers, run_livekit_callers
from benchmarks.talkers_children import Child
from benchmarks.talkers_fake import serve_fake
from benchmarks.talkers_level import child_pids, level, livekit_levels
from benchmarks.talkers_report import livekit_minus_websocket, plot, print_row, targets


async def main(args: argparse.Namespace) -> None:
    from benchmarks.common import local_backend, wait_pool
    from tests.fakes.cartesia import VALID_KEY

    levels = [int(x) for x in args.talkers.split(",") if x]
    lk_levels = [int(x) for x in args.livekit_talkers.split(",") if x] if args.livekit else []
    if args.quick:
        levels, args.turns_per_call, args.baseline_turns, args.min_turns = [1, 3], 3, 3, 3
        lk_levels = [1, 3] if args.livekit else []
    slots = max(levels + lk_levels) + 4
    tmp = Path(tempfile.mkdtemp(prefix="talkers-"))
    fake = await Child.start(
        "fake", "--fake-stt", args.fake_stt, log=tmp / "fake.log"
    )  # prints its URL
    report: dict[str, Any] = {}
    try:
        fake_url = await fake.line(120)
        config = {
            "stt_provider": "cartesia",
            "tts_provider": "cartesia",
            "stage_provider_config": {"cartesia": {"api_key": VALID_KEY, "api_url": fake_url}},
            "min_endpointing_delay": args.endpointing,
        }
        report = {
            "note": args.note,
            "settings": {
                **vars(args),
                "talkers": levels,
                "livekit_talkers": lk_levels,
                "phrases": PHRASES,
                "config": config,
            },
            "machine": machine(),
        }
        by: dict[str, Any] = {}
        lk: dict[str, Any] | None = {} if lk_levels else None
        with local_backend(slots, max_concurrent_sessions=slots, **config) as (_, base):
            wait_pool(base, 2)  # Config.warm_pool_size: the node at rest
            idle = CpuMeter(lambda: ray_processes_except(child_pids())).start()
            await asyncio.sleep(5)
            report["ray_idle_cores_busy"] = idle.stop()["cores_busy"]
            idle = report["ray_idle_cores_busy"]
            report["by_talkers"] = by
            for n in levels:
                by[str(n)] = await level(n, args, base, config, fake, tmp, idle)
                print_row(n, by[str(n)])
                report["machine_after"] = machine()
                write(args.out, {**report, "targets": targets(by, lk)})
            if lk is not None:
                report["by_talkers_livekit"] = lk
                await livekit_levels(lk_levels, args, base, slots, config, fake, tmp, idle, lk)
                report["livekit_minus_websocket_ms"] = livekit_minus_websocket(by, lk)
        report["targets"] = targets(by, lk)
    finally:
        await fake.stop()
    path = write(args.out, report)
    plot(report, args.out)
    print(f"\ntargets: {report['targets']}\nwrote {path} (logs in {tmp})")


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--talkers", default="1,10,25,50,100", help="comma-separated call counts")
    ap.add_argument("--turns-per-call", type=int, default=5)
    ap.add_argument(
        "--min-turns", type=int, default=20, help="turns per level at least (more per call at 1)"
    )
    ap.add_argument("--baseline-turns", type=int, default=10, help="in-process turns per level")
    ap.add_argument("--interval", type=float, default=6.0, help="s between a call's turns")
    ap.add_argument("--deadline", type=float, default=3.0, help="s to the reply, else lost")
    ap.add_argument("--endpointing", type=float, default=0.3, help="min_endpointing_delay (s)")
    ap.add_argument("--via", choices=["media", "serve"], default="media")
    ap.add_argument("--calls-per-process", type=int, default=25)
    ap.add_argument("--fake-stt", choices=["canned", "pocketsphinx"], default="canned")
    ap.add_argument(
        "--livekit",
        action="store_true",
        help="then the same through LiveKit rooms (real livekit-server, rtc callers)",
    )
    ap.add_argument("--livekit-talkers", default="1,10,25", help="call counts over LiveKit")
    ap.add_argument("--livekit-calls-per-process", type=int, default=LK_CALLS_PER_PROCESS)
    ap.add_argument("--quick", action="store_true", help="1 and 3 calls, 3 turns each")
    ap.add_argument("--out", default=None, help="results name (default talkers[_quick])")
    ap.add_argument("--note", default=None)
    ap.add_argument(
        "--role", choices=["driver", "fake", "callers", "lk-callers", "baseline"], default="driver"
    )
    ap.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.out is None:
        args.out = "talkers_quick" if args.quick else "talkers"
    return args


def entry() -> None:
    args = parse()
    if args.role == "fake":
        asyncio.run(serve_fake("cartesia", args.fake_stt == "pocketsphinx"))
        return
    if args.role in ("callers", "baseline"):
        spec = json.loads(Path(args.spec).read_text())
        asyncio.run(run_callers(spec) if args.role == "callers" else run_baseline(spec))
        return
    if args.role == "lk-callers":
        asyncio.run(run_livekit_callers(json.loads(Path(args.spec).read_text())))
        # The report is written and the rooms left: skip the SDK's native teardown at exit
        # (tests/e2e/livekit_participant.py saw it abort once on a loaded machine).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    asyncio.run(main(args))


if __name__ == "__main__":
    entry()
