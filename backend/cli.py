"""`voice-backend`: run the backend, place real voice calls through it, look at it.

voice-backend demo                     # start on local Ray, speak "hello world", print the turn
voice-backend demo --wav me.wav        # your own recording (16-bit PCM WAV)
voice-backend demo --keep-serving      # ... then keep serving so others can connect
voice-backend serve --port 8000 --max-sessions 100 [--config backend.yaml]
voice-backend call me.wav              # one call against a running backend (--url)
voice-backend sessions | health        # what a running backend is doing
voice-backend bench voice_latency      # run benchmarks/voice_latency.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import soxr
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from backend.cli_report import call_report, console, err_console, health_report, sessions_table
from backend.config_file import CLIENT_API_KEY_ENV, load_config
from backend.errors import BackendError
from backend.http_client import HttpClient
from backend.iface import Config
from backend.wav import read_wav, write_wav

DEFAULT_PHRASE = "hello world"
DEFAULT_URL = "http://127.0.0.1:8000"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voice-backend", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def server(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
        sp.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
        sp.add_argument("--provider", default=None, help="backend provider (default local)")
        sp.add_argument(
            "--max-sessions", type=int, default=None, help="max concurrent sessions, 0 = no cap"
        )
        sp.add_argument("--config", type=Path, help="backend Config from a .yaml or .toml file")
        for stage in ("stt", "tts", "s2s"):
            sp.add_argument(
                f"--{stage}-placement",
                choices=["auto", "inline", "node", "session"],
                default=None,
                help=f"where the {stage.upper()} stage runs (default auto: the provider's choice)",
            )
        sp.add_argument(
            "--media-port-range",
            default=None,
            help='ports the session processes serve media on, e.g. "20000-20999" (default: any)',
        )
        sp.add_argument(
            "--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else local)"
        )

    def caller(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--rate", type=int, default=16000, help="sample rate of the call audio")
        sp.add_argument("--out", type=Path, default=Path("reply.wav"), help="reply audio WAV")
        sp.add_argument("--pipeline", choices=["stt_tts", "s2s"], default="stt_tts")

    def client(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--url", default=DEFAULT_URL, help=f"backend URL (default {DEFAULT_URL})")
        api_key(sp)

    def api_key(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--api-key",
            default=os.environ.get(CLIENT_API_KEY_ENV),
            help="control-plane API key, when the backend has api_keys "
            f"(default: {CLIENT_API_KEY_ENV})",
        )

    server(sub.add_parser("serve", help="run the backend until Ctrl-C / SIGTERM"))
    demo = sub.add_parser("demo", help="start the backend and place one voice call through it")
    server(demo)
    caller(demo)
    demo.add_argument("--text", default=DEFAULT_PHRASE, help="phrase spoken by espeak-ng")
    demo.add_argument("--wav", type=Path, help="speak this 16-bit PCM WAV instead of --text")
    demo.add_argument("--url", help="use a backend already running at this URL instead")
    api_key(demo)
    demo.add_argument("--keep-serving", action="store_true", help="keep serving after the call")
    call = sub.add_parser("call", help="one voice call with a WAV against a running backend")
    call.add_argument("wav", type=Path, help="16-bit PCM WAV to speak")
    caller(call)
    client(call)
    client(sub.add_parser("sessions", help="list the sessions of a running backend"))
    client(sub.add_parser("health", help="health of a running backend"))
    bench = sub.add_parser("bench", help="run a benchmark from benchmarks/")
    bench.add_argument("name", help="e.g. voice_latency")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    return p


def _config(args: argparse.Namespace) -> Config:
    return load_config(
        args.config,
        provider=args.provider,
        max_concurrent_sessions=args.max_sessions,
        stt_placement=args.stt_placement,
        tts_placement=args.tts_placement,
        s2s_placement=args.s2s_placement,
        media_port_range=args.media_port_range,
    )


def _start(args: argparse.Namespace, config: Config) -> None:
    import serve_app

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # our own lines say what matters
    with _spinner("starting Ray and the Serve app (10-15 s on a small machine)"):
        serve_app.ensure_ray(args.address)
        serve_app.deploy(config.provider, config, host=args.host, port=args.port)
    base = f"http://{args.host}:{args.port}"
    console.print(f"API        {base}/v1   (health: {base}/v1/health)")
    console.print(f"API docs   {base}/docs")
    console.print(f"dashboard  {serve_app.dashboard_url() or 'not running'}")


def _stop(config: Config) -> None:
    """Drain: admission stops, live calls get `drain_timeout` to end, the rest are closed."""
    import ray

    import serve_app

    with contextlib.suppress(Exception):
        handle = serve_app.app_handle()
        if handle is not None:
            if config.drain_timeout:
                console.print(f"draining: live calls have up to {config.drain_timeout:g} s")
            handle.api_drain.remote(None).result(timeout_s=config.drain_timeout + 30)
    with contextlib.suppress(Exception):
        serve_app.undeploy()
    ray.shutdown()


@contextlib.contextmanager
def _spinner(text: str):  # type: ignore[no-untyped-def]
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        progress.add_task(text, total=None)
        yield


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    console.print("serving; Ctrl-C or SIGTERM stops")
    await stop.wait()
    console.print("stopping...")


async def _speech(args: argparse.Namespace) -> tuple[bytes, str]:
    if getattr(args, "wav", None):
        samples, rate = read_wav(args.wav)
        label = str(args.wav)
    else:
        from providers.espeak.tts import EspeakTTS

        tts = EspeakTTS()
        pcm = b"".join([c async for c in tts.synthesize(args.text)])
        samples, rate = np.frombuffer(pcm, dtype="<i2"), tts.capabilities.sample_rate_hz
        label = f'"{args.text}" (espeak-ng)'
    if rate != args.rate:
        samples = soxr.resample(samples, rate, args.rate)
    return np.asarray(samples, dtype="<i2").tobytes(), label


async def _call(args: argparse.Namespace, base_url: str) -> int:
    pcm, label = await _speech(args)
    async with HttpClient(base_url, api_key=args.api_key) as client:
        session = await client.create_session(
            user_id="cli-user",
            sample_rate_hz=args.rate,
            output_sample_rate_hz=args.rate,
            pipeline_type=args.pipeline,
            agent={"type": "echo"},
        )
        console.print(
            f"session    {session['session_id']} on node {session.get('node_id', '?')[:12]}"
        )
        try:
            started = time.monotonic()
            with _spinner(f"talking ({len(pcm) / 2 / args.rate:.1f} s of audio, in real time)"):
                result = await client.talk(session, pcm, args.rate, timeout_s=120)
            console.print(f"call took {time.monotonic() - started:.1f} s")
        finally:
            await client.close_session(session["session_id"])
    if result.audio:
        write_wav(args.out, bytes(result.audio), args.rate)
    call_report(result, label, str(args.out), args.rate)
    return 0 if result.replies and result.audio else 1


async def _sessions(url: str, api_key: str | None) -> int:
    async with HttpClient(url, api_key=api_key) as client:
        sessions_table(await client.list_sessions())
    return 0


async def _health(url: str, api_key: str | None) -> int:
    async with HttpClient(url, api_key=api_key) as client:
        health = await client.health()
    health_report(health)
    return 0 if health.get("status") != "unhealthy" else 1


def _is_benchmark(script: Path) -> bool:
    """A benchmark is a script of benchmarks/ that runs as a program; the rest are its parts."""
    return script.is_file() and '__name__ == "__main__"' in script.read_text(encoding="utf-8")


def _bench(name: str, args: list[str]) -> int:
    script = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    if not _is_benchmark(script):
        known = sorted(p.stem for p in script.parent.glob("*.py") if _is_benchmark(p))
        raise BackendError("bench", "invalid_config", f"no benchmark {name!r}; have: {known}")
    return subprocess.call(
        [sys.executable, "-m", f"benchmarks.{name}", *args], cwd=script.parents[1]
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "sessions":
            return asyncio.run(_sessions(args.url, args.api_key))
        if args.command == "health":
            return asyncio.run(_health(args.url, args.api_key))
        if args.command == "call":
            return asyncio.run(_call(args, args.url))
        if args.command == "bench":
            return _bench(args.name, args.args)
        if args.command == "demo" and args.url:
            return asyncio.run(_call(args, args.url))
        config = _config(args)
        _start(args, config)
        try:
            code = 0
            if args.command == "demo":
                code = asyncio.run(_call(args, f"http://{args.host}:{args.port}"))
            if args.command == "serve" or args.keep_serving:
                asyncio.run(_wait_for_signal())
            return code
        finally:
            _stop(config)
    except BackendError as err:
        err_console.print(f"[red]error: {err.code.value}: {err.message}[/red]")
        return 2
    except (OSError, TimeoutError, httpx.HTTPError) as err:  # e.g. nothing listening at --url
        err_console.print(
            f"[red]error: cannot reach the backend: {err or type(err).__name__}[/red]"
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
