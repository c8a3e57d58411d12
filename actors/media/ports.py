"""`SessionPort`: what the relay asks of a session — start its media, take client frames, hand
out what is queued for the client. `ActorPort` reaches the session actor by Ray calls (the
ingress's path); `LocalPort` calls the session's runtime in its own process (the worker's media
server), so inbound audio costs no Ray call at all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pipelines.session import SessionRuntime


class SessionPort(Protocol):
    # True: frames read while a push is in flight wait and go together in the next push (each
    # push is a remote call). False: each frame is pushed as soon as it is read.
    batches: bool

    async def start_media(self) -> str: ...

    async def push_audio(self, frames: list[bytes]) -> list[dict[str, Any]]: ...

    async def poll(
        self, audio: bool, events: bool, timeout_s: float, max_audio_bytes: int | None
    ) -> dict[str, Any]: ...


class ActorPort:
    """A session actor through its `SessionRef` (`.remote` calls that fail once it has ended)."""

    batches = True

    def __init__(self, session_ref: Any) -> None:
        self.ref = session_ref

    async def start_media(self) -> str:
        return await self.ref.start_media.remote()

    async def push_audio(self, frames: list[bytes]) -> list[dict[str, Any]]:
        return await self.ref.push_audio.remote(frames)

    async def poll(
        self, audio: bool, events: bool, timeout_s: float, max_audio_bytes: int | None
    ) -> dict[str, Any]:
        return await self.ref.poll.remote(audio, events, timeout_s, max_audio_bytes)


class LocalPort:
    """The session's `SessionRuntime`, in this process. `get_runtime` is asked once, on first
    use, and its answer kept: a worker serves one session after another, and a connection of a
    session that has ended must keep reaching that session's (closed) runtime, never the next
    one's. It raises `BackendError` (session_not_active) when there is no runtime."""

    batches = False

    def __init__(self, get_runtime: Callable[[], SessionRuntime]) -> None:
        self._get_runtime = get_runtime
        self._runtime: SessionRuntime | None = None

    def runtime(self) -> SessionRuntime:
        if self._runtime is None:
            self._runtime = self._get_runtime()
        return self._runtime

    async def start_media(self) -> str:
        rt = self.runtime()
        rt.start()
        return rt.state.value

    async def push_audio(self, frames: list[bytes]) -> list[dict[str, Any]]:
        return self.runtime().push_audio(frames)

    async def poll(
        self, audio: bool, events: bool, timeout_s: float, max_audio_bytes: int | None
    ) -> dict[str, Any]:
        return await self.runtime().outbox.poll(
            audio=audio, events=events, timeout_s=timeout_s, max_audio_bytes=max_audio_bytes
        )
