"""What the `openai_realtime` client itself costs, against the loopback Realtime server.

    python -m benchmarks.openai_realtime [--sends 500] [--reconnects 5]

- Streaming: one 100 ms batch of user audio (pcm16 24 kHz) as `input_audio_buffer.append`:
  base64 + JSON alone (the baseline), and the whole `send_audio` through the SDK's websocket.
- Reconnect: from the connection dropping (no close frame) to the new session configured and
  carrying the conversation, by history length; the same path renews a session before the
  service's 60-minute limit.

The server runs in this process (its VAD sees the audio too), so the send figure is an upper
bound. Writes benchmarks/results/openai_realtime.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.common import pyplot
from providers.base import S2sOptions
from providers.openai.realtime import OpenAIRealtimeS2S, OpenAIRealtimeSession
from providers.retry import RetryPolicy
from tests.fakes.openai_api import VALID_KEY, running_fake_openai

RESULTS = Path(__file__).parent / "results"
BATCH = bytes(4800)  # 100 ms of silence at 24 kHz


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def streaming(session: OpenAIRealtimeSession, n: int) -> dict[str, float]:
    for _ in range(50):  # warm up
        await session.send_audio(BATCH)
    t0 = time.perf_counter()
    for _ in range(n):
        json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(BATCH).decode()})
    encode_us = (time.perf_counter() - t0) / n * 1e6
    sends: list[float] = []
    for _ in range(n):
        t = time.perf_counter()
        await session.send_audio(BATCH)
        sends.append((time.perf_counter() - t) * 1e6)
    return {
        "encode_us": round(encode_us, 1),
        "send_p50_us": round(statistics.median(sends), 1),
        "send_p95_us": round(pct(sends, 0.95), 1),
    }


async def reconnects(fake: Any, session: OpenAIRealtimeSession, items: int, n: int) -> list[float]:
    turn = [("user", "what time is it please"), ("assistant", "It is ten past nine.")]
    times: list[float] = []
    for _ in range(n):
        session._carried = turn * (items // 2)  # the conversation to carry over
        before = session.connections
        t0 = time.perf_counter()
        await fake.realtime.drop()
        while session.connections == before:
            await asyncio.sleep(0.001)
        times.append((time.perf_counter() - t0) * 1000)
    return times


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sends", type=int, default=500)
    ap.add_argument("--reconnects", type=int, default=5)
    args = ap.parse_args()
    async with running_fake_openai() as fake:
        s2s = OpenAIRealtimeS2S(api_key=VALID_KEY, base_url=fake.base_url)
        retry = RetryPolicy(timeout_s=10, max_retries=3, retry_delay_s=0.1)
        session = await s2s.connect(S2sOptions(retry=retry))
        assert isinstance(session, OpenAIRealtimeSession)
        drain = asyncio.create_task(_drain(session))
        report: dict[str, Any] = {"streaming_100ms_batch": await streaming(session, args.sends)}
        print("100 ms batch:", report["streaming_100ms_batch"])
        report["reconnect_ms"] = {}
        for items in (0, 20, 200):
            times = await reconnects(fake, session, items, args.reconnects)
            row = {
                "median": round(statistics.median(times), 1),
                "max": round(max(times), 1),
                "retry_delay_s": retry.retry_delay_s,
            }
            report["reconnect_ms"][str(items)] = row
            print(f"reconnect carrying {items:>3} items: {row} (includes the first retry delay)")
        drain.cancel()
        await session.aclose()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "openai_realtime.json").write_text(json.dumps(report, indent=2))
    plot(report)


def plot(report: dict[str, Any]) -> None:
    """Reconnect time (median and max) by how many conversation items the new session carries."""
    plt = pyplot()
    if plt is None:
        return
    rows = report["reconnect_ms"]
    items = list(rows)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(items, [rows[i]["median"] for i in items], label="median")
    ax.plot(items, [rows[i]["max"] for i in items], "k_", markersize=24, label="max")
    delay = next(iter(rows.values()))["retry_delay_s"] * 1000
    ax.axhline(delay, color="grey", linestyle=":", label=f"first retry delay ({delay:g} ms)")
    batch = report["streaming_100ms_batch"]
    ax.set_xlabel("conversation items carried to the new session")
    ax.set_ylabel("ms")
    ax.set_title(
        "OpenAI Realtime (loopback fake): reconnect time\n"
        f"100 ms audio batch: encode {batch['encode_us']} µs, send p50 {batch['send_p50_us']} µs",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "openai_realtime.png", dpi=120)
    plt.close(fig)


async def _drain(session: OpenAIRealtimeSession) -> None:
    async for _ in session.events():
        pass


if __name__ == "__main__":
    asyncio.run(main())
