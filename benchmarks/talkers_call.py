"""One talking call's timeline, and what every caller subprocess of `benchmarks.talkers`
shares: the websocket callers, the LiveKit callers and the in-process baseline all stream the
same phrases on the same schedule and report their turns the same way, so their numbers compare.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RATE = 16000
FRAME_S = 0.02
FRAME_BYTES = int(RATE * FRAME_S) * 2
SILENCE = bytes(FRAME_BYTES)
PHRASES = ["hello world", "what time is it", "open the door"]
STAGES = ["end_of_turn_delay_ms", "stt_final_ms", "agent_ms", "tts_first_audio_ms", "response_ms"]
VOICE_PEAK = 200  # a frame with a sample above this is speech (Opus leaves silence near 0)


# -- one call's timeline, shared by the websocket callers and the in-process baseline ---------
class Call:
    def __init__(
        self, index: int, pcm: list[bytes], turns: int, interval_s: float, deadline_s: float
    ) -> None:
        rng = random.Random(1000 + index)
        self.index = index
        self.pcm = pcm
        self.deadline_s = deadline_s
        offset = rng.uniform(0, interval_s)
        self.turns = [
            {
                "phrase": (index + k) % len(pcm),
                "at": offset + k * interval_s,
                "mark": None,
                "first_audio": None,
                "last_voiced": None,
                "queued_ms": None,
            }
            for k in range(turns)
        ]
        last = self.turns[-1]
        self.length_s = last["at"] + len(pcm[last["phrase"]]) / 2 / RATE + deadline_s + 0.3
        self.current: dict[str, Any] | None = None
        self.metrics: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []

    async def talk(self, send: Any, t0: float, queued: Any = None, on_phrase: Any = None) -> None:
        """Stream from `t0`: silence, and each turn's phrase when its time comes. The end of a
        phrase (`mark`) is when its last frame was handed to `send`; `queued()`, if given, says
        how many seconds of audio the sender still holds then (a LiveKit `AudioSource`);
        `on_phrase()`, if given, is called as each phrase starts."""
        k, speech, pos = 0, b"", 0
        for j in range(int(self.length_s / FRAME_S)):
            at = t0 + j * FRAME_S
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            if not speech and k < len(self.turns) and j * FRAME_S >= self.turns[k]["at"]:
                self.current = self.turns[k]
                speech, pos, k = self.pcm[self.turns[k]["phrase"]], 0, k + 1
                if on_phrase is not None:
                    self.current["cleared_ms"] = on_phrase()
            if speech:
                frame = speech[pos : pos + FRAME_BYTES].ljust(FRAME_BYTES, b"\0")
                pos += FRAME_BYTES
            else:
                frame = SILENCE
            await send(frame)
            if speech:
                assert self.current is not None
                if voiced(frame):
                    self.current["last_voiced"] = time.monotonic()
                if pos >= len(speech):
                    self.current["mark"] = time.monotonic()
                    if queued is not None:
                        self.current["queued_ms"] = round(queued() * 1000, 1)
                    speech = b""

    def on_audio(self, now: float) -> None:
        t = self.current
        mark = None if t is None else t["mark"]
        if t is not None and mark is not None and t["first_audio"] is None and now >= mark:
            t["first_audio"] = now

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "metrics":
            self.metrics.append({k: v for k, v in event.items() if k in STAGES})
        elif event.get("type") == "error":
            self.errors.append(event)

    def results(self) -> list[dict[str, Any]]:
        out = []
        for k, t in enumerate(self.turns):
            v2v = None
            if t["mark"] is not None and t["first_audio"] is not None:
                v2v = (t["first_audio"] - t["mark"]) * 1000
            lost = v2v is None or v2v > self.deadline_s * 1000
            out.append(
                {
                    "call": self.index,
                    "turn": k,
                    "v2v_ms": None if lost else round(v2v, 1),
                    "late_ms": round(v2v, 1) if lost and v2v is not None else None,
                    "sent": t["mark"] is not None,
                    # monotonic seconds (one clock for every process here), to line turns up
                    # with the server's own marks
                    "t": {k: t[k] for k in ("mark", "last_voiced", "first_audio")},
                    "queued_ms": t["queued_ms"],
                    "cleared_ms": t.get("cleared_ms"),
                }
            )
        return out


def voiced(pcm: bytes) -> bool:
    """A frame of speech, not the silence a LiveKit track carries between replies."""
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
    return bool(samples.size) and int(np.abs(samples).max()) > VOICE_PEAK


async def phrases_pcm() -> list[bytes]:
    from tests.conftest import speak

    return [await speak(p, RATE) for p in PHRASES]


async def wait_go() -> float:
    """Tell the driver we are ready; returns the shared start time it answers (monotonic)."""
    print("READY", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return float(line.split()[1])


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def report(spec: dict[str, Any], calls: list[Call], cpu_s: float) -> None:
    out = {
        "turns": [t for c in calls for t in c.results()],
        "metrics": [m for c in calls for m in c.metrics],
        "errors": [e for c in calls for e in c.errors][:20],
        "cpu_s": round(cpu_s, 2),
    }
    Path(spec["out"]).write_text(json.dumps(out))
