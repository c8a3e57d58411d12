"""`voice-backend`: run the backend, or place a real voice call through it.

voice-backend demo                     # start on local Ray, speak "hello world", print the turn
voice-backend demo --wav me.wav        # your own recording (16-bit PCM WAV)
voice-backend demo --keep-serving      # ... then keep serving so others can connect
voice-backend serve --port 8000 --max-sessions 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path

import numpy as np
import soxr

from backend.errors import BackendError
from backend.http_client import CallResult, HttpClient
from backend.iface import Config
from backend.wav import read_wav, write_wav

DEFAULT_PHRASE = "hello world"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voice-backend", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
        sp.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
        sp.add_argument("--provider", default="local", help="backend provider (default local)")
        sp.add_argument(
            "--max-sessions",
            type=int,
            default=100,
            help="max concurrent sessions, 0 = no cap (default 100)",
        )
        sp.add_argument(
            "--address",
            default=None,
            help="Ray cluster to join (default: RAY_ADDRESS, else start local Ray)",
        )

    serve_p = sub.add_parser("serve", help="run the backend until Ctrl-C / SIGTERM")
    common(serve_p)

    demo = sub.add_parser("demo", help="start the backend and place one voice call through it")
    common(demo)
    demo.add_argument("--text", default=DEFAULT_PHRASE, help="phrase spoken by espeak-ng")
    demo.add_argument("--wav", type=Path, help="speak this 16-bit PCM WAV instead of --text")
    demo.add_argument("--rate", type=int, default=16000, help="sample rate of the call audio")
    demo.add_argument("--out", type=Path, default=Path("reply.wav"), help="reply audio WAV")
    demo.add_argument("--url", help="use a backend already running at this URL instead")
    demo.add_argument(
        "--keep-serving",
        action="store_true",
        help="keep serving after the call so that others can connect",
    )
    return p


def _config(args: argparse.Namespace) -> Config:
    return Config(provider=args.provider, max_concurrent_sessions=args.max_sessions)


def _start(args: argparse.Namespace) -> None:
    import serve_app

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # our own lines say what matters
    print("starting Ray and the Serve app (about 10-15 s on a small machine)...", flush=True)
    serve_app.ensure_ray(args.address)
    serve_app.deploy(args.provider, _config(args), host=args.host, port=args.port)
    base = f"http://{args.host}:{args.port}"
    print(f"API        {base}/v1   (health: {base}/v1/health)")
    print(f"API docs   {base}/docs")
    print(f"dashboard  {serve_app.dashboard_url() or 'not running'}", flush=True)


def _stop() -> None:
    import ray

    import serve_app

    with contextlib.suppress(Exception):
        handle = serve_app.app_handle()
        if handle is not None:
            handle.api_close_all.remote("backend shutting down").result(timeout_s=30)
    with contextlib.suppress(Exception):
        serve_app.undeploy()
    ray.shutdown()


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("serving; Ctrl-C or SIGTERM stops", flush=True)
    await stop.wait()
    print("stopping: closing sessions...", flush=True)


async def _speech(args: argparse.Namespace) -> tuple[bytes, str]:
    if args.wav:
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


def _report(result: CallResult, args: argparse.Namespace, label: str) -> None:
    print(f"\nyou said   {label}")
    print(f"heard      {' | '.join(result.transcripts) or '(nothing recognised)'}")
    print(f"reply      {' | '.join(result.replies) or '(none)'}")
    for err in result.of_type("error"):
        print(f"error      {err.get('code')}: {err.get('message')}")
    for m in result.metrics:
        print(f"\nturn {m['turn_id']} latency (ms)")
        rows = [
            ("end-of-turn silence", m.get("end_of_turn_delay_ms")),
            ("STT finalisation", m.get("stt_final_ms")),
            ("agent", m.get("agent_ms")),
            ("TTS first audio", m.get("tts_first_audio_ms")),
            ("response (turn end -> audio)", m.get("response_ms")),
            ("voice-to-voice (server)", m.get("voice_to_voice_ms")),
        ]
        for name, value in rows:
            print(f"  {name:<30} {value if value is not None else '-':>8}")
        verdict = "met" if m.get("met_latency_target") else "missed"
        print(f"  latency target {m.get('latency_target_ms')} ms: {verdict}")
    if result.first_audio_at and result.speech_sent_at:
        v2v = (result.first_audio_at - result.speech_sent_at) * 1000
        print(f"  {'voice-to-voice (client)':<30} {v2v:>8.1f}")
    seconds = len(result.audio) / 2 / args.rate
    if result.audio:
        write_wav(args.out, bytes(result.audio), args.rate)
    print(f"\nreply audio: {seconds:.2f} s -> {args.out}")


async def _call(args: argparse.Namespace, base_url: str) -> int:
    pcm, label = await _speech(args)
    async with HttpClient(base_url) as client:
        session = await client.create_session(
            user_id="demo-user",
            sample_rate_hz=args.rate,
            output_sample_rate_hz=args.rate,
            agent={"type": "echo"},
        )
        print(f"session    {session['session_id']} on node {session.get('node_id', '?')[:12]}")
        try:
            started = time.monotonic()
            result = await client.talk(session, pcm, args.rate, timeout_s=120)
            print(f"call took {time.monotonic() - started:.1f} s (audio streamed in real time)")
        finally:
            await client.close_session(session["session_id"])
    _report(result, args, label)
    return 0 if result.replies and result.audio else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo" and args.url:
            return asyncio.run(_call(args, args.url))
        _start(args)
        try:
            code = 0
            if args.command == "demo":
                code = asyncio.run(_call(args, f"http://{args.host}:{args.port}"))
            if args.command == "serve" or args.keep_serving:
                asyncio.run(_wait_for_signal())
            return code
        finally:
            _stop()
    except BackendError as err:
        print(f"error: {err.code.value}: {err.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
