"""Talking density: N concurrent calls, each speaking a turn every few seconds, through the
hosted-provider path, and what the runtime costs on top of the pipeline itself.

    python -m benchmarks.talkers                           # 1, 10, 25, 50, 100 calls
    python -m benchmarks.talkers --talkers 1,10,25 --turns-per-call 5
    python -m benchmarks.talkers --quick                   # 1 and 3 calls, 3 turns each
    python -m benchmarks.talkers --via serve               # force the Serve-port websocket
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
            }
            for k in range(turns)
        ]
        last = self.turns[-1]
        self.length_s = last["at"] + len(pcm[last["phrase"]]) / 2 / RATE + deadline_s + 0.3
        self.current: dict[str, Any] | None = None
        self.metrics: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []

    async def talk(self, send: Any, t0: float) -> None:
        """Stream from `t0`: silence, and each turn's phrase when its time comes."""
        k, speech, pos = 0, b"", 0
        for j in range(int(self.length_s / FRAME_S)):
            at = t0 + j * FRAME_S
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            if not speech and k < len(self.turns) and j * FRAME_S >= self.turns[k]["at"]:
                self.current = self.turns[k]
                speech, pos, k = self.pcm[self.turns[k]["phrase"]], 0, k + 1
            if speech:
                frame = speech[pos : pos + FRAME_BYTES].ljust(FRAME_BYTES, b"\0")
                pos += FRAME_BYTES
            else:
                frame = SILENCE
            await send(frame)
            if speech and pos >= len(speech):
                assert self.current is not None
                self.current["mark"] = time.monotonic()
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
                }
            )
        return out


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
) -> dict[str, Any]:
    sessions, create_s = await create_sessions(base, n, args.via)
    per = args.calls_per_process
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
    try:
        reports, (ray_cpu, fake_cpu), wall = await run_children(
            "callers", specs, tmp, (ray_meter, fake_meter)
        )
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
        "wall_s": round(wall, 1),
        "create_s": round(create_s, 1),
        "caller_processes": len(groups),
        "waterfall_p50_ms": live["waterfall_p50_ms"],
        "baseline_waterfall_p50_ms": baseline["waterfall_p50_ms"],
        "errors": live["errors"] + baseline["errors"],
        "samples_v2v_ms": live["v2v"],
        "baseline_samples_v2v_ms": baseline["v2v"],
    }


def child_pids() -> set[int]:
    """This driver's own subprocesses (fake, callers, baseline) now alive: not Ray's."""
    out = set()
    for p in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if "benchmarks.talkers" in " ".join(p.cmdline()):
                out.add(p.pid)
    return out


def targets(by: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def check(n: str, f: Any) -> bool | None:
        e = by.get(n)
        return None if e is None else bool(f(e))

    def ok(x: Any, bound: float) -> bool:
        return x is not None and x <= bound

    return {
        "overhead_1_call_p50_le_15ms": check("1", lambda e: ok(e["overhead_ms"]["p50"], 15)),
        "overhead_1_call_p95_le_15ms": check("1", lambda e: ok(e["overhead_ms"]["p95"], 15)),
        "overhead_50_calls_p95_le_50ms": check("50", lambda e: ok(e["overhead_ms"]["p95"], 50)),
        "turns_lost_50_calls_is_0": check("50", lambda e: e["turns_lost"] == 0),
    }


async def main(args: argparse.Namespace) -> None:
    from benchmarks.common import local_backend, wait_pool
    from tests.fakes.cartesia import VALID_KEY

    levels = [int(x) for x in args.talkers.split(",")]
    if args.quick:
        levels, args.turns_per_call, args.baseline_turns, args.min_turns = [1, 3], 3, 3, 3
    slots = max(levels) + 4
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
            "settings": {**vars(args), "talkers": levels, "phrases": PHRASES, "config": config},
            "machine": machine(),
        }
        with local_backend(slots, max_concurrent_sessions=slots, **config) as (_, base):
            wait_pool(base, 2)  # Config.warm_pool_size: the node at rest
            idle = CpuMeter(lambda: ray_processes_except(child_pids())).start()
            await asyncio.sleep(5)
            report["ray_idle_cores_busy"] = idle.stop()["cores_busy"]
            by: dict[str, Any] = {}
            report["by_talkers"] = by
            for n in levels:
                idle = report["ray_idle_cores_busy"]
                by[str(n)] = await level(n, args, base, config, fake, tmp, idle)
                print_row(n, by[str(n)])
                report["machine_after"] = machine()
                write(args.out, {**report, "targets": targets(by)})
        report["targets"] = targets(by)
    finally:
        await fake.stop()
    path = write(args.out, report)
    plot(report, args.out)
    print(f"\ntargets: {report['targets']}\nwrote {path} (logs in {tmp})")


def print_row(n: int, e: dict[str, Any]) -> None:
    v, b, o = e["v2v_ms"], e["baseline_v2v_ms"], e["overhead_ms"]
    print(
        f"N={n:<3} v2v p50 {v['p50']} p95 {v['p95']} ms (n={v['n']}) | in-process p50 {b['p50']} "
        f"p95 {b['p95']} | overhead p50 {o['p50']} p95 {o['p95']} | Ray {e['cpu_pct_per_call']} "
        f"% core/call ({e['ray_cores_busy']} cores) | fake {e['fake_cpu_pct']} % | lost "
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
    by = r["by_talkers"]
    ns = [int(n) for n in by]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for q, style in (("p50", "o-"), ("p95", "s--")):
        a1.plot(ns, [by[str(n)]["v2v_ms"][q] for n in ns], style, label=f"v2v {q}")
        a1.plot(ns, [by[str(n)]["baseline_v2v_ms"][q] for n in ns], style, label=f"in-process {q}")
        a1.plot(ns, [by[str(n)]["overhead_ms"][q] for n in ns], style, label=f"overhead {q}")
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
    ap.add_argument("--quick", action="store_true", help="1 and 3 calls, 3 turns each")
    ap.add_argument("--out", default=None, help="results name (default talkers[_quick])")
    ap.add_argument("--note", default=None)
    ap.add_argument("--role", choices=["driver", "fake", "callers", "baseline"], default="driver")
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
    asyncio.run(main(args))


if __name__ == "__main__":
    entry()
