"""Vapi's wire formats on our side: server-URL messages in, Chat Completions chunks out.

Server messages are `POST {"message": {"type", "call": {...}, ...}}` (Vapi's ServerMessage);
only `tool-calls` expects an answer: `{"results": [{"toolCallId", "result"}]}`. The custom LLM is
OpenAI's Chat Completions: streamed as `data: <chat.completion.chunk>` events, ended by
`data: [DONE]`.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from backend.errors import BackendError, ErrorCode


class ServerMessage(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: str
    call: dict[str, Any] = Field(default_factory=dict)
    status: str | None = None
    role: str | None = None
    transcript: str | None = None
    transcript_type: str | None = Field(default=None, alias="transcriptType")
    tool_call_list: list[dict[str, Any]] = Field(default_factory=list, alias="toolCallList")
    ended_reason: str | None = Field(default=None, alias="endedReason")
    artifact: dict[str, Any] = Field(default_factory=dict)
    summary: str | None = None
    analysis: dict[str, Any] = Field(default_factory=dict)


def parse_server_message(body: Any) -> ServerMessage:
    try:
        return ServerMessage(**body["message"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BackendError(
            "vapi.webhook",
            ErrorCode.INVALID_FORMAT,
            'expected {"message": {"type": ..., "call": {...}}}',
            field="message",
        ) from exc


def verify_secret(expected: str | None, headers: dict[str, str]) -> None:
    """Vapi sends the server secret as `X-Vapi-Secret`; anything else is a forged request."""
    got = {k.lower(): v for k, v in headers.items()}.get("x-vapi-secret", "")
    if not expected or not hmac.compare_digest(got.encode(), expected.encode()):
        raise BackendError(
            "vapi.webhook", ErrorCode.AUTHENTICATION_FAILED, "missing or wrong X-Vapi-Secret"
        )


def end_of_call_report(msg: ServerMessage) -> dict[str, Any]:
    """What we keep of Vapi's end-of-call report in the session's metadata."""
    art = msg.artifact
    return {
        "ended_reason": msg.ended_reason,
        "summary": msg.summary or msg.analysis.get("summary"),
        "transcript": art.get("transcript"),
        "recording_url": art.get("recordingUrl") or (art.get("recording") or {}).get("url"),
        "call_id": msg.call.get("id"),
    }


def last_user_text(body: Any) -> str:
    try:
        messages = body["messages"]
        return next(
            str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"
        )
    except (KeyError, TypeError, AttributeError, StopIteration):
        raise BackendError(
            "vapi.chat",
            ErrorCode.INVALID_FORMAT,
            "messages: a list with at least one user message is required",
            field="messages",
        ) from None


class ChunkWriter:
    """Chat Completions stream chunks (`chat.completion.chunk`) as server-sent events."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex[:16]}"
        self.created = int(time.time())
        self.model = model

    def event(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(chunk)}\n\n".encode()

    def start(self) -> bytes:
        return self.event({"role": "assistant", "content": ""})

    def text(self, piece: str) -> bytes:
        return self.event({"content": piece})

    def end(self) -> bytes:
        return self.event({}, "stop") + b"data: [DONE]\n\n"
