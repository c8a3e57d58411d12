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
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from benchmarks.common import (
    RESULTS,
    CpuMeter,
    machine,
    pct,
    process_tree,
    ray_processes_except,
    write,
)

RATE = 16000
FRAME_S = 0.02
FRAME_BYTES = int(RATE * FRAME_S) * 2
SILENCE = bytes(FRAME_BYTES)
PHRASES = ["hello world", "what time is it", "open the door"]
STAGES = ["end_of_turn_delay_ms", "stt_final_ms", "agent_ms", "tts_first_audio_ms", "response_ms"]
ROOT = Path(__file__).resolve().parent.parent
VOICE_PEAK = 200  # a frame with a sample above this is speech (Opus leaves silence near 0)
LK_CALLS_PER_PROCESS = 5  # rtc participants per caller process (each has the SDK's threads)
# As tests/e2e/livekit_participant.py: a caller stands in for a user on another machine, so it
# yields the CPU as much as the Ray workers (niceness 15) it calls.
CALLER_NICENESS = 15
RESYNC_S = 0.06  # a LiveKit caller holding more silence than this drops it as a phrase starts


# -- the fake provider, in its own process ---------------------------------------------------
async def serve_fake(kind: str, real_stt: bool) -> None:
    """Run the loopback Cartesia server until stdin closes; prints its URL first."""
    from tests.fakes.cartesia import FakeCartesia
    from tests.fakes.loopback import serving

    cache: dict[tuple[str, int], bytes] = {}

    class CheapCartesia(FakeCartesia):
        """The fake with a canned recogniser and cached speech: a provider that costs ~0."""

        async def _recognise(self, pcm: bytes, rate: int) -> str:
            if real_stt:
                return await super()._recognise(pcm, rate)
            samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
            voiced = samples.size and float(np.sqrt(np.mean(samples**2))) > 100
            return PHRASES[0] if voiced else ""

        async def _speech(self, text: str, rate: int) -> bytes:
            if (text, rate) not in cache:
                cache[(text, rate)] = await super()._speech(text, rate)
            return cache[(text, rate)]

    if kind != "cartesia":
        raise SystemExit(f"unknown fake {kind!r}")
    fake = CheapCartesia()
    async with serving(fake.app) as url:
        print(url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


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


# -- callers over the websocket (a subprocess) -----------------------------------------------
async def run_callers(spec: dict[str, Any]) -> None:
    import websockets

    pcm = await phrases_pcm()
    calls = [
        Call(c["index"], pcm, spec["turns"], spec["interval_s"], spec["deadline_s"])
        for c in spec["calls"]
    ]
    sockets = await asyncio.gather(
        *(
            websockets.connect(c["url"], max_size=None, open_timeout=60, ping_interval=None)
            for c in spec["calls"]
        )
    )

    async def receive(call: Call, ws: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for msg in ws:
                if isinstance(msg, bytes):
                    call.on_audio(time.monotonic())
                else:
                    call.on_event(json.loads(msg))

    async def one(call: Call, ws: Any, t0: float) -> None:
        receiver = asyncio.create_task(receive(call, ws))
        try:
            await call.talk(ws.send, t0)
        except websockets.ConnectionClosed as exc:
            call.errors.append({"type": "closed", "reason": str(exc)})
        finally:
            await ws.close()
            await receiver

    t0 = await wait_go()
    cpu0 = own_cpu_s()
    await asyncio.gather(*(one(c, ws, t0) for c, ws in zip(calls, sockets, strict=True)))
    report(spec, calls, own_cpu_s() - cpu0)


# -- callers as LiveKit participants (a subprocess) -------------------------------------------
class LiveKitCaller:
    """One call as a LiveKit rtc participant: publishes its microphone (the `Call`'s frames,
    handed to an `AudioSource` at real time), listens to the agent's track and takes its data
    events (`voice.events`). The agent's track carries silence between replies: only frames
    with speech count as reply audio."""

    def __init__(self, call: Call) -> None:
        from livekit import rtc

        self.rtc = rtc
        self.call = call
        self.room = rtc.Room()
        self.source = rtc.AudioSource(RATE, 1, queue_size_ms=500)
        self.agent_track = asyncio.Event()
        self.agent_listens = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def join(self, url: str, token: str, timeout_s: float) -> LiveKitCaller:
        rtc, room = self.rtc, self.room
        room.on("track_subscribed", self._on_track)
        room.on("data_received", self._on_data)
        room.on("local_track_subscribed", lambda _track: self.agent_listens.set())
        await room.connect(url, token)
        track = rtc.LocalAudioTrack.create_audio_track("mic", self.source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await room.local_participant.publish_track(track, options)
        await asyncio.wait_for(self.agent_track.wait(), timeout_s)
        await asyncio.wait_for(self.agent_listens.wait(), timeout_s)
        return self

    def _on_track(self, track: Any, _publication: Any, participant: Any) -> None:
        if track.kind == self.rtc.TrackKind.KIND_AUDIO and participant.identity.startswith(
            "agent-"
        ):
            self.tasks.append(asyncio.create_task(self._listen(track)))
            self.agent_track.set()

    def _on_data(self, packet: Any) -> None:
        if packet.topic == "voice.events":
            self.call.on_event(json.loads(packet.data))

    async def _listen(self, track: Any) -> None:
        stream = self.rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
        async for event in stream:
            if voiced(bytes(event.frame.data)):
                self.call.on_audio(time.monotonic())

    async def send(self, frame: bytes) -> None:
        n = len(frame) // 2
        await self.source.capture_frame(self.rtc.AudioFrame(frame, RATE, 1, n))

    def resync(self) -> float | None:
        """As a phrase starts: drop the silence the source still holds. The caller hands frames
        on a schedule and catches up after a stall (a niced process on a busy machine), and the
        source plays the burst out at real time, so a stall would stay as a lasting lag — which a
        microphone, produced and drained at real time, never has. Returns the ms dropped."""
        held = self.source.queued_duration
        if held <= RESYNC_S:
            return None
        self.source.clear_queue()
        return round(held * 1000, 1)

    async def talk(self, t0: float) -> None:
        try:
            await self.call.talk(
                self.send, t0, queued=lambda: self.source.queued_duration, on_phrase=self.resync
            )
        except Exception as exc:
            self.call.errors.append({"type": "caller", "reason": repr(exc)})
        finally:
            await asyncio.sleep(0.3)  # the last data events
            with contextlib.suppress(Exception):
                await self.room.disconnect()  # leaving on purpose: the session ends
            for task in self.tasks:
                task.cancel()


async def run_livekit_callers(spec: dict[str, Any]) -> None:
    os.nice(max(0, CALLER_NICENESS - os.nice(0)))
    pcm = await phrases_pcm()
    calls = [
        Call(c["index"], pcm, spec["turns"], spec["interval_s"], spec["deadline_s"])
        for c in spec["calls"]
    ]
    peers = await asyncio.gather(
        *(
            LiveKitCaller(call).join(c["url"], c["token"], 60)
            for call, c in zip(calls, spec["calls"], strict=True)
        )
    )
    t0 = await wait_go()
    cpu0 = own_cpu_s()
    await asyncio.gather(*(p.talk(t0) for p in peers))
    report(spec, calls, own_cpu_s() - cpu0)


def report(spec: dict[str, Any], calls: list[Call], cpu_s: float) -> None:
    out = {
        "turns": [t for c in calls for t in c.results()],
        "metrics": [m for c in calls for m in c.metrics],
        "errors": [e for c in calls for e in c.errors][:20],
        "cpu_s": round(cpu_s, 2),
    }
    Path(spec["out"]).write_text(json.dumps(out))


# -- the same call in one process, no Ray (a subprocess) -------------------------------------
async def run_baseline(spec: dict[str, Any]) -> None:
    from actors.session_actor import settings_from
    from backend.iface import Config
    from pipelines.session import SessionRuntime
    from providers.agents import build_agent
    from providers.messages import AudioChunk
    from providers.registry import STT_PROVIDERS, TTS_PROVIDERS, VAD_PROVIDERS

    config = Config(**spec["config"])
    options = config.stage_provider_config["cartesia"]
    stt = STT_PROVIDERS.create("cartesia", **options)
    tts = TTS_PROVIDERS.create("cartesia", **options)
    await stt.connect()
    await tts.connect()
    rt = SessionRuntime(
        session_id="baseline",
        user_id="bench",
        input_sample_rate_hz=RATE,
        settings=settings_from(config, RATE),
        vad=VAD_PROVIDERS.create(config.vad_provider),
        stt=stt,
        tts=tts,
        agent=build_agent(spec={"type": "echo"}),
    )
    pcm = await phrases_pcm()
    call = Call(0, pcm, spec["turns"], spec["interval_s"], spec["deadline_s"])

    async def push(frame: bytes) -> None:
        rt.push_audio([frame])

    async def receive() -> None:
        while True:
            polled = await rt.outbox.poll(timeout_s=1.0)
            now = time.monotonic()
            for item in polled["items"]:
                if isinstance(item, AudioChunk):
                    call.on_audio(now)
                else:
                    call.on_event(item.to_wire())

    t0 = await wait_go()
    cpu0 = own_cpu_s()
    receiver = asyncio.create_task(receive())
    await call.talk(push, t0)
    receiver.cancel()
    cpu = own_cpu_s() - cpu0
    with contextlib.suppress(Exception):
        await rt.aclose()
    report(spec, [call], cpu)


# -- the driver ------------------------------------------------------------------------------
class Child:
    """A subprocess of this benchmark speaking the READY / GO protocol."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc, self.log = proc, log

    @classmethod
    async def start(cls, role: str, *args: str, log: Path) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.talkers",
            "--role",
            role,
            *args,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log.open("ab"),
        )
        return cls(proc, log)

    async def line(self, timeout_s: float = 300) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        if not raw:
            raise RuntimeError(f"{self.log.name} ended: {self.log.read_text()[-2000:]}")
        return raw.decode().strip()

    def go(self, t0: float) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"GO {t0}\n".encode())

    async def wait(self, timeout_s: float) -> None:
        if await asyncio.wait_for(self.proc.wait(), timeout_s) != 0:
            raise RuntimeError(f"{self.log.name} failed: {self.log.read_text()[-2000:]}")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 10)
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()


async def run_children(
    role: str, specs: list[dict[str, Any]], tmp: Path, meters: tuple[CpuMeter, ...] = ()
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """Start one child per spec, wait until all are ready, start them at once; returns their
    reports, the meters' readings from the start to the last child's end, and the wall time
    from the start."""
    children: list[Child] = []
    try:
        for i, spec in enumerate(specs):
            spec["out"] = str(tmp / f"{role}-{i}.json")
            (tmp / f"{role}-{i}.spec.json").write_text(json.dumps(spec))
            children.append(
                await Child.start(
                    role, "--spec", str(tmp / f"{role}-{i}.spec.json"), log=tmp / f"{role}-{i}.log"
                )
            )
        for child in children:
            if (line := await child.line()) != "READY":
                raise RuntimeError(f"{role}: unexpected {line!r}")
        for meter in meters:
            meter.start()
        t0 = time.monotonic() + 0.5
        for child in children:
            child.go(t0)
        longest = max(s["turns"] * s["interval_s"] + s["interval_s"] + 30 for s in specs)
        for child in children:
            await child.wait(longest + 120)
        wall = time.monotonic() - t0
        readings = [meter.stop() for meter in meters]
        return [json.loads(Path(s["out"]).read_text()) for s in specs], readings, wall
    finally:
        for child in children:
            await child.stop()


async def create_sessions(base: str, n: int, via: str) -> tuple[list[dict[str, Any]], float]:
    from backend.http_client import HttpClient

    gate = asyncio.Semaphore(4)
    ws_base = base.replace("http://", "ws://", 1)
    started = time.monotonic()

    async def one(i: int, client: HttpClient) -> dict[str, Any]:
        async with gate:
            s = await client.create_session(user_id=f"talker-{i}")
        media = s["media"]
        if via == "livekit":  # the room's server URL and the user's join token
            return {"index": i, "session_id": s["session_id"], **media}
        url = media["url"] if via == "media" else f"{ws_base}/v1/sessions/{s['session_id']}/audio"
        return {"index": i, "session_id": s["session_id"], "url": f"{url}?token={media['token']}"}

    async with HttpClient(base, timeout_s=300) as client:
        sessions = await asyncio.gather(*(one(i, client) for i in range(n)))
    return list(sessions), time.monotonic() - started


async def close_sessions(base: str, sessions: list[dict[str, Any]]) -> None:
    from backend.http_client import HttpClient

    gate = asyncio.Semaphore(8)

    async def one(client: HttpClient, sid: str) -> None:
        async with gate:
            with contextlib.suppress(Exception):
                await client.close_session(sid)

    async with HttpClient(base, timeout_s=120) as client:
        await asyncio.gather(*(one(client, s["session_id"]) for s in sessions))


def quantiles(values: list[float]) -> dict[str, Any]:
    return {
        "p50": round(pct(values, 50), 1) if values else None,
        "p95": round(pct(values, 95), 1) if values else None,
        "n": len(values),
    }


def turn_figures(reports: list[dict[str, Any]]) -> dict[str, Any]:
    turns = [t for r in reports for t in r["turns"]]
    metrics = [m for r in reports for m in r["metrics"]]
    v2v = [t["v2v_ms"] for t in turns if t["v2v_ms"] is not None]
    return {
        "v2v": v2v,
        "turns": len(turns),
        "lost": sum(t["v2v_ms"] is None for t in turns),
        "waterfall_p50_ms": {
            s: round(pct(xs, 50), 1) if (xs := [m[s] for m in metrics if m.get(s)]) else None
            for s in STAGES
        },
        "errors": [e for r in reports for e in r["errors"]][:5],
        "cpu_s": sum(r["cpu_s"] for r in reports),
    }


async def level(
    n: int,
    args: argparse.Namespace,
    base: str,
    config: dict[str, Any],
    fake: Child,
    tmp: Path,
    idle: float,
    sfu: Any = None,
) -> dict[str, Any]:
    """One level: N calls over the websocket, or with `sfu` (a running livekit-server, the
    backend deployed with provider `livekit`) as rtc participants in its rooms."""
    sessions, create_s = await create_sessions(base, n, "livekit" if sfu else args.via)
    per = args.livekit_calls_per_process if sfu else args.calls_per_process
    groups = [sessions[i : i + per] for i in range(0, n, per)]
    turns = max(args.turns_per_call, -(-args.min_turns // n))
    common = {
        "turns": turns,
        "interval_s": args.interval,
        "deadline_s": args.deadline,
    }
    specs = [{**common, "calls": g} for g in groups]
    ray_meter = CpuMeter(lambda: ray_processes_except(child_pids()))
    fake_meter = CpuMeter(lambda: [psutil.Process(p) for p in process_tree([fake.proc.pid])])
    meters = [ray_meter, fake_meter]
    if sfu is not None:
        meters.append(CpuMeter(lambda: [psutil.Process(sfu.process.pid)]))
    try:
        reports, readings, wall = await run_children(
            "lk-callers" if sfu else "callers", specs, tmp, tuple(meters)
        )
        ray_cpu, fake_cpu = readings[0], readings[1]
    finally:
        await close_sessions(base, sessions)
    live = turn_figures(reports)
    base_reports, _, _ = await run_children(
        "baseline",
        [{**common, "turns": args.baseline_turns, "calls": [], "config": config}],
        tmp,
    )
    baseline = turn_figures(base_reports)
    v2v, b = quantiles(live["v2v"]), quantiles(baseline["v2v"])
    overhead = {
        q: round(v2v[q] - b[q], 1) if v2v[q] is not None and b[q] is not None else None
        for q in ("p50", "p95")
    }
    return {
        "v2v_ms": v2v,
        "baseline_v2v_ms": b,
        "overhead_ms": overhead,
        "cpu_pct_per_call": round(ray_cpu["cores_busy"] / n * 100, 2),
        # the same without what Ray costs at rest (measured before the first level)
        "cpu_pct_per_call_above_idle": round((ray_cpu["cores_busy"] - idle) / n * 100, 2),
        "turns_lost": live["lost"],
        "turns": live["turns"],
        "turns_per_call": turns,
        "baseline_turns_lost": baseline["lost"],
        "ray_cores_busy": ray_cpu["cores_busy"],
        "ray_cpu": ray_cpu,
        "fake_cpu_pct": round(fake_cpu["cores_busy"] * 100, 2),
        "callers_cpu_pct": round(live["cpu_s"] / ray_cpu["wall_s"] * 100, 2),
        **({"sfu_cpu_pct": round(readings[2]["cores_busy"] * 100, 2)} if sfu else {}),
        "wall_s": round(wall, 1),
        "create_s": round(create_s, 1),
        "caller_processes": len(groups),
        "waterfall_p50_ms": live["waterfall_p50_ms"],
        "baseline_waterfall_p50_ms": baseline["waterfall_p50_ms"],
        "errors": live["errors"] + baseline["errors"],
        "samples_v2v_ms": live["v2v"],
        "baseline_samples_v2v_ms": baseline["v2v"],
        "samples_turns": [t for r in reports for t in r["turns"]],
    }


NOT_RAY: set[int] = set()  # other processes of this driver's: livekit-server


def child_pids() -> set[int]:
    """This driver's own subprocesses (fake, callers, baseline, livekit-server) now alive: not
    Ray's."""
    out = set()
    for p in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if p.pid in NOT_RAY or "benchmarks.talkers" in " ".join(p.cmdline()):
                out.add(p.pid)
    return out


def livekit_minus_websocket(by: dict[str, Any], lk: dict[str, Any]) -> dict[str, Any]:
    """The LiveKit path's v2v minus the websocket path's at each N both ran (same run)."""
    out = {}
    for n in sorted(set(by) & set(lk), key=int):
        a, b = lk[n]["v2v_ms"], by[n]["v2v_ms"]
        out[n] = {
            q: round(a[q] - b[q], 1) if a[q] is not None and b[q] is not None else None
            for q in ("p50", "p95")
        }
    return out


def targets(by: dict[str, dict[str, Any]], lk: dict[str, dict[str, Any]] | None = None) -> dict:
    def check(n: str, f: Any, where: dict[str, Any] = by) -> bool | None:
        e = where.get(n)
        return None if e is None else bool(f(e))

    def ok(x: Any, bound: float) -> bool:
        return x is not None and x <= bound

    out = {
        "overhead_1_call_p50_le_15ms": check("1", lambda e: ok(e["overhead_ms"]["p50"], 15)),
        "overhead_1_call_p95_le_15ms": check("1", lambda e: ok(e["overhead_ms"]["p95"], 15)),
        "overhead_50_calls_p95_le_50ms": check("50", lambda e: ok(e["overhead_ms"]["p95"], 50)),
        "turns_lost_50_calls_is_0": check("50", lambda e: e["turns_lost"] == 0),
    }
    if lk is not None:
        diff = livekit_minus_websocket(by, lk).get("1", {}).get("p50")
        out["livekit_minus_websocket_1_call_p50_le_50ms"] = None if diff is None else diff <= 50
        out["livekit_turns_lost_25_calls_is_0"] = check(
            "25", lambda e: e["turns_lost"] == 0, where=lk
        )
    return out


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


async def livekit_levels(
    levels: list[int],
    args: argparse.Namespace,
    base: str,
    slots: int,
    config: dict[str, Any],
    fake: Child,
    tmp: Path,
    idle: float,
    out: dict[str, Any],
) -> None:
    """The same levels through LiveKit rooms: a real livekit-server on loopback, the backend
    redeployed (same Ray, same Serve port) with provider `livekit`, rtc callers."""
    import serve_app
    from backend.iface import Config
    from benchmarks.common import wait_pool
    from tests.e2e import livekit_server

    server = livekit_server.start(f"{base}/v1/livekit/webhook")
    NOT_RAY.add(server.process.pid)
    try:
        lk_config = {
            **config,
            "provider": "livekit",
            "provider_config": server.provider_config(),
            "max_concurrent_sessions": slots,
        }
        serve_app.deploy("livekit", Config(**lk_config), port=int(base.rsplit(":", 1)[1]))
        await asyncio.sleep(2)  # the ingress replaced
        wait_pool(base, 2)
        for n in levels:
            out[str(n)] = await level(n, args, base, config, fake, tmp, idle, sfu=server)
            print_row(n, out[str(n)], "livekit")
    finally:
        server.stop()
        NOT_RAY.discard(server.process.pid)


def print_row(n: int, e: dict[str, Any], path: str = "websocket") -> None:
    v, b, o = e["v2v_ms"], e["baseline_v2v_ms"], e["overhead_ms"]
    sfu = f" | livekit-server {e['sfu_cpu_pct']} %" if "sfu_cpu_pct" in e else ""
    print(
        f"{path:<9} N={n:<3} v2v p50 {v['p50']} p95 {v['p95']} ms (n={v['n']}) | in-process "
        f"p50 {b['p50']} p95 {b['p95']} | overhead p50 {o['p50']} p95 {o['p95']} | Ray "
        f"{e['cpu_pct_per_call']} % core/call ({e['ray_cores_busy']} cores) | fake "
        f"{e['fake_cpu_pct']} %{sfu} | lost "
        f"{e['turns_lost']}/{e['turns']}",
        flush=True,
    )


def plot(r: dict[str, Any], name: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    by = r["by_talkers"] or r.get("by_talkers_livekit") or {}
    ns = [int(n) for n in by]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for q, style in (("p50", "o-"), ("p95", "s--")):
        a1.plot(ns, [by[str(n)]["v2v_ms"][q] for n in ns], style, label=f"v2v {q}")
        a1.plot(ns, [by[str(n)]["baseline_v2v_ms"][q] for n in ns], style, label=f"in-process {q}")
        a1.plot(ns, [by[str(n)]["overhead_ms"][q] for n in ns], style, label=f"overhead {q}")
    lk = r.get("by_talkers_livekit") or {}
    if lk and lk is not by:
        lns = [int(n) for n in lk]
        for q, style in (("p50", "D-"), ("p95", "D--")):
            a1.plot(lns, [lk[str(n)]["v2v_ms"][q] for n in lns], style, label=f"LiveKit v2v {q}")
        a2.plot(
            lns,
            [lk[str(n)]["cpu_pct_per_call"] for n in lns],
            "D-",
            label="Ray CPU / call, LiveKit",
        )
    a1.set_xlabel("talking calls")
    a1.set_ylabel("ms")
    a1.set_title("Voice-to-voice (client) and runtime overhead")
    a1.legend(fontsize=7)
    a2.plot(ns, [by[str(n)]["cpu_pct_per_call"] for n in ns], "o-", label="Ray CPU / call")
    a2.plot(ns, [by[str(n)]["fake_cpu_pct"] for n in ns], "^:", label="fake provider (total)")
    a2.set_xlabel("talking calls")
    a2.set_ylabel("% of one core")
    lost = a2.twinx()
    lost.bar(ns, [by[str(n)]["turns_lost"] for n in ns], alpha=0.3, color="red", width=1.5)
    lost.set_ylabel("turns lost", color="red")
    a2.set_title("CPU per talking call, turns lost")
    a2.legend(fontsize=7, loc="upper left")
    if len(ns) > 2:
        for a in (a1, a2):
            a.set_xscale("log")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=120)


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
