"""Run the shared Serve app under another backend provider for one test module, then restore it.

A backend provider is a deployment-wide choice (as in the seed: `new_backend("pipecat", cfg)`),
so the module redeploys the one app with that provider and puts the `local` one back after;
tests elsewhere keep using the shared backend unchanged. Peers (the real pipecat-ai / vocode
packages) run as subprocesses of their own venvs, built by scripts/setup.sh.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from backend.http_client import HttpClient
from tests.conftest import BackendHolder, free_port, make_config, wait_for

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "tests" / "peers"
PEER_TIMEOUT_S = 240.0


async def _close_all(base_url: str) -> None:
    async with HttpClient(base_url) as client:
        for rec in await client.list_sessions():
            with contextlib.suppress(Exception):
                await client.close_session(rec["session_id"])


async def serve_provider(holder: BackendHolder, provider: str) -> AsyncIterator[str]:
    import serve_app

    await holder.get()
    base_url = f"http://127.0.0.1:{holder.port}"
    await _close_all(base_url)
    config = make_config(provider=provider)
    await asyncio.to_thread(serve_app.deploy, provider, config, port=holder.port)
    try:
        yield base_url
    finally:
        await _close_all(base_url)
        await asyncio.to_thread(serve_app.deploy, "local", make_config(), port=holder.port)


def peer_python(name: str) -> Path:
    python = ROOT / ".venv-peers" / name / "bin" / "python"
    assert python.exists(), f"{python} is missing: run scripts/setup.sh"
    return python


async def run_peer(name: str, script: str, *args: str) -> dict[str, Any]:
    """Run a peer script to the end; its last `RESULT {json}` line is the answer."""
    proc = await asyncio.create_subprocess_exec(
        str(peer_python(name)),
        str(PEERS / script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(PEERS),
        env={**os.environ, "NLTK_DATA": str(PEERS / "nltk_data")},  # see its README
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), PEER_TIMEOUT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("RESULT ")]
    tail = err.decode()[-4000:]
    assert proc.returncode == 0 and lines, f"peer failed ({proc.returncode}):\n{tail}"
    return json.loads(lines[-1].removeprefix("RESULT "))


@contextlib.asynccontextmanager
async def pipecat_bot_server(transport: str, **env: str) -> AsyncIterator[str]:
    """A real Pipecat bot under Pipecat's development runner (tests/peers/pipecat_echo_bot.py),
    serving `transport`; yields its URL and stops it after."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(peer_python("pipecat")),
        str(PEERS / "pipecat_echo_bot.py"),
        *("-t", transport, "--host", "localhost", "--port", str(port)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, **env},
    )
    url = f"http://localhost:{port}"
    try:

        async def ready() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"{url}/status")).status_code == 200
            except httpx.HTTPError:
                return proc.returncode is not None  # stop waiting if it died

        assert await wait_for(ready, timeout_s=60) and proc.returncode is None
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
