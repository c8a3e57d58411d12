"""Stage provider contracts: small base classes, a capabilities record each, no Ray, no pipeline.

A provider implements one or two async methods; timeouts and retries are applied by the caller
(`providers.retry.call_with_retry`) so providers stay short. Audio is PCM16 mono little-endian
bytes at the rate the provider declares in its capabilities; resampling is the pipeline's job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SttCapabilities:
    streaming: bool  # accepts audio while the user speaks, so only finalisation is left at the end
    sample_rate_hz: int


class SttStream(ABC):
    """One utterance: `push` audio as it arrives, `finish` for the final transcript."""

    @abstractmethod
    async def push(self, pcm16: bytes) -> None: ...

    @abstractmethod
    async def finish(self) -> str: ...

    async def aclose(self) -> None:  # drop the utterance without a result
        return None


class STT(ABC):
    name: str = "stt"
    capabilities: SttCapabilities

    @abstractmethod
    def stream(self) -> SttStream: ...

    async def recognize(self, pcm16: bytes) -> str:
        """Whole-utterance recognition, built from the streaming contract."""
        s = self.stream()
        await s.push(pcm16)
        return await s.finish()

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class TtsCapabilities:
    streaming: bool  # yields audio chunks before the whole text is synthesised
    sample_rate_hz: int


class TTS(ABC):
    name: str = "tts"
    capabilities: TtsCapabilities

    @abstractmethod
    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """Yield PCM16 chunks at `capabilities.sample_rate_hz` as soon as they exist."""

    async def aclose(self) -> None:
        return None


class VAD(ABC):
    """Per-frame speech probability. Cheap and synchronous: it runs inside the session actor."""

    name: str = "vad"
    sample_rate_hz: int = 16000
    frame_samples: int  # the exact frame length `speech_probability` accepts

    @abstractmethod
    def speech_probability(self, frame: bytes) -> float: ...

    def reset(self) -> None:
        return None


@dataclass(slots=True)
class AgentContext:
    """What an agent may use besides the transcript: who is talking and what was said before."""

    session_id: str
    user_id: str
    history: list[dict[str, str]] = field(default_factory=list)  # [{"role","content"}]
    metadata: dict[str, Any] = field(default_factory=dict)


class Agent(ABC):
    name: str = "agent"

    @abstractmethod
    async def reply(self, transcript: str, ctx: AgentContext) -> str: ...

    async def aclose(self) -> None:
        return None
