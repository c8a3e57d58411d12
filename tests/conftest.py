"""Shared fixtures. Ray and the Serve app start once per test session, only if a test needs them
(the unit tests in tests/pipelines and tests/providers never do), and stop at the end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest
import soxr

TEST_CAP = 20
TEST_SLOTS = 24  # `voice_session` units of the test node


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_SPOKEN: dict[str, tuple[bytes, int]] = {}  # text → (PCM16, its rate)
# Synthesis in a process of its own: espeak-ng's output shifts by a few samples with what the
# process synthesized before (state kept inside the library), so in-process the audio of a phrase
# depended on which tests ran first; such variants were heard as "so we're old" for "hello world"
# and "oh the world" for "hello" + "world" late in the suite, never when a test ran alone.
_SYNTHESIZE = """
import asyncio, sys
from providers.espeak.tts import EspeakTTS
async def main():
    tts = EspeakTTS()
    pcm = b"".join([c async for c in tts.synthesize(sys.argv[1])])
    sys.stdout.buffer.write(tts.capabilities.sample_rate_hz.to_bytes(4, "little") + pcm)
asyncio.run(main())
"""


async def speak(text: str, rate: int = 16000) -> bytes:
    """`text` spoken by espeak-ng from a fresh state, as PCM16 mono at `rate`: the same audio
    whatever ran before, in this test run and in every other."""
    if text not in _SPOKEN:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _SYNTHESIZE,
            text,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0 or len(out) < 4:
            raise RuntimeError(f"espeak-ng synthesis of {text!r} failed: {err.decode()[-500:]}")
        _SPOKEN[text] = (out[4:], int.from_bytes(out[:4], "little"))
    pcm, src = _SPOKEN[text]
    samples = np.frombuffer(pcm, dtype="<i2")
    if src != rate:
        samples = soxr.resample(samples, src, rate)
    return np.asarray(samples, dtype="<i2").tobytes()


@pytest.fixture(scope="session")
async def hello_16k() -> bytes:
    return await speak("hello world")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    import ray

    import serve_app

    os.environ["VOICE_RAY_DASHBOARD"] = "0"
    serve_app.ensure_ray(session_slots=TEST_SLOTS)
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()


# Every stage in a pinned actor of the session's own (the isolation placement), for the tests of
# per-session stage processes; the defaults put pocketsphinx in the node's host, espeak inline.
SESSION_STAGES = {"stt_placement": "session", "tts_placement": "session"}


def make_config(**overrides: Any) -> Any:
    from backend.iface import Config

    values: dict[str, Any] = {
        "max_concurrent_sessions": TEST_CAP,
        "health_check_interval": 1.0,
        # The suite holds up to TEST_CAP mostly silent calls on a 2-core node; speech admission
        # (the default 0.75 admits 6 talking local calls there) has tests of its own.
        "speech_load_threshold": 4.0,
    }
    return Config(**{**values, **overrides})


class BackendHolder:
    """One backend for the whole run; re-created if a test stopped it (the tutorial does)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.backend: Any = None

    async def get(self) -> Any:
        import serve_app
        from backend import new_backend

        be = self.backend
        # Re-create if a test stopped it, through this object or another client of the app.
        stopped = be is None or be.get_connection_state().value != "connected"
        if stopped or not serve_app.app_handle():
            self.backend = await new_backend("local", make_config(), port=self.port)
        return self.backend


@pytest.fixture(scope="session")
async def backend_holder(ray_cluster: None) -> AsyncIterator[BackendHolder]:
    holder = BackendHolder()
    yield holder
    if holder.backend is not None:
        await holder.backend.stop()


@pytest.fixture
async def backend(backend_holder: BackendHolder) -> AsyncIterator[Any]:
    """The shared backend with the test config; every session is closed and the config restored
    after each test, so tests cannot leak into each other."""
    be = await backend_holder.get()
    yield be
    if be.get_connection_state().value == "connected":
        for sess in await be.list_sessions():
            with contextlib.suppress(Exception):
                await be.close_session(sess.id)
        await be.update_config(make_config())


@pytest.fixture
def base_url(backend: Any, backend_holder: BackendHolder) -> str:
    return f"http://127.0.0.1:{backend_holder.port}"


async def wait_for(predicate: Any, timeout_s: float = 20.0, interval_s: float = 0.2) -> Any:
    """Poll an async predicate until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = await predicate()
        if value or loop.time() > deadline:
            return value
        await asyncio.sleep(interval_s)


def worker_actor_names() -> list[str]:
    """Named session-worker actors (`worker:<id>`, `worker:<id>/stt`, `.../tts`) alive now."""
    import ray

    import serve_app

    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("worker:") and a.get("namespace") == serve_app.NAMESPACE
    ]


async def busy_workers() -> dict[str, str]:
    """Workers that say they are bound to a session, by name (asked directly, not the registry)."""
    import ray

    import serve_app

    busy = {}
    for name in worker_actor_names():
        if "/" in name:
            continue
        try:
            actor = ray.get_actor(name, namespace=serve_app.NAMESPACE)
            if (session_id := (await actor.describe.remote())["session_id"]) is not None:
                busy[name] = session_id
        except Exception:  # gone meanwhile
            continue
    return busy


async def only_warm_pool_left(pool_size: int = 2, nodes: int = 1) -> bool:
    """Every session's worker was returned or recycled: none bound, no more than the warm pool
    can hold (up to twice its size for a while; three actors per worker: session, stt, tts)."""
    return not await busy_workers() and len(worker_actor_names()) <= 3 * 2 * pool_size * nodes
