"""`voice-backend` as a user runs it: a demo call against a running backend, and `serve` started
on its own local Ray, answering HTTP, then stopped by SIGTERM with nothing left running."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, make_config

pytestmark = pytest.mark.ray

CLI = [sys.executable, "-m", "backend.cli"]


def test_demo_call_prints_the_turn_and_writes_the_reply(base_url: str, tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    done = subprocess.run(
        [*CLI, "demo", "--url", base_url, "--out", str(out), "--rate", "24000"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    heard = next(line for line in lines if line.startswith("heard"))
    assert "hello" in heard
    assert any(line.startswith("reply") and "You said: hello" in line for line in lines)
    assert any("STT finalisation" in line for line in lines)
    assert any("latency target" in line for line in lines)
    with wave.open(str(out)) as w:
        assert w.getframerate() == 24000
        assert w.getnframes() / 24000 >= 0.3


def test_call_sessions_health_and_errors_against_a_running_backend(
    base_url: str, tmp_path: Path
) -> None:
    from backend.wav import write_wav
    from tests.conftest import speak

    wav = tmp_path / "me.wav"
    write_wav(wav, asyncio.run(speak("open the door", 22050)), 22050)
    done = subprocess.run(
        [*CLI, "call", str(wav), "--url", base_url, "--out", str(tmp_path / "r.wav")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "heard      open the door" in done.stdout
    assert "reply      You said: open the door" in done.stdout

    health = subprocess.run([*CLI, "health", "--url", base_url], capture_output=True, text=True)
    assert health.returncode == 0 and "status     healthy" in health.stdout, health.stdout
    listed = subprocess.run([*CLI, "sessions", "--url", base_url], capture_output=True, text=True)
    assert listed.returncode == 0 and "session(s)" in listed.stdout

    nobody = subprocess.run(
        [*CLI, "health", "--url", f"http://127.0.0.1:{free_port()}"], capture_output=True, text=True
    )
    assert nobody.returncode == 2 and "cannot reach the backend" in nobody.stderr
    assert "Traceback" not in nobody.stderr
    bad_wav = tmp_path / "bad.wav"
    bad_wav.write_bytes(b"not a wav")
    bad = subprocess.run(
        [*CLI, "call", str(bad_wav), "--url", base_url], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "invalid_format" in bad.stderr and "Traceback" not in bad.stderr


async def test_client_commands_take_the_api_key_of_a_keyed_backend(
    backend: Any, base_url: str
) -> None:
    key = "cli-service-key-0123456789abcdef"
    await backend.update_config(make_config(api_keys=[key]))  # `backend` reopens it after

    def sessions(*extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*CLI, "sessions", "--url", base_url, *extra],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
        )

    refused = await asyncio.to_thread(sessions)
    assert refused.returncode == 2 and "authentication_failed" in refused.stderr
    assert "Traceback" not in refused.stderr and key not in refused.stderr
    by_flag = await asyncio.to_thread(sessions, "--api-key", key)
    assert by_flag.returncode == 0 and "session(s)" in by_flag.stdout, by_flag.stderr
    by_env = await asyncio.to_thread(sessions, env={"VOICE_BACKEND_API_KEY": key})
    assert by_env.returncode == 0 and "session(s)" in by_env.stdout, by_env.stderr


def _processes_in_session(sid: int) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "sid=,pid=,comm="], capture_output=True, text=True)
    rows = [line.split(None, 2) for line in ps.stdout.splitlines()]
    return [f"{r[1]} {r[2]}" for r in rows if len(r) == 3 and r[0] == str(sid)]


def test_serve_answers_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "backend.yaml"
    config.write_text("max_concurrent_sessions: 2\nlatency_target: 0.4\n")
    env = {
        **os.environ,
        "VOICE_RAY_DASHBOARD": "0",
        "RAY_ADDRESS": "",
        "VOICE_BACKEND_TIMEOUT": "20",
    }
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: everything it starts can be found
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300  # Ray + Serve start: ~15 s idle, minutes under load
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"{base}/v1/health", timeout=5).json()
                break
            except (httpx.HTTPError, ValueError):  # up, but the app not yet routed
                time.sleep(1)
        assert health is not None, "serve never answered"
        assert health["max_concurrent_sessions"] == 2  # from the config file
        config_seen = httpx.get(f"{base}/v1/config", timeout=5).json()
        assert config_seen["latency_target"] == 0.4 and config_seen["timeout"] == 20  # env
        created = httpx.post(f"{base}/v1/sessions", json={"user_id": "cli"}, timeout=60)
        assert created.status_code == 201, created.text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, output
    for label in ("API ", "API docs", "dashboard", "serving;"):
        assert label in output
    assert f"http://127.0.0.1:{port}/docs" in output
    deadline = time.monotonic() + 30
    while _processes_in_session(proc.pid) and time.monotonic() < deadline:
        time.sleep(1)
    left = _processes_in_session(proc.pid)
    if left:  # never leave a stray cluster behind, even when failing
        os.killpg(proc.pid, signal.SIGKILL)
    assert not left, json.dumps(left)
