"""RTVI ("real-time voice inference"), the JSON message protocol Pipecat's client SDKs speak with
a bot, carried inside protobuf `MessageFrame`s on the websocket transport and as plain JSON on
SmallWebRTC's data channel. Only the shapes this backend sends or answers; field names as in
`pipecat.processors.frameworks.rtvi.models`. `answer()` and `RtviEvents` are the protocol both
transports share: what a client message asks for, and which messages a session event becomes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from providers.messages import (
    AgentText,
    ErrorEvent,
    Interruption,
    Message,
    Metrics,
    SpeechEnded,
    SpeechStarted,
    StateChanged,
    Transcript,
)
from providers.wire import WireFormatError

LABEL = "rtvi-ai"
PROTOCOL_VERSION = "2.2.0"  # what we answer a client that names no version
ABOUT = {"library": "voice-backend", "library_version": "0.1.0"}


def message(kind: str, data: Any = None, msg_id: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"label": LABEL, "type": kind}
    if msg_id is not None:
        msg["id"] = msg_id
    if data is not None:
        msg["data"] = data
    return msg


def bot_ready(msg_id: str, version: str | None) -> dict[str, Any]:
    # Echo the client's version, as Pipecat does for clients it supports: the client then
    # stays on the message shapes it knows.
    return message("bot-ready", {"version": version or PROTOCOL_VERSION, "about": ABOUT}, msg_id)


def error(text: str, fatal: bool = False) -> dict[str, Any]:
    return message("error", {"error": text, "fatal": fatal})


def error_response(msg_id: str, text: str) -> dict[str, Any]:
    return message("error-response", {"error": text}, msg_id)


def user_transcription(text: str, user_id: str) -> dict[str, Any]:
    return message(
        "user-transcription",
        {"text": text, "user_id": user_id, "timestamp": now_iso(), "final": True},
    )


def bot_output(text: str) -> dict[str, Any]:
    return message(
        "bot-output",
        {"text": text, "output_type": "sentence", "will_be_spoken": True, "spoken": True},
    )


def metrics(turn: Metrics) -> dict[str, Any]:
    """Our per-turn waterfall as RTVI metrics (seconds, per "processor"), plus the original."""
    event = turn.to_wire()

    def entries(pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
        return [
            {"processor": name, "value": round(event[key] / 1000, 4)}
            for name, key in pairs
            if isinstance(event.get(key), int | float)
        ]

    data: dict[str, Any] = {
        "ttfb": entries([("agent", "agent_ms"), ("tts", "tts_first_audio_ms")]),
        "processing": entries(
            [("stt", "stt_final_ms"), ("agent", "agent_total_ms"), ("turn", "response_ms")]
        ),
        "voice_backend": {k: v for k, v in event.items() if k != "type"},
    }
    return message("metrics", data)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def answer(msg: Any) -> tuple[list[dict[str, Any]], bool]:
    """A client's RTVI message → (replies, the client ends the call). Raises WireFormatError
    when it is not an RTVI message at all."""
    if not isinstance(msg, dict) or msg.get("label") != LABEL:
        raise WireFormatError(f'not an RTVI message (label "{LABEL}")')
    kind, msg_id = msg.get("type"), str(msg.get("id") or "")
    payload = msg.get("data") if isinstance(msg.get("data"), dict) else {}
    if kind == "client-ready":
        version = payload.get("version")
        return [bot_ready(msg_id, version if isinstance(version, str) else None)], False
    if kind == "disconnect-bot":
        return [], True
    text = f"RTVI message type {kind!r} is not supported by this backend"
    return [error_response(msg_id, text)], False


class RtviEvents:
    """A session event (native protocol) → the RTVI messages a Pipecat bot would send for it.
    Stateful: bot started/stopped speaking go out once per change."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.bot_speaking = False

    def messages(self, event: Message) -> list[dict[str, Any]]:
        match event:
            case StateChanged(state=state):
                return self._bot_speaking(state == "speaking")
            case SpeechStarted():
                return [message("user-started-speaking")]
            case SpeechEnded():
                return [message("user-stopped-speaking")]
            case Transcript(text=text):
                return [user_transcription(text, self.user_id)] if text else []
            case AgentText(text=text):
                return [bot_output(text), message("bot-transcription", {"text": text})]
            case Interruption():
                return [message("bot-interrupted"), *self._bot_speaking(False)]
            case Metrics():
                return [metrics(event)]
            case ErrorEvent(message=text):
                return [error(text or "error")]
        return [message("server-message", event.to_wire())]

    def _bot_speaking(self, speaking: bool) -> list[dict[str, Any]]:
        if speaking == self.bot_speaking:
            return []
        self.bot_speaking = speaking
        return [message("bot-started-speaking" if speaking else "bot-stopped-speaking")]
