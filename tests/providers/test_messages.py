"""The typed pipeline messages give exactly the native protocol's JSON events (what the web page,
the e2e tests and every client read), and read back from them."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from backend.errors import BackendError, ErrorCode
from providers.messages import (
    AgentReply,
    AgentText,
    AudioChunk,
    Backchannel,
    Closed,
    ErrorEvent,
    Event,
    Interruption,
    Message,
    Metrics,
    SpeechEnded,
    SpeechStarted,
    StateChanged,
    Transcript,
    message_from_wire,
)

METRICS = {
    "end_of_turn_delay_ms": 512.0,
    "stt_final_ms": 46.7,
    "agent_ms": 0.1,
    "agent_total_ms": 0.2,
    "tts_first_audio_ms": 6.7,
    "response_ms": 53.5,
    "voice_to_voice_ms": None,
    "latency_target_ms": 500.0,
    "met_latency_target": True,
    "interrupted": False,
}

# Each message beside the dict the pipeline put in the outbox before messages were typed.
TABLE: list[tuple[Message, dict[str, Any]]] = [
    (StateChanged("listening"), {"type": "state", "state": "listening"}),
    (Closed("bye"), {"type": "closed", "reason": "bye"}),
    (SpeechStarted(3), {"type": "speech_started", "turn_id": 3}),
    (SpeechEnded(3), {"type": "speech_ended", "turn_id": 3}),
    (Backchannel(3), {"type": "backchannel", "turn_id": 3}),
    (
        Transcript(turn_id=3, text="hello world"),
        {"type": "transcript", "turn_id": 3, "text": "hello world", "final": True},
    ),
    (
        Transcript(turn_id=4, text=""),
        {"type": "transcript", "turn_id": 4, "text": "", "final": True},
    ),
    (
        Transcript(text="hi", source="vapi"),
        {"type": "transcript", "text": "hi", "final": True, "source": "vapi"},
    ),
    (
        AgentText(turn_id=3, text="You said."),
        {"type": "agent_text", "turn_id": 3, "text": "You said."},
    ),
    (
        AgentReply(turn_id=3, text="You said: hello world"),
        {"type": "agent_reply", "turn_id": 3, "text": "You said: hello world"},
    ),
    (
        AgentReply(text="ok", source="vapi"),
        {"type": "agent_reply", "text": "ok", "source": "vapi"},
    ),
    (
        Interruption(turn_id=3, played_ms=812.5, heard_text="You said"),
        {"type": "interrupted", "turn_id": 3, "played_ms": 812.5, "heard_text": "You said"},
    ),
    (
        ErrorEvent(code="timeout", message="agent did not answer within 10 s", turn_id=3),
        {
            "type": "error",
            "code": "timeout",
            "message": "agent did not answer within 10 s",
            "turn_id": 3,
        },
    ),
    (
        ErrorEvent(code="invalid_format", message="odd byte count", field="audio"),
        {"type": "error", "code": "invalid_format", "message": "odd byte count", "field": "audio"},
    ),
    (Metrics(3, METRICS), {"type": "metrics", "turn_id": 3, **METRICS}),
    (
        Event("draining", {"reason": "the backend is shutting down", "timeout_s": 30.0}),
        {"type": "draining", "reason": "the backend is shutting down", "timeout_s": 30.0},
    ),
    (
        Event("stage_failover", {"stage": "stt", "via": "spare", "recovery_ms": 41.0}),
        {"type": "stage_failover", "stage": "stt", "via": "spare", "recovery_ms": 41.0},
    ),
]


@pytest.mark.parametrize(("message", "wire"), TABLE, ids=[w["type"] for _, w in TABLE])
def test_to_wire_is_the_native_event_and_reads_back(message: Message, wire: dict) -> None:
    assert message.to_wire() == wire
    assert list(message.to_wire()) == list(wire), "same keys, in the same order"
    assert message.type == wire["type"]
    assert message_from_wire(wire) == message
    assert pickle.loads(pickle.dumps(message)) == message  # Ray carries them between processes


def test_an_error_event_is_the_error_body_of_a_backend_error() -> None:
    err = BackendError("stt", ErrorCode.PIPELINE_ERROR, "boom")
    assert ErrorEvent.of(err, 2).to_wire() == {
        "type": "error",
        **err.to_body()["error"],
        "turn_id": 2,
    }
    bad = BackendError("audio", ErrorCode.INVALID_FORMAT, "odd", field="audio")
    assert ErrorEvent.of(bad).to_wire() == {"type": "error", **bad.to_body()["error"]}


def test_a_dict_that_does_not_fit_its_class_is_kept_whole() -> None:
    odd = {"type": "transcript", "text": "x", "language": "en"}
    assert message_from_wire(odd) == Event("transcript", {"text": "x", "language": "en"})
    assert message_from_wire(odd).to_wire() == odd
    assert message_from_wire({"type": "state"}).to_wire() == {"type": "state"}


def test_audio_chunks_pickle_and_compare() -> None:
    chunk = AudioChunk(b"\x01\x00" * 160, 16000, turn_id=2)
    assert pickle.loads(pickle.dumps(chunk)) == chunk
    assert not hasattr(chunk, "__dict__")  # slotted: small, and plain to pickle
