"""Stage provider contracts: small base classes, a capabilities record each, no Ray, no pipeline.

A provider implements one or two async methods; timeouts and retries are applied by the caller
(`providers.retry.call_with_retry`) so providers stay short. Audio is PCM16 mono little-endian
bytes at the rate the provider declares in its capabilities; resampling is the pipeline's job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from providers.retry import RetryPolicy

# Where a stage runs by default (Config.*_placement "auto"): "inline" in the session's process,
# "node" in a stage host shared by the node's sessions, "session" in a sub-actor of its own.
Placement = Literal["inline", "node", "session"]


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
    placement: Placement = "inline"  # a network client: one more hop would only add latency
    # CPU cores one talking call costs here (local models); admission keeps a node's calls within
    # `Config.speech_load_threshold` of its CPUs. 0: the work happens elsewhere (hosted).
    cpu_cores_per_call: float = 0.0

    @abstractmethod
    def stream(self) -> SttStream: ...

    async def connect(self) -> None:
        """Open what a hosted provider keeps for the whole session (its websocket) before the
        first turn; called once when the stage starts. Embedded providers have nothing to do."""
        return None

    async def warm_up(self) -> None:
        """Run the model once on a short clip before the worker counts as ready, so the first
        turn of a call is no slower than later ones. Leaves no utterance state behind."""
        return None

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
    placement: Placement = "inline"
    cpu_cores_per_call: float = 0.0

    @abstractmethod
    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """Yield PCM16 chunks at `capabilities.sample_rate_hz` as soon as they exist.
        Closing the generator early (a barge-in) must stop the generation."""

    async def connect(self) -> None:
        """As `STT.connect`: open the session's long-lived connection before the first turn."""
        return None

    async def warm_up(self) -> None:
        """As `STT.warm_up`: synthesize something short once, before the first reply."""
        return None

    # Optional: `synthesize` calls between these two are the sentences of one reply. A provider
    # with contexts (Cartesia) speaks them in one context, so prosody carries across sentences.
    async def begin_turn(self, turn_id: int) -> None:
        return None

    async def end_turn(self, turn_id: int, interrupted: bool = False) -> None:
        return None

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


@dataclass(frozen=True, slots=True)
class TurnContext:
    """What a turn-detection provider may look at when the user falls silent."""

    speech_s: float  # how long the user has been speaking in this utterance
    history: list[dict[str, str]]  # the conversation so far


class TurnDetection(ABC):
    """Decides how much silence ends the user's turn, between the configured min and max
    endpointing delay. The `vad` provider always answers the minimum; a model that judges from
    the words whether the user is done slots in here."""

    name: str = "turn_detection"

    @abstractmethod
    def end_of_turn_silence_s(self, ctx: TurnContext, min_s: float, max_s: float) -> float: ...


@dataclass(slots=True)
class AgentContext:
    """What an agent may use besides the transcript: who is talking and what was said before."""

    session_id: str
    user_id: str
    history: list[dict[str, str]] = field(default_factory=list)  # [{"role","content"}]
    metadata: dict[str, Any] = field(default_factory=dict)


class Agent(ABC):
    """Answers the user. Implement `reply`, or override `stream` to yield text as it is written
    (speech then starts on the first sentence instead of after the whole answer)."""

    name: str = "agent"

    @abstractmethod
    async def reply(self, transcript: str, ctx: AgentContext) -> str: ...

    async def stream(self, transcript: str, ctx: AgentContext) -> AsyncIterator[str]:
        yield await self.reply(transcript, ctx)

    async def aclose(self) -> None:
        return None


# -- speech-to-speech ------------------------------------------------------------------------
# Shaped after OpenAI Realtime, the reference s2s protocol: audio streams in, the model detects
# turns itself (server VAD), and its answer streams back as audio plus transcripts.


@dataclass(frozen=True, slots=True)
class S2sCapabilities:
    sample_rate_hz: int  # PCM16 mono, both directions
    server_turn_detection: bool = True  # the model decides when the user is done


S2sEventKind = Literal[
    "speech_started",  # the user started speaking (barge-in point)
    "speech_stopped",  # the user's turn ended
    "user_transcript",  # final transcript of the user's turn
    "agent_transcript",  # a piece of the reply's text
    "audio",  # a piece of the reply's audio
    "response_done",  # the reply is complete (or was cancelled)
    "error",
]


@dataclass(slots=True)
class S2sEvent:
    kind: S2sEventKind
    audio: bytes = b""
    text: str = ""
    response_id: str = ""
    code: str = ""  # for errors: one of backend.errors.ErrorCode
    message: str = ""


@dataclass(frozen=True, slots=True)
class S2sOptions:
    instructions: str = "You are a helpful voice assistant. Answer briefly."
    voice: str | None = None
    turn_detection: Literal["server_vad", "semantic_vad"] = "server_vad"
    min_silence_s: float = 0.5
    history: tuple[tuple[str, str], ...] = ()  # (role, text) carried over on reconnect
    agent: Agent | None = None  # used by s2s providers that compose an agent (the local one)
    retry: RetryPolicy = field(default_factory=RetryPolicy)  # the backend's timeout, retries


class S2sSession(ABC):
    """One live conversation with a speech-to-speech model."""

    @abstractmethod
    async def send_audio(self, pcm16: bytes) -> None: ...

    @abstractmethod
    def events(self) -> AsyncIterator[S2sEvent]:
        """Server events until the session closes."""

    @abstractmethod
    async def interrupt(self, played_ms: int) -> None:
        """The user barged in: stop the reply and keep only its first `played_ms` of audio
        (Realtime: `response.cancel` + `conversation.item.truncate` with `audio_end_ms`)."""

    async def aclose(self) -> None:
        return None


class S2S(ABC):
    name: str = "s2s"
    capabilities: S2sCapabilities
    placement: Placement = "inline"
    cpu_cores_per_call: float = 0.0

    @abstractmethod
    async def connect(self, options: S2sOptions) -> S2sSession: ...
