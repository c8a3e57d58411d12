"""The SmallWebRTC data channel and request shapes, without a network (the e2e test drives them
with the real pipecat package: tests/e2e/test_pipecat_webrtc.py)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from providers.messages import AudioChunk, Closed, StateChanged, Transcript
from providers.pipecat.smallwebrtc import SmallWebRtcCodec, SmallWebRtcOffer, SmallWebRtcPatch
from providers.wire import SessionMedia

MEDIA = SessionMedia("s1", "alice", 16000, 16000)


def _replies(codec: SmallWebRtcCodec, message: str | bytes) -> list[dict]:
    return [json.loads(r) for r in codec.decode(message).replies]


def test_client_ready_gets_bot_ready_and_keepalives_are_silent() -> None:
    codec = SmallWebRtcCodec(MEDIA)
    ready = {"label": "rtvi-ai", "type": "client-ready", "id": "r1", "data": {"version": "1.0.0"}}
    [answer] = _replies(codec, json.dumps(ready))
    assert (answer["type"], answer["id"], answer["data"]["version"]) == ("bot-ready", "r1", "1.0.0")
    assert _replies(codec, "ping: 1732450000000") == []
    status = {"type": "trackStatus", "receiver_index": 0, "enabled": False}
    assert _replies(codec, json.dumps({"type": "signalling", "message": status})) == []
    bye = {"label": "rtvi-ai", "type": "disconnect-bot", "id": "b"}
    assert codec.decode(json.dumps(bye)).close


@pytest.mark.parametrize(
    ("message", "wanted"),
    [
        ("not json", "not JSON"),
        (b"\x00\x01", "binary"),
        (json.dumps({"type": "hello"}), "not an RTVI message"),
        (json.dumps({"type": "signalling", "message": {"type": "x"}}), "'x' is not supported"),
    ],
)
def test_malformed_messages_get_an_rtvi_error(message: str | bytes, wanted: str) -> None:
    [error] = _replies(SmallWebRtcCodec(MEDIA), message)
    assert error["label"] == "rtvi-ai" and error["type"] == "error"
    assert wanted in error["data"]["error"] and error["data"]["fatal"] is False


def test_events_become_rtvi_json_and_the_end_peer_left() -> None:
    codec = SmallWebRtcCodec(MEDIA)
    out = [json.loads(m) for m in codec.encode_event(Transcript(text="hi"))]
    assert out[0]["type"] == "user-transcription" and out[0]["data"]["user_id"] == "alice"
    speaking = codec.encode_event(StateChanged("speaking"))
    assert [json.loads(m)["type"] for m in speaking] == ["bot-started-speaking"]
    assert codec.encode_event(StateChanged("speaking")) == []  # once per change
    assert codec.encode_audio(AudioChunk(b"\x00\x00", 48000)) == []  # audio goes on the track
    end = [json.loads(m) for m in codec.encode_event(Closed("x"))]
    assert end[-1] == {"type": "signalling", "message": {"type": "peerLeft"}}


def test_request_shapes_accept_both_spellings_and_refuse_unknown_keys() -> None:
    offer = SmallWebRtcOffer.model_validate(
        {"sdp": "v=0", "type": "offer", "pc_id": None, "requestData": {"token": "t"}}
    )
    assert offer.token() == "t"
    assert SmallWebRtcOffer.model_validate({"sdp": "v=0", "request_data": {}}).token() == ""
    with pytest.raises(ValidationError):
        SmallWebRtcOffer.model_validate({"sdp": "v=0", "surprise": 1})
    patch = SmallWebRtcPatch.model_validate(
        {"pc_id": "p", "candidates": [{"candidate": "", "sdp_mid": "0", "sdp_mline_index": 0}]}
    )
    assert patch.candidates[0].sdp_mid == "0"
