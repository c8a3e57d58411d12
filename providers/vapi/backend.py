"""The `vapi` backend: Vapi hosts the call's speech, this backend supplies the brain.

`open_session` (after admission, so a refused session creates no remote call) creates the call
through Vapi's API (`POST /call`, official `vapi-server-sdk`) with a transient assistant — or the
configured `assistant_id` with overrides — whose model is a custom LLM pointing at this backend's
`/v1/vapi/{session_id}/chat/completions` and whose server URL is `/v1/vapi/webhook`; both carry
the server secret as `X-Vapi-Secret`, which the webhook checks. `close_session` ends a call still
live through its control URL (`{"type": "end-call"}`).

Calls made here are remembered in this process (call id ↔ session id, end-of-call reports); the
webhook also finds the session from the assistant's metadata, so another replica can serve it.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections import OrderedDict
from typing import Any

import httpx

from backend.errors import BackendError, ErrorCode
from backend.iface import MediaInfo, ProviderCapabilities
from providers.backend import BackendProvider, ProviderConfig
from providers.retry import retry_after_details
from providers.vapi.config import VapiConfig
from providers.vapi.messages import ServerMessage, verify_secret

log = logging.getLogger(__name__)

KEEP_REPORTS = 1000
SERVER_MESSAGES = ["status-update", "transcript", "tool-calls", "end-of-call-report"]


class VapiBackendProvider(BackendProvider):
    name = "vapi"
    config_model: type[ProviderConfig] = VapiConfig

    def __init__(self, provider_config: dict[str, Any] | None = None) -> None:
        super().__init__(provider_config)
        cfg = self.cfg
        for key in ("api_key", "server_secret", "public_url"):
            if not getattr(cfg, key):
                raise BackendError(
                    "vapi.config",
                    ErrorCode.INVALID_CONFIG,
                    f"provider_config.{key}: required for the vapi backend",
                    field=f"provider_config.{key}",
                )
        self.calls: dict[str, dict[str, Any]] = {}  # session id → {"id", "control_url", ...}
        self.reports: OrderedDict[str, dict[str, Any]] = OrderedDict()

    @property
    def cfg(self) -> VapiConfig:
        return self.config  # type: ignore[return-value]

    def capabilities(self) -> ProviderCapabilities:
        return ProviderCapabilities(
            supports_stt_tts=True,
            supports_s2s=False,
            supports_multi_user=False,
            supported_codecs=["pcm16"],
            min_latency=0.5,
        )

    def _client(self) -> Any:
        from vapi import AsyncVapi

        assert self.cfg.api_key is not None
        return AsyncVapi(token=self.cfg.api_key.get_secret_value(), base_url=self.cfg.api_url)

    def _secret_headers(self) -> dict[str, str]:
        assert self.cfg.server_secret is not None
        return {"X-Vapi-Secret": self.cfg.server_secret.get_secret_value()}

    def _assistant_parts(self, session_id: str) -> dict[str, Any]:
        from vapi.types import ArtifactPlan, CustomLlmModel, Server

        cfg = self.cfg
        return {
            "model": CustomLlmModel(
                provider="custom-llm",
                url=f"{cfg.public_url}/v1/vapi/{session_id}",  # Vapi adds /chat/completions
                model=cfg.model_name,
                headers=self._secret_headers(),
            ),
            "server": Server(
                url=f"{cfg.public_url}/v1/vapi/webhook", headers=self._secret_headers()
            ),
            "server_messages": SERVER_MESSAGES,
            "max_duration_seconds": cfg.max_call_duration,
            "artifact_plan": ArtifactPlan(recording_enabled=cfg.enable_recording),
            "metadata": {"session_id": session_id},
        }

    async def open_session(self, session_id: str, user_id: str, media_base_url: str) -> MediaInfo:
        from vapi.types import AssistantOverrides, CreateAssistantDto, CreateCustomerDto

        cfg = self.cfg
        kwargs: dict[str, Any] = {"name": f"session {session_id}"}
        parts = self._assistant_parts(session_id)
        if cfg.assistant_id:
            kwargs["assistant_id"] = cfg.assistant_id
            kwargs["assistant_overrides"] = AssistantOverrides(**parts)
        else:
            kwargs["assistant"] = CreateAssistantDto(**parts)
        if cfg.phone_number_id:  # an outbound phone call to the user (an E.164 number)
            kwargs["phone_number_id"] = cfg.phone_number_id
            kwargs["customer"] = CreateCustomerDto(number=user_id)
        elif cfg.transport == "vapi.websocket":
            kwargs["transport"] = {
                "provider": "vapi.websocket",
                "audioFormat": {"format": "pcm_s16le", "container": "raw", "sampleRate": 16000},
            }
        try:
            call = await self._client().calls.create(**kwargs)
        except Exception as exc:
            raise _api_error("vapi.create_call", exc) from None
        monitor = getattr(call, "monitor", None)
        transport = getattr(call, "transport", None) or {}
        record = {
            "id": call.id,
            "control_url": getattr(monitor, "control_url", None),
            "listen_url": getattr(monitor, "listen_url", None),
            "status": str(getattr(call, "status", None) or "queued"),
        }
        self.calls[session_id] = record
        token = secrets.token_urlsafe(24)
        if socket_url := transport.get("websocketCallUrl"):
            # The client talks to this session's websocket, which relays to the call's own,
            # both ways (binary PCM and Vapi's JSON control messages such as `hangup`): the
            # session keeps the call (admission, its end) and Vapi's URL stays with us.
            return MediaInfo(
                url=f"{media_base_url}/v1/sessions/{session_id}/audio",
                token=token,
                upstream_url=socket_url,
            )
        # Other calls' media is Vapi's (a phone line, a web call): its monitor, where it has one.
        return MediaInfo(url=record["listen_url"] or f"vapi:call/{call.id}", token=token)

    async def close_session(self, session_id: str) -> None:
        record = self.calls.pop(session_id, None)
        if record is None or record.get("status") == "ended" or not record.get("control_url"):
            return
        with contextlib.suppress(httpx.HTTPError):
            async with httpx.AsyncClient(timeout=10) as http:
                await http.post(record["control_url"], json={"type": "end-call"})

    # -- what the webhook and the custom LLM need ------------------------------------------
    def verify(self, headers: dict[str, str]) -> None:
        assert self.cfg.server_secret is not None
        verify_secret(self.cfg.server_secret.get_secret_value(), headers)

    def session_for(self, msg: ServerMessage) -> str | None:
        call = msg.call
        for source in (call.get("assistant") or {}, call.get("assistantOverrides") or {}):
            sid = (source.get("metadata") or {}).get("session_id")
            if sid:
                return str(sid)
        call_id = call.get("id")
        return next((s for s, r in self.calls.items() if r["id"] == call_id), None)

    def call_ended(self, session_id: str, report: dict[str, Any]) -> None:
        if session_id in self.calls:
            self.calls[session_id]["status"] = "ended"
        self.reports[session_id] = report
        while len(self.reports) > KEEP_REPORTS:
            self.reports.popitem(last=False)

    async def check_health(self) -> dict[str, Any]:
        return {"reachable": True, "api_url": self.cfg.api_url}


def _api_error(op: str, exc: Exception) -> BackendError:
    status = getattr(exc, "status_code", None)
    code = {
        401: ErrorCode.AUTHENTICATION_FAILED,
        403: ErrorCode.AUTHORIZATION_FAILED,
        429: ErrorCode.RATE_LIMIT_EXCEEDED,
    }.get(status or 0, ErrorCode.CONNECTION_FAILED)
    if status is not None and 400 <= status < 500 and code is ErrorCode.CONNECTION_FAILED:
        code = ErrorCode.INVALID_CONFIG
    body = getattr(exc, "body", None)
    detail = body.get("message") if isinstance(body, dict) else None
    message = f"vapi refused the call ({status}): {detail or 'see server logs'}"
    if status is None:
        message = f"vapi is unreachable: {type(exc).__name__}"
    return BackendError(op, code, message, details=retry_after_details(exc, status_code=status))
