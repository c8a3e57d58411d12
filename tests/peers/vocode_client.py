"""A Vocode client, built from the real `vocode` package's websocket message models, talking to a
session the way a Vocode client SDK talks to a self-hosted `ConversationRouter`.

Runs in .venv-peers/vocode (its pins conflict with ours), started by the tests as a subprocess.
Telephony-style by default: 8 kHz G.711 mu-law both ways, encoded and decoded with Python 3.11's
own `audioop` (the reference the backend's numpy codec must match). Prints one JSON line.

    python vocode_client.py WS_URL SPEECH_16K.pcm [--linear16] [--malformed]
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
import warnings
import wave

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

import websockets
from vocode.streaming.models.audio import AudioEncoding
from vocode.streaming.models.client_backend import InputAudioConfig, OutputAudioConfig
from vocode.streaming.models.websocket import (
    AudioConfigStartMessage,
    AudioMessage,
    ReadyMessage,
    StopMessage,
    TranscriptMessage,
    WebSocketMessage,
)

TIMEOUT_S = 90.0
QUIET_S = 2.5  # the reply is over when no audio came for this long


async def main(url: str, speech_16k: bytes, linear16: bool, malformed: bool) -> dict:
    in_rate, out_rate = (16000, 24000) if linear16 else (8000, 8000)
    encoding = AudioEncoding.LINEAR16 if linear16 else AudioEncoding.MULAW
    pcm = speech_16k if in_rate == 16000 else audioop.ratecv(speech_16k, 2, 1, 16000, 8000, None)[0]
    pcm += bytes(int(in_rate * 1.5) * 2)  # trailing silence ends the turn
    payload = pcm if linear16 else audioop.lin2ulaw(pcm, 2)
    chunk = (in_rate // 50) * (2 if linear16 else 1)  # 20 ms
    result: dict = {"transcripts": [], "errors": [], "audio_messages": 0}
    reply = bytearray()

    async with websockets.connect(url) as ws:
        start = AudioConfigStartMessage(
            input_audio_config=InputAudioConfig(
                sampling_rate=in_rate, audio_encoding=encoding, chunk_size=chunk
            ),
            output_audio_config=OutputAudioConfig(sampling_rate=out_rate, audio_encoding=encoding),
            conversation_id="vocode-peer",
            subscribe_transcript=True,
        )
        await ws.send(start.json())
        first = WebSocketMessage.parse_obj(json.loads(await asyncio.wait_for(ws.recv(), 30)))
        result["ready"] = isinstance(first, ReadyMessage)
        if malformed:
            await ws.send("this is not json")
            await ws.send(json.dumps({"type": "websocket_audio", "data": "%%% not base64"}))
        for i in range(0, len(payload), chunk):
            await ws.send(AudioMessage.from_bytes(payload[i : i + chunk]).json())

        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            wait = QUIET_S if reply else deadline - time.monotonic()
            try:
                raw = json.loads(await asyncio.wait_for(ws.recv(), wait))
            except TimeoutError:
                break
            if raw.get("type") == "websocket_error":  # the backend's addition: not a vocode type
                result["errors"].append(raw)
                continue
            msg = WebSocketMessage.parse_obj(raw)
            if isinstance(msg, AudioMessage):
                result["audio_messages"] += 1
                reply += _pcm(msg.get_bytes(), linear16, out_rate)
            elif isinstance(msg, TranscriptMessage):
                result["transcripts"].append({"sender": msg.sender.value, "text": msg.text})
        await ws.send(StopMessage().json())
        try:  # after websocket_stop the server ends the conversation and closes
            await asyncio.wait_for(ws.recv(), 10)
            result["closed_after_stop"] = False
        except websockets.ConnectionClosed as closed:
            result["closed_after_stop"] = closed.code == 1000
    result["reply_s"] = len(reply) / 2 / out_rate
    result["reply_rms"] = audioop.rms(bytes(reply), 2) if reply else 0
    return result


def _pcm(data: bytes, linear16: bool, rate: int) -> bytes:
    if not linear16:
        return audioop.ulaw2lin(data, 2)
    with wave.open(io.BytesIO(data), "rb") as w:  # each linear16 chunk is a WAV file
        assert w.getframerate() == rate and w.getsampwidth() == 2, w.getparams()
        return w.readframes(w.getnframes())


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    with open(args[1], "rb") as f:
        speech = f.read()
    out = asyncio.run(main(args[0], speech, "--linear16" in sys.argv, "--malformed" in sys.argv))
    print("RESULT " + json.dumps(out))
