"""Pipecat's SmallWebRTC transport, server side: what a Pipecat client's `SmallWebRTCTransport`
(JS `@pipecat-ai/small-webrtc-transport`, or anything speaking the shape of
`pipecat.transports.smallwebrtc`) sends and expects, so it connects to a session as to a
Pipecat bot behind the development runner's `/api/offer`.

Signalling (HTTP, the runner's shapes):
  POST  {sdp, type: "offer", pc_id, restart_pc, request_data | requestData}
        → {sdp, type: "answer", pc_id}. No `pc_id`: a new call. The call's `pc_id`: a
        renegotiation of the same peer connection, or with `restart_pc` of a new one the client
        made (it gets a new `pc_id`, as from Pipecat) — the session goes on either way.
  PATCH {pc_id, candidates: [{candidate, sdp_mid, sdp_mline_index}]}: trickled ICE candidates
        (an empty `candidate` is the end-of-candidates marker).
Data channel (the one the client opens, "chat"): JSON both ways. In: RTVI messages
(`client-ready` → `bot-ready`, `disconnect-bot` → hang up), keep-alive strings `"ping: <ms>"`,
`{"type": "signalling", "message": {"type": "trackStatus", ...}}`. Out: RTVI messages for the
session's events (`rtvi.RtviEvents`, as on the websocket transport) and, when the session ends,
the signalling message `peerLeft`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from providers.messages import AudioChunk, Closed, Message
from providers.pipecat import rtvi
from providers.wire import Decoded, Outgoing, SessionMedia, WireCodec, WireFormatError

SIGNALLING_TYPE = "signalling"
MAX_CANDIDATES = 100


class SmallWebRtcOffer(BaseModel):
    """The body of a SmallWebRTC offer (pipecat's `SmallWebRTCRequest`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    sdp: str = Field(min_length=1, max_length=100_000)
    type: str = "offer"
    pc_id: str | None = Field(default=None, max_length=200)
    restart_pc: bool | None = None
    request_data: Any = Field(
        default=None, validation_alias=AliasChoices("request_data", "requestData")
    )

    def token(self) -> str:
        """The session's media token when the client put it in its request data."""
        data = self.request_data
        value = data.get("token") if isinstance(data, dict) else None
        return value if isinstance(value, str) else ""


class IceCandidate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    candidate: str = Field(max_length=1000)
    sdp_mid: str | None = Field(default=None, max_length=64)
    sdp_mline_index: int | None = Field(default=None, ge=0, le=64)


class SmallWebRtcPatch(BaseModel):
    """The body of a SmallWebRTC PATCH (pipecat's `SmallWebRTCPatchRequest`)."""

    model_config = ConfigDict(extra="forbid")
    pc_id: str = Field(min_length=1, max_length=200)
    candidates: list[IceCandidate] = Field(max_length=MAX_CANDIDATES)


def signalling(kind: str) -> dict[str, Any]:
    return {"type": SIGNALLING_TYPE, "message": {"type": kind}}


class SmallWebRtcCodec(WireCodec):
    """The data channel of one SmallWebRTC call; audio travels on the tracks, not here."""

    name = "pipecat-smallwebrtc"

    def __init__(self, media: SessionMedia) -> None:
        super().__init__(media)
        self._rtvi = rtvi.RtviEvents(media.user_id)

    def decode(self, message: bytes | str) -> Decoded:
        if isinstance(message, bytes):
            return self._error("binary data channel messages are not accepted; send JSON text")
        if message.startswith("ping"):  # the client's keep-alive, once a second
            return Decoded()
        try:
            msg = json.loads(message)
        except ValueError:
            return self._error(f"data channel message is not JSON ({len(message)} characters)")
        if isinstance(msg, dict) and msg.get("type") == SIGNALLING_TYPE:
            return self._signalling(msg.get("message"))
        try:
            replies, close = rtvi.answer(msg)
        except WireFormatError as exc:
            return self._error(f"data channel message is {exc}")
        return Decoded(replies=[json.dumps(m) for m in replies], close=close)

    def _signalling(self, message: Any) -> Decoded:
        # trackStatus (the client's mic/camera switched on or off) is accepted: a muted mic
        # already sends silence, and there is no video here.
        if isinstance(message, dict) and message.get("type") == "trackStatus":
            return Decoded()
        kind = message.get("type") if isinstance(message, dict) else None
        return self._error(f"signalling message type {kind!r} is not supported")

    def encode_audio(self, chunk: AudioChunk) -> list[Outgoing]:
        return []  # reply audio goes out on the audio track

    def encode_event(self, event: Message) -> list[Outgoing]:
        out: list[Outgoing] = [json.dumps(m) for m in self._rtvi.messages(event)]
        if isinstance(event, Closed):  # the bot left: the client's onBotDisconnected
            out.append(json.dumps(signalling("peerLeft")))
        return out

    def _error(self, text: str) -> Decoded:
        return Decoded(replies=[json.dumps(rtvi.error(f"invalid_format: {text}"))])
