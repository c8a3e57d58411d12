"""Voice-to-voice latency over WebRTC vs the websocket, in the same run, on the same backend.

    .venv/bin/python benchmarks/webrtc_vs_websocket.py [--turns 10] [--out benchmarks/results]

One session per transport; turns alternate between them ("hello world" by espeak-ng, played in
real time, then silence). For each turn:

- client voice-to-voice: from the moment the last sample of the user's speech left the client to
  the moment the first audible reply sample would be heard. WebRTC: arrival of the first loud
  20 ms frame on the reply track (Opus, paced in real time). Websocket: arrival of the first reply
  bytes plus the quiet lead-in before the first loud 20 ms of them (a websocket client plays from
  the first byte).
- server voice-to-voice: the session's own `metrics.voice_to_voice_ms` (end of speech → first
  reply audio queued), for reference: same pipeline, so it should not depend on the transport.

Prints a table (p50/p95) and writes JSON to benchmarks/results/webrtc_vs_websocket.json. Media
stays on loopback (ICE host candidates 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import pyplot

LOOPBACK = ["127.0.0.1"]
LOUD_RMS = 300.0
RATE = 16000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(values, q)), 1)


def first_loud_offset_s(pcm: bytes, rate: int) -> float | None:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    frame = int(rate * 0.02)
    for i in range(0, samples.size - frame + 1, frame):
        if np.sqrt(np.mean(samples[i : i + frame] ** 2)) > LOUD_RMS:
            return i / rate
    return None


async def speech() -> bytes:
    import soxr

    from providers.espeak.tts import EspeakTTS

    tts = EspeakTTS()
    pcm = b"".join([c async for c in tts.synthesize("hello world")])
    samples = np.frombuffer(pcm, dtype="<i2")
    return soxr.resample(samples, tts.capabilities.sample_rate_hz, RATE).astype("<i2").tobytes()


async def websocket_turn(client: Any, session: dict[str, Any], pcm: bytes) -> dict[str, Any]:
    result = await client.talk(session, pcm, RATE, realtime=True, trailing_silence_s=2.5)
    offset = first_loud_offset_s(bytes(result.audio), RATE)
    v2v = None
    if result.first_audio_at and result.speech_sent_at and offset is not None:
        v2v = (result.first_audio_at + offset - result.speech_sent_at) * 1000
    return turn_record(result, v2v)


async def webrtc_turn(call: Any, pcm: bytes) -> dict[str, Any]:
    result = await call.talk(pcm, RATE, timeout_s=60)
    v2v = None
    if result.first_audio_at and result.speech_sent_at:
        v2v = (result.first_audio_at - result.speech_sent_at) * 1000
    return turn_record(result, v2v)


def turn_record(result: Any, client_v2v_ms: float | None) -> dict[str, Any]:
    metrics = result.metrics[0] if result.metrics else {}
    return {
        "heard": " | ".join(result.transcripts),
        "client_voice_to_voice_ms": round(client_v2v_ms, 1) if client_v2v_ms else None,
        "server_voice_to_voice_ms": metrics.get("voice_to_voice_ms"),
        "server_response_ms": metrics.get("response_ms"),
    }


def summary(turns: list[dict[str, Any]]) -> dict[str, Any]:
    client = [t["client_voice_to_voice_ms"] for t in turns if t["client_voice_to_voice_ms"]]
    server = [t["server_voice_to_voice_ms"] for t in turns if t["server_voice_to_voice_ms"]]
    return {
        "turns": len(turns),
        "turns_measured": len(client),
        "client_v2v_p50_ms": pct(client, 50),
        "client_v2v_p95_ms": pct(client, 95),
        "client_v2v_mean_ms": round(statistics.fmean(client), 1) if client else None,
        "server_v2v_p50_ms": pct(server, 50),
        "server_v2v_p95_ms": pct(server, 95),
    }


async def run(turns: int, out_dir: Path) -> dict[str, Any]:
    os.environ.setdefault("VOICE_RAY_DASHBOARD", "0")
    from backend import new_backend
    from backend.http_client import HttpClient
    from backend.iface import Config
    from backend.webrtc_client import WebRtcCall

    port = free_port()
    cfg = Config(provider_config={"ice_host_addresses": LOOPBACK}, max_concurrent_sessions=10)
    started = time.monotonic()
    be = await new_backend("local", cfg, port=port)
    print(f"backend up in {time.monotonic() - started:.1f} s on port {port}")
    pcm = await speech()
    rows: dict[str, list[dict[str, Any]]] = {"webrtc": [], "websocket": []}
    try:
        async with HttpClient(f"http://127.0.0.1:{port}") as client:
            ws_session = await client.create_session(user_id="bench-ws", sample_rate_hz=RATE)
            rtc_session = await client.create_session(
                user_id="bench-rtc", transport="webrtc", sample_rate_hz=48000
            )
            call = WebRtcCall(rtc_session, host_addresses=LOOPBACK)
            await call.connect()
            await call.wait_connected()
            await asyncio.sleep(1.0)  # let the first state events and comfort noise settle
            for i in range(turns):
                rows["webrtc"].append(await webrtc_turn(call, pcm))
                rows["websocket"].append(await websocket_turn(client, ws_session, pcm))
                w, s = rows["webrtc"][-1], rows["websocket"][-1]
                print(
                    f"turn {i + 1:2d}: webrtc {w['client_voice_to_voice_ms']} ms, "
                    f"websocket {s['client_voice_to_voice_ms']} ms"
                )
            await call.aclose()
            await client.close_session(ws_session["session_id"])
    finally:
        await be.stop()
    report = {
        "benchmark": "webrtc_vs_websocket",
        "at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "phrase": "hello world (espeak-ng), real time, then silence",
        "summary": {k: summary(v) for k, v in rows.items()},
        "turns": rows,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "webrtc_vs_websocket.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, out_dir)
    return report


def plot(report: dict[str, Any], out_dir: Path) -> None:
    """Every turn's voice-to-voice latency per transport, at the client and at the server."""
    plt = pyplot()
    if plt is None:
        return
    transports = list(report["turns"])
    fig, ax = plt.subplots(figsize=(7, 4))
    for offset, key, label in (
        (-0.18, "client_voice_to_voice_ms", "client"),
        (0.18, "server_voice_to_voice_ms", "server"),
    ):
        data = [
            [t[key] for t in report["turns"][name] if t.get(key) is not None] for name in transports
        ]
        box = ax.boxplot(
            data,
            positions=[i + offset for i in range(len(transports))],
            widths=0.3,
            patch_artist=True,
        )
        colour = "tab:blue" if label == "client" else "tab:orange"
        for patch in box["boxes"]:
            patch.set_facecolor(colour)
        ax.plot([], [], "s", color=colour, label=f"{label} voice-to-voice")
    ax.set_xticks(range(len(transports)), transports)
    ax.set_ylabel("ms")
    ax.set_title(f"WebRTC vs websocket: voice-to-voice per turn ({report['phrase']})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "webrtc_vs_websocket.png", dpi=120)
    plt.close(fig)


def print_table(report: dict[str, Any]) -> None:
    head = f"{'transport':<10} {'turns':>5} {'client v2v p50':>15} {'p95':>8} "
    head += f"{'server v2v p50':>15} {'p95':>8}"
    print(head)
    for name, s in report["summary"].items():
        print(
            f"{name:<10} {s['turns_measured']:>5} {s['client_v2v_p50_ms']!s:>15} "
            f"{s['client_v2v_p95_ms']!s:>8} {s['server_v2v_p50_ms']!s:>15} "
            f"{s['server_v2v_p95_ms']!s:>8}"
        )
    print("(ms; client: end of the user's speech → first audible reply at the client)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    report = asyncio.run(run(args.turns, args.out))
    print_table(report)


if __name__ == "__main__":
    main()
