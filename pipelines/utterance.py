"""One utterance on its way through the STT, as the pipeline's feeder task sees it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from backend.errors import BackendError, ErrorCode
from providers.base import STT, SttStream


class SttUtterance:
    """The STT side of one utterance, as the feeder sees it: the stream, the audio sent so far
    (to replay if an early finish is taken back) and the early transcript, if one was taken."""

    def __init__(self, stream: SttStream | None = None) -> None:
        self.stream = stream
        self.audio: list[bytes] = []
        self.early: str | None = None
        self.failed: BackendError | None = None

    async def push(self, pcm16: bytes) -> None:
        if self.stream is None or self.failed is not None:
            return
        self.audio.append(pcm16)
        if self.early is None:  # after an early finish, audio waits here for a possible replay
            await self.stream.push(pcm16)

    async def finish_early(self, finish: Callable[[SttStream], Awaitable[str]]) -> None:
        if self.stream is not None and self.failed is None and self.early is None:
            self.early = await finish(self.stream)

    async def resume(self, stt: STT) -> None:
        """The user went on after an early finish: a fresh stream hears the utterance so far."""
        if self.stream is None or self.failed is not None or self.early is None:
            return
        self.early, self.stream = None, stt.stream()
        if self.audio:
            await self.stream.push(b"".join(self.audio))

    async def finish(self, finish: Callable[[SttStream], Awaitable[str]]) -> str:
        if self.failed is not None or self.stream is None:
            raise self.failed or BackendError("stt", ErrorCode.PIPELINE_ERROR, "no stream")
        if self.early is not None:  # nothing but silence came after it
            return self.early
        return await finish(self.stream)

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
