"""The contract of a media transport: it connects one client's wire to a `SessionRuntime`.

A transport turns its wire into `runtime.push_audio(frames)` (PCM16 at the session's input rate)
and drains `runtime.outbox` (typed reply audio and events, `providers.messages`) back onto
the wire, making its wire format (JSON, a codec's, a media track) only there. It knows nothing of
STT, agents or TTS. When the client goes away for good it calls `on_closed(reason)` once, so the
session can end and free its slot.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from pipelines.session import SessionRuntime

OnClosed = Callable[[str], Awaitable[None]]


class MediaTransport(ABC):
    def __init__(self, on_closed: OnClosed | None = None) -> None:
        self.on_closed = on_closed
        self.runtime: SessionRuntime | None = None

    async def start(self, runtime: SessionRuntime) -> None:
        """Bind to the session; media starts flowing once the client is connected."""
        self.runtime = runtime

    @abstractmethod
    async def aclose(self) -> None:
        """Stop media and release the connection; never calls `on_closed`."""
