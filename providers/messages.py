"""What a session sends its client, typed: reply audio and the events of the native protocol.

Pipelines emit these, the outbox (`pipelines.outbox`) carries them in order, and every transport
and wire codec reads them; the JSON a client sees is made only at the wire, by `to_wire()`, and is
exactly the native protocol's (`{"type": "transcript", "turn_id": 1, "text": ..., "final": true}`).
They live in providers/ because the provider codecs (Pipecat, Vocode) and the LiveKit transport
speak them and may not import the pipeline. Plain slotted dataclasses: Ray pickles them between
the session actor and the ingress.

A message's fields are its wire keys, in wire order; a field that is None is left off the wire.
Rare kinds (`stage_failover`, `draining`, Vapi's status and transcripts, ...) are a generic `Event`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from backend.errors import BackendError


@dataclass(slots=True)
class AudioChunk:
    """Reply audio: PCM16 mono at `sample_rate_hz` (binary frames on the wire, never JSON)."""

    pcm16: bytes
    sample_rate_hz: int
    turn_id: int | None = None  # the turn whose reply it is; None: sent as-is (`send_audio`)


class Message:
    """One JSON event of the native protocol."""

    __slots__ = ()
    TYPE: ClassVar[str] = ""

    @property
    def type(self) -> str:
        return self.TYPE

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.type}
        for f in fields(self):  # type: ignore[arg-type]  # every subclass is a dataclass
            value = getattr(self, f.name)
            if value is not None:
                wire[f.name] = value
        return wire


@dataclass(slots=True)
class StateChanged(Message):
    TYPE: ClassVar[str] = "state"
    state: str  # a `PipelineState` value: idle, listening, processing, speaking, closed


@dataclass(slots=True)
class Closed(Message):
    """The session has ended; the last event a client receives."""

    TYPE: ClassVar[str] = "closed"
    reason: str = "closed"


@dataclass(slots=True)
class SpeechStarted(Message):
    TYPE: ClassVar[str] = "speech_started"
    turn_id: int | None = None


@dataclass(slots=True)
class SpeechEnded(Message):
    TYPE: ClassVar[str] = "speech_ended"
    turn_id: int | None = None


@dataclass(slots=True)
class Backchannel(Message):
    """The user spoke over the agent too briefly to interrupt it ("yeah", "ok")."""

    TYPE: ClassVar[str] = "backchannel"
    turn_id: int | None = None


@dataclass(slots=True, kw_only=True)
class Transcript(Message):
    """What the user said (an empty final transcript: nothing was understood, no reply comes)."""

    TYPE: ClassVar[str] = "transcript"
    turn_id: int | None = None
    text: str
    final: bool = True
    source: str | None = None  # "vapi": a hosted call's transcript, not this pipeline's


@dataclass(slots=True, kw_only=True)
class AgentText(Message):
    """One sentence of the reply, sent as it starts to be spoken."""

    TYPE: ClassVar[str] = "agent_text"
    turn_id: int | None = None
    text: str


@dataclass(slots=True, kw_only=True)
class AgentReply(Message):
    """The agent's whole reply, once it has finished writing it."""

    TYPE: ClassVar[str] = "agent_reply"
    turn_id: int | None = None
    text: str
    source: str | None = None


@dataclass(slots=True, kw_only=True)
class Interruption(Message):
    """The user spoke over the reply `played_ms` into it; a client drops the audio it holds."""

    TYPE: ClassVar[str] = "interrupted"
    turn_id: int | None = None
    played_ms: float = 0.0
    heard_text: str = ""


@dataclass(slots=True, kw_only=True)
class ErrorEvent(Message):
    """A failure the client is told of (the shape of every HTTP error body's `error`)."""

    TYPE: ClassVar[str] = "error"
    code: str = "pipeline_error"
    message: str = ""
    field: str | None = None
    turn_id: int | None = None

    @classmethod
    def of(cls, err: BackendError, turn_id: int | None = None) -> ErrorEvent:
        return cls(
            code=err.code.value, message=err.message, field=err.field or None, turn_id=turn_id
        )


@dataclass(slots=True)
class Metrics(Message):
    """A turn is over (answered or interrupted): its latencies (`TurnTimings.as_metrics`)."""

    TYPE: ClassVar[str] = "metrics"
    turn_id: int | None
    values: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.TYPE}
        if self.turn_id is not None:
            wire["turn_id"] = self.turn_id
        return {**wire, **self.values}


@dataclass(slots=True)
class Event(Message):
    """Any other event, as its wire keys (`stage_failover`, `draining`, `vapi_status`, ...)."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return self.kind

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.kind, **self.data}


_TYPED: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        StateChanged,
        Closed,
        SpeechStarted,
        SpeechEnded,
        Backchannel,
        Transcript,
        AgentText,
        AgentReply,
        Interruption,
        ErrorEvent,
    )
}


def message_from_wire(wire: dict[str, Any]) -> Message:
    """A native-protocol event dict → its message. A dict that does not fit its kind's class
    (a key it does not have, a required one missing) stays whole, as an `Event`."""
    kind = str(wire.get("type", ""))
    rest = {k: v for k, v in wire.items() if k != "type"}
    if kind == Metrics.TYPE:
        return Metrics(rest.pop("turn_id", None), rest)
    cls = _TYPED.get(kind)
    if cls is not None:
        try:
            return cls(**rest)
        except TypeError:
            pass
    return Event(kind, rest)
