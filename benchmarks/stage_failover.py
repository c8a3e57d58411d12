"""How long a call goes deaf or mute when its STT or TTS stage process is killed.

    .venv/bin/python -m benchmarks.stage_failover [--trials 8]

Each trial starts a worker's real stage actors (pocketsphinx STT, espeak-ng TTS) on a private
local Ray node, SIGKILLs one stage's process, and at once asks the stage proxy for what a call
needs next: for TTS the first audio of a sentence, for STT the user's audio taken by a live
recogniser (then its transcript). The gap is from the kill to that first result from the
replacement. Two ways of replacing, measured in the same run, alternating trial by trial:

- `spare`: `Config.stage_spares` — a spare stage, loaded and waiting, takes over.
- `restart`: no spare; Ray restarts the same actor (`max_restarts`), a cold process start.

The no-fault time of the same call is measured too, as the floor. Target: spare gap ≤ 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from typing import Any

import ray

from benchmarks.common import RESULTS, machine, pyplot, summary, table, write

NAMESPACE = "bench_stage_failover"
TARGET_MS = 250.0


@ray.remote(num_cpus=0)
class Harness:
    """Plays the session worker: owns the stages, so they live on its node and die with it."""

    def __init__(self) -> None:
        self.stt: Any = None
        self.tts: Any = None
        self.n = 0

    async def start(self, spares: bool) -> None:
        from actors.stage_placement import open_session_stage

        self.n += 1
        owner = f"bench-{os.getpid()}-{self.n}"
        self.stt, _ = await open_session_stage("stt", owner, NAMESPACE, "pocketsphinx", {}, spares)
        self.tts, _ = await open_session_stage("tts", owner, NAMESPACE, "espeak", {}, spares)
        await self.tts.begin_turn(1)

    async def spares_ready(self) -> bool:
        return all(s.slot.spare_state()["spare"] == "ready" for s in (self.stt, self.tts))

    async def stop(self) -> None:
        self.stt.slot.stop()
        self.tts.slot.stop()

    async def tts_first_audio_s(self, kill: bool) -> float:
        """Kill the TTS stage (or not), then time the first audio of a sentence."""
        t0 = self._kill(self.tts.slot.pid) if kill else time.monotonic()
        async for _ in self.tts.synthesize("Hello there, how can I help you today?"):
            return time.monotonic() - t0
        raise RuntimeError("no audio")

    async def stt_times_s(self, pcm: bytes, kill: bool) -> tuple[float, float, str]:
        """Kill the STT stage (or not), then time: the utterance's audio taken by a live
        recogniser, and its transcript."""
        t0 = self._kill(self.stt.slot.pid) if kill else time.monotonic()
        stream = self.stt.stream()
        step = 3200  # 100 ms batches, as the pipeline sends them
        await stream.push(pcm[:step])
        taken = time.monotonic() - t0
        for off in range(step, len(pcm), step):
            await stream.push(pcm[off : off + step])
        text = await stream.finish()
        return taken, time.monotonic() - t0, text

    @staticmethod
    def _kill(pid: int) -> float:
        os.kill(pid, signal.SIGKILL)
        return time.monotonic()


async def hello_pcm() -> bytes:
    from tests.conftest import speak

    return await speak("hello world")


def run(trials: int) -> dict[str, Any]:
    pcm = asyncio.run(hello_pcm())
    harness = Harness.remote()
    samples: dict[str, list[float]] = {
        f"{what}_{mode}": []
        for what in ("tts", "stt", "stt_transcript")
        for mode in ("spare", "restart", "none")
    }
    texts: list[str] = []
    for trial in range(trials):
        for mode in ("spare", "restart"):
            ray.get(harness.start.remote(mode == "spare"))
            if mode == "spare":
                deadline = time.monotonic() + 120
                while not ray.get(harness.spares_ready.remote()):
                    if time.monotonic() > deadline:
                        raise TimeoutError("spares did not load")
                    time.sleep(0.1)
            if trial == 0 and mode == "spare":  # warm both code paths once, unmeasured
                ray.get(harness.tts_first_audio_s.remote(False))
                ray.get(harness.stt_times_s.remote(pcm, False))
            samples["tts_none"].append(ray.get(harness.tts_first_audio_s.remote(False)))
            taken, done, text = ray.get(harness.stt_times_s.remote(pcm, False))
            samples["stt_none"].append(taken)
            samples["stt_transcript_none"].append(done)
            samples[f"tts_{mode}"].append(ray.get(harness.tts_first_audio_s.remote(True)))
            if mode == "spare":  # the next kill must find a loaded spare again
                while not ray.get(harness.spares_ready.remote()):
                    time.sleep(0.1)
            taken, done, text = ray.get(harness.stt_times_s.remote(pcm, True))
            samples[f"stt_{mode}"].append(taken)
            samples[f"stt_transcript_{mode}"].append(done)
            texts.append(text)
            ray.get(harness.stop.remote())
            print(
                f"trial {trial + 1}/{trials} {mode}: tts {samples[f'tts_{mode}'][-1]:.3f} s,"
                f" stt {taken:.3f} s ({text!r})"
            )
    ms = {k: summary([v * 1000 for v in vs]) for k, vs in samples.items()}
    return {"samples_s": samples, "ms": ms, "transcripts_after_kill": texts}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", namespace=NAMESPACE, include_dashboard=False, log_to_driver=False)
    try:
        measured = run(args.trials)
    finally:
        ray.shutdown()
    ms = measured["ms"]
    result = {
        "benchmark": "stage_failover",
        "machine": machine(),
        "settings": vars(args),
        "target_spare_gap_ms": TARGET_MS,
        "gap_ms": {
            stage: {
                "spare": ms[f"{stage}_spare"],
                "restart": ms[f"{stage}_restart"],
                "no_fault": ms[f"{stage}_none"],
                "restart_over_spare_p50": round(
                    ms[f"{stage}_restart"]["p50"] / ms[f"{stage}_spare"]["p50"], 1
                ),
                "spare_p95_within_target": ms[f"{stage}_spare"]["p95"] <= TARGET_MS,
            }
            for stage in ("tts", "stt")
        },
        "stt_transcript_ms": {
            mode: ms[f"stt_transcript_{mode}"] for mode in ("spare", "restart", "none")
        },
        **measured,
    }
    rows = []
    for stage in ("tts", "stt"):
        g = result["gap_ms"][stage]
        rows.append(
            [
                stage,
                f"{g['spare']['p50']} / {g['spare']['p95']}",
                f"{g['restart']['p50']} / {g['restart']['p95']}",
                f"{g['no_fault']['p50']} / {g['no_fault']['p95']}",
                f"{g['restart_over_spare_p50']}×",
            ]
        )
    header = ["stage", "spare p50/p95 ms", "Ray restart p50/p95 ms", "no fault", "restart÷spare"]
    print(table(rows, header))
    print(f"wrote {write('stage_failover', result)}")
    plot(result)


def plot(result: dict[str, Any]) -> None:
    """Gap in the call when a stage dies: a warm spare vs Ray's restart vs no fault (p50 bars,
    p95 ticks), per stage, against the spare's target."""
    plt = pyplot()
    if plt is None:
        return
    stages = list(result["gap_ms"])
    modes = ("no_fault", "spare", "restart")
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.27
    for j, mode in enumerate(modes):
        xs = [i + (j - 1) * width for i in range(len(stages))]
        rows = [result["gap_ms"][stage][mode] for stage in stages]
        ax.bar(xs, [r["p50"] for r in rows], width, label=mode.replace("_", " "))
        ax.plot(xs, [r["p95"] for r in rows], "k_", markersize=14)
    ax.plot([], [], "k_", markersize=10, label="p95")
    target = result["target_spare_gap_ms"]
    ax.axhline(target, color="grey", linestyle=":", label=f"spare target ({target:g} ms)")
    ax.set_xticks(range(len(stages)), [s.upper() for s in stages])
    ax.set_yscale("log")
    ax.set_ylabel("gap, ms (log)")
    ax.set_title("A stage process killed mid-call: time until it answers again")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "stage_failover.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
