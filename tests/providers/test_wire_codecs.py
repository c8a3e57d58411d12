"""The Pipecat and Vocode wire codecs as pure translations (no Ray, no server): what a client's
message becomes for the session, and what a session event becomes on the client's wire."""

from __future__ import annotations

import base64
import io
import json
import warnings
import wave

import numpy as np
import pytest

from backend.wav import wav_bytes
from providers.messages import (
    AgentText,
    AudioChunk,
    Backchannel,
    ErrorEvent,
    Interruption,
    StateChanged,
    Transcript,
)
from providers.pipecat import frames as pb
from providers.pipecat.serializer import PipecatCodec
from providers.vocode.protocol import VocodeCodec
from providers.wire import SessionMedia, mulaw_decode, mulaw_encode

MEDIA = SessionMedia("s1", "user-1", sample_rate_hz=16000, output_sample_rate_hz=24000)


def tone(rate: int, seconds: float, channels: int = 1) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    mono = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    return np.repeat(mono, channels).tobytes()


# -- G.711 mu-law against the reference ------------------------------------------------------
def test_mulaw_matches_audioop_on_every_value() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # the reference, in Python < 3.13
    every_sample = np.arange(-32768, 32768, dtype="<i2").tobytes()
    assert mulaw_encode(every_sample) == audioop.lin2ulaw(every_sample, 2)
    assert mulaw_decode(bytes(range(256))) == audioop.ulaw2lin(bytes(range(256)), 2)


# -- Pipecat ---------------------------------------------------------------------------------
def rtvi_of(outgoing: list) -> list[dict]:
    msgs = []
    for raw in outgoing:
        frame = pb.Frame.FromString(raw)
        if frame.WhichOneof("frame") == "message":
            msgs.append(json.loads(frame.message.data))
    return msgs


def test_pipecat_audio_in_any_rate_and_wav_wrapping_reaches_the_session_at_its_rate() -> None:
    codec = PipecatCodec(MEDIA)
    frame = pb.Frame()
    frame.audio.audio = wav_bytes(tone(48000, 0.5), 48000)  # as Pipecat's Python client sends
    frame.audio.sample_rate, frame.audio.num_channels = 48000, 1
    got = codec.decode(frame.SerializeToString())
    assert not got.replies and len(got.audio) == 1
    assert abs(len(got.audio[0]) / 2 - 8000) < 400  # ~0.5 s at 16 kHz (soxr holds a little back)

    stereo = pb.Frame()
    stereo.audio.audio, stereo.audio.sample_rate = tone(16000, 0.2, channels=2), 16000
    stereo.audio.num_channels = 2
    (mono,) = codec.decode(stereo.SerializeToString()).audio
    assert len(mono) == 16000 * 0.2 * 2  # downmixed, no resampling at the session's rate


@pytest.mark.parametrize(
    ("message", "wanted"),
    [
        (b"\xff\x00garbage", "not a protobuf pipecat.Frame"),
        ("text", "text websocket messages are not Pipecat frames"),
        (b"", "empty pipecat.Frame"),
    ],
)
def test_pipecat_malformed_input_is_an_rtvi_error(message: bytes | str, wanted: str) -> None:
    got = PipecatCodec(MEDIA).decode(message)
    (err,) = rtvi_of(got.replies)
    assert err["type"] == "error" and wanted in err["data"]["error"]
    assert err["data"]["fatal"] is False and not got.audio


def test_pipecat_audio_frame_without_rate_or_whole_samples_is_an_error() -> None:
    codec = PipecatCodec(MEDIA)
    no_rate = pb.Frame()
    no_rate.audio.audio = b"\x00\x01" * 10
    odd = pb.Frame()
    odd.audio.audio, odd.audio.sample_rate = b"\x00\x01\x02", 16000
    errors = [rtvi_of(codec.decode(f.SerializeToString()).replies)[0] for f in (no_rate, odd)]
    assert "no sample_rate" in errors[0]["data"]["error"]
    assert "not whole 16-bit samples" in errors[1]["data"]["error"]


def test_pipecat_rtvi_handshake_and_disconnect() -> None:
    codec = PipecatCodec(MEDIA)

    def message(msg: dict) -> bytes:
        frame = pb.Frame()
        frame.message.data = json.dumps({"label": "rtvi-ai", **msg})
        return frame.SerializeToString()

    (ready,) = rtvi_of(
        codec.decode(
            message({"type": "client-ready", "id": "7", "data": {"version": "1.0.0"}})
        ).replies
    )
    assert ready == {
        "label": "rtvi-ai",
        "type": "bot-ready",
        "id": "7",
        "data": {"version": "1.0.0", "about": ready["data"]["about"]},
    }
    (unsupported,) = rtvi_of(codec.decode(message({"type": "send-text", "id": "8"})).replies)
    assert unsupported["type"] == "error-response" and unsupported["id"] == "8"
    assert codec.decode(message({"type": "disconnect-bot", "id": "9"})).close


def test_pipecat_session_events_become_frames_and_rtvi() -> None:
    codec = PipecatCodec(MEDIA)
    (audio,) = codec.encode_audio(AudioChunk(b"\x01\x00" * 240, 24000))
    f = pb.Frame.FromString(audio).audio
    assert (f.sample_rate, f.num_channels, len(f.audio)) == (24000, 1, 480)

    out = codec.encode_event(Transcript(text="hello world", final=True))
    t = pb.Frame.FromString(out[0]).transcription
    assert (t.text, t.user_id) == ("hello world", "user-1") and t.timestamp
    assert rtvi_of(out)[0]["data"]["text"] == "hello world"

    speaking = codec.encode_event(StateChanged("speaking"))
    assert [m["type"] for m in rtvi_of(speaking)] == ["bot-started-speaking"]
    assert codec.encode_event(StateChanged("speaking")) == []

    interrupted = codec.encode_event(Interruption(played_ms=300))
    assert pb.Frame.FromString(interrupted[0]).WhichOneof("frame") == "interruption"
    assert [m["type"] for m in rtvi_of(interrupted)] == ["bot-interrupted", "bot-stopped-speaking"]
    assert codec.encode_event(StateChanged("listening")) == []  # said already

    (err,) = rtvi_of(codec.encode_event(ErrorEvent(code="x", message="boom")))
    assert err["data"] == {"error": "boom", "fatal": False}
    (other,) = rtvi_of(codec.encode_event(Backchannel(2)))
    assert other["type"] == "server-message" and other["data"]["type"] == "backchannel"


# -- Vocode ----------------------------------------------------------------------------------
def start(codec: VocodeCodec, encoding: str, in_rate: int, out_rate: int, **extra: object) -> list:
    msg = {
        "type": "websocket_audio_config_start",
        "input_audio_config": {
            "sampling_rate": in_rate,
            "audio_encoding": encoding,
            "chunk_size": 160,
        },
        "output_audio_config": {"sampling_rate": out_rate, "audio_encoding": encoding},
        **extra,
    }
    return codec.decode(json.dumps(msg)).replies


def audio_msg(data: bytes) -> str:
    return json.dumps({"type": "websocket_audio", "data": base64.b64encode(data).decode()})


def test_vocode_telephony_mulaw_in_and_out() -> None:
    codec = VocodeCodec(MEDIA)
    assert start(codec, "mulaw", 8000, 8000) == ['{"type": "websocket_ready"}']
    got = codec.decode(audio_msg(mulaw_encode(tone(8000, 0.5))))
    # 8 kHz mu-law → 16 kHz PCM16: 0.5 s less what the resampler holds back (< 0.1 s)
    assert 0.4 <= len(got.audio[0]) / 2 / 16000 <= 0.5
    (out,) = codec.encode_audio(AudioChunk(tone(24000, 0.5), 24000))
    (tail,) = codec.encode_event(StateChanged("listening"))  # end of the reply
    payload = b"".join(base64.b64decode(json.loads(m)["data"]) for m in (out, tail))
    assert len(payload) == 4000  # 24 kHz PCM16 → 8 kHz mu-law, one byte per sample, all of it


def test_vocode_linear16_replies_are_wav_chunks_and_transcripts_follow_subscription() -> None:
    codec = VocodeCodec(MEDIA)
    start(codec, "linear16", 16000, 24000, subscribe_transcript=True)
    (out,) = codec.encode_audio(AudioChunk(tone(24000, 0.1), 24000))
    with wave.open(io.BytesIO(base64.b64decode(json.loads(out)["data"]))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (24000, 1, 2400)
    (human,) = codec.encode_event(Transcript(text="hello world"))
    assert json.loads(human)["sender"] == "human"
    (bot,) = codec.encode_event(AgentText(text="You said: hello world"))
    assert json.loads(bot) | {"timestamp": 0} == {
        "type": "websocket_transcript",
        "text": "You said: hello world",
        "sender": "bot",
        "timestamp": 0,
    }
    unsubscribed = VocodeCodec(MEDIA)
    start(unsubscribed, "linear16", 16000, 16000)
    assert unsubscribed.encode_event(Transcript(text="hello")) == []


@pytest.mark.parametrize(
    ("messages", "wanted"),
    [
        (["not json"], "must be JSON"),
        ([audio_msg(b"\x00\x00")], "before any audio"),
        (['{"type": "websocket_audio_config_start"}'], "input_audio_config"),
        (['{"type": "websocket_surprise"}'], "unknown message type 'websocket_surprise'"),
    ],
)
def test_vocode_malformed_messages_are_errors(messages: list[str], wanted: str) -> None:
    codec = VocodeCodec(MEDIA)
    (reply,) = codec.decode(messages[0]).replies
    err = json.loads(reply)
    assert err["type"] == "websocket_error" and err["code"] == "invalid_format"
    assert wanted in err["message"]


def test_vocode_rejects_unsupported_rate_and_bad_audio_after_start() -> None:
    codec = VocodeCodec(MEDIA)
    (bad_rate,) = start(codec, "linear16", 12345, 16000)
    assert "12345" in json.loads(bad_rate)["message"]
    start(codec, "linear16", 16000, 16000)
    (odd,) = codec.decode(audio_msg(b"\x00\x01\x02")).replies
    assert "odd byte count" in json.loads(odd)["message"]
    assert codec.decode('{"type": "websocket_stop"}').close
