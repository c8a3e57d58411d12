"""Vapi's calls into this backend: its server-URL webhook and its custom-LLM requests.

The parsing and the secret check are the provider's (`providers/vapi`); this module routes a
verified message to the session's actor (events, metadata, tools, one agent turn) and ends the
session when Vapi reports the call over, which frees its slot.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from actors.control_plane import ControlPlane
from actors.errors import as_backend_error
from backend.errors import BackendError, ErrorCode
from providers.vapi.backend import VapiBackendProvider
from providers.vapi.messages import (
    ChunkWriter,
    end_of_call_report,
    last_user_text,
    parse_server_message,
)

log = logging.getLogger(__name__)


def _provider(sup: ControlPlane) -> VapiBackendProvider:
    if not isinstance(sup.provider, VapiBackendProvider):
        raise BackendError(
            "vapi", ErrorCode.PROVIDER_NOT_FOUND, "this backend does not run the vapi provider"
        )
    return sup.provider


async def handle_webhook(sup: ControlPlane, headers: dict[str, str], body: Any) -> dict[str, Any]:
    provider = _provider(sup)
    provider.verify(headers)  # before anything else: a forged request learns nothing
    msg = parse_server_message(body)
    session_id = provider.session_for(msg)
    if session_id is None:
        return {}
    try:
        actor = await sup.session_ref(await sup.require_session(session_id))
    except BackendError:
        return {}  # a message for a session already gone (e.g. after end-of-call)
    if msg.type == "status-update":
        await actor.update_metadata.remote({"vapi_status": msg.status})
        actor.add_event.remote({"type": "vapi_status", "status": msg.status})
    elif msg.type == "transcript":
        actor.add_event.remote(
            {
                "type": "vapi_transcript",
                "role": msg.role,
                "text": msg.transcript,
                "final": msg.transcript_type == "final",
            }
        )
    elif msg.type == "tool-calls":
        return {"results": [await _run_tool(actor, call) for call in msg.tool_call_list]}
    elif msg.type == "end-of-call-report":
        report = end_of_call_report(msg)
        provider.call_ended(session_id, report)
        await actor.update_metadata.remote({"vapi_end_of_call_report": report})
        await sup.close_session(session_id, reason=f"vapi call ended: {msg.ended_reason}")
    return {}


def call_report(sup: ControlPlane, session_id: str) -> dict[str, Any]:
    """The call behind a session, and Vapi's end-of-call report once it has come."""
    provider = _provider(sup)
    call, report = provider.calls.get(session_id), provider.reports.get(session_id)
    if call is None and report is None:
        raise BackendError("vapi.call", ErrorCode.SESSION_NOT_FOUND, f"no call for {session_id!r}")
    return {"session_id": session_id, "call": call, "end_of_call_report": report}


async def _run_tool(actor: Any, call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    args = fn.get("arguments") or {}
    if isinstance(args, str):
        try:
            args = json.loads(args or "{}")
        except ValueError:
            args = {}
    try:
        result = await actor.call_tool.remote(str(fn.get("name")), dict(args))
    except Exception as exc:
        err = as_backend_error("tool", exc)
        return {"toolCallId": call.get("id"), "error": err.message}
    text = result if isinstance(result, str) else json.dumps(result)
    return {"toolCallId": call.get("id"), "result": text}


async def chat_completion(
    sup: ControlPlane, session_id: str, headers: dict[str, str], body: Any
) -> AsyncIterator[bytes]:
    """Checks first (so errors are a JSON answer), then an SSE stream of the agent's reply."""
    provider = _provider(sup)
    provider.verify(headers)
    text = last_user_text(body)
    # A streamed reply cannot pass through `SessionActor.call`: ask the worker directly, naming
    # the session, which the worker checks is still the one it hosts.
    worker = await sup.worker_actor(await sup.require_session(session_id))
    model = str((body or {}).get("model") or provider.cfg.model_name)

    async def stream() -> AsyncIterator[bytes]:
        out = ChunkWriter(model)
        yield out.start()
        try:
            async for ref in worker.agent_turn.remote(session_id, text):
                yield out.text(await ref)
        except Exception as exc:  # mid-stream: say so in the stream, never a stack trace
            log.warning("vapi chat for %s failed: %s", session_id, exc)
            err = as_backend_error("vapi.chat", exc)
            error = json.dumps({"error": {"message": err.message, "code": err.code.value}})
            yield f"data: {error}\n\n".encode()
        yield out.end()

    return stream()
