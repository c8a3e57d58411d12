"""The "model" behind the Realtime fake (`tests/fakes/openai_realtime.py`): server VAD on the
input audio buffer (Silero + the pipeline's endpointing state machine, as `server_vad` with
`threshold` and `silence_duration_ms`), commit of the user's turn, its transcript (PocketSphinx),
and responses spoken by espeak-ng, streamed as the Realtime API streams them."""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import numpy as np

from pipelines.audio import FrameSlicer
from pipelines.endpointing import EndpointingConfig, TurnDetector, TurnEvent
from pipelines.sentences import SentenceAggregator
from providers.resample import StreamResampler

RATE = 24000
CHUNK_MS = 100


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


class RealtimeModel:
    """Mixed into the fake's connection, which provides `send`, `spawn`, `_add_item` and the
    state below."""

    fake: Any
    session: dict[str, Any]
    items: dict[str, dict[str, Any]]
    buffer: bytearray
    audio_ms: float
    speech_item: str
    last_item: str
    response: dict[str, Any] | None

    async def send(self, event: dict[str, Any]) -> None: ...

    async def error(self, kind: str, code: str | None, message: str) -> None: ...

    def spawn(self, coro: Any) -> None: ...

    async def _add_item(self, item: dict[str, Any]) -> None: ...

    # -- server VAD ------------------------------------------------------------------------
    def _vad_setup(self) -> None:
        from providers.vad.silero import SileroVAD

        turn = self.session["audio"]["input"].get("turn_detection") or {}
        self.turn = turn
        eagerness = {"low": 800, "high": 250}.get(turn.get("eagerness", "auto"), 500)
        silence = turn.get("silence_duration_ms", eagerness) / 1000
        threshold = turn.get("threshold", 0.5)
        if not hasattr(self, "vad"):
            self.vad = SileroVAD()
            self.to16k = StreamResampler(RATE, 16000)
            self.slicer = FrameSlicer(self.vad.frame_samples)
        self.detector = TurnDetector(
            EndpointingConfig(
                activation_threshold=threshold,
                deactivation_threshold=max(threshold - 0.15, 0.05),
                min_silence_s=silence,
            )
        )

    async def _on_audio(self, pcm: bytes) -> None:
        self.buffer += pcm
        self.audio_ms += len(pcm) / 2 / RATE * 1000
        if not self.turn:
            return
        samples = self.to16k.process(np.frombuffer(pcm, dtype="<i2"))
        for frame in self.slicer.push(samples):
            event = self.detector.update(
                self.vad.speech_probability(frame.tobytes()), frame.size / 16000
            )
            if event is TurnEvent.SPEECH_STARTED:
                self.speech_item = _id("item")
                start_ms = max(0, int(self.audio_ms - self.detector.speech_s * 1000) - 300)
                await self.send(
                    {
                        "type": "input_audio_buffer.speech_started",
                        "audio_start_ms": start_ms,
                        "item_id": self.speech_item,
                    }
                )
                if self.turn.get("interrupt_response", True) and self.response is not None:
                    self.response["cancel"] = self.response["cancel"] or "turn_detected"
            elif event is TurnEvent.SPEECH_ENDED:
                await self.send(
                    {
                        "type": "input_audio_buffer.speech_stopped",
                        "audio_end_ms": int(self.audio_ms),
                        "item_id": self.speech_item,
                    }
                )
                await self._commit(self.speech_item)

    async def _commit(self, item_id: str = "") -> None:
        audio, self.buffer = bytes(self.buffer), bytearray()
        item_id = item_id or _id("item")
        await self.send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": self.last_item or None,
                "item_id": item_id,
            }
        )
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await self._add_item(item)
        transcript: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.spawn(self._transcribe(item, audio, transcript))
        if self.turn and self.turn.get("create_response", True):
            self.spawn(self._respond_after(transcript))

    async def _transcribe(self, item: dict[str, Any], audio: bytes, out: asyncio.Future) -> None:
        text = await self.fake.transcribe(audio)
        item["content"][0]["transcript"] = text
        out.set_result(text)
        if self.session["audio"]["input"].get("transcription"):
            await self.send(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item["id"],
                    "content_index": 0,
                    "transcript": text,
                    "usage": {"type": "duration", "seconds": round(len(audio) / 2 / RATE, 3)},
                }
            )

    async def _respond_after(self, transcript: asyncio.Future) -> None:
        await self._respond(await transcript)

    # -- responses -------------------------------------------------------------------------
    async def _respond(self, transcript: str) -> None:
        if self.fake.inject_error is not None:
            err, self.fake.inject_error = self.fake.inject_error, None
            await self.error(err["type"], err.get("code"), err["message"])
            return
        while self.response is not None:  # one response at a time in the default conversation
            await asyncio.sleep(0.01)
        rid, item_id = _id("resp"), _id("item")
        self.response = state = {"id": rid, "cancel": ""}
        output = self.session["audio"]["output"]
        response = {
            "id": rid,
            "object": "realtime.response",
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "conversation_id": "conv_fake",
            "output_modalities": ["audio"],
            "audio": {"output": {"format": output["format"], "voice": output["voice"]}},
            "usage": None,
            "metadata": None,
        }
        await self.send({"type": "response.created", "response": response})
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
            "_audio_ms": 0.0,
        }
        where = {"response_id": rid, "item_id": item_id, "output_index": 0}
        await self.send(
            {"type": "response.output_item.added", **_less(where, "item_id"), "item": _public(item)}
        )
        await self._add_item(item)
        part = {"type": "output_audio", "transcript": ""}
        await self.send(
            {"type": "response.content_part.added", **where, "content_index": 0, "part": part}
        )
        said: list[str] = []
        sentences = SentenceAggregator()
        for sentence in [*sentences.push(self.fake.reply(transcript)), *sentences.flush()]:
            if state["cancel"]:
                break
            said.append(sentence)
            delta = {**where, "content_index": 0}
            await self.send(
                {"type": "response.output_audio_transcript.delta", **delta, "delta": sentence + " "}
            )
            pcm = await self.fake.speak(sentence)
            step = RATE * 2 * CHUNK_MS // 1000
            for i in range(0, len(pcm), step):
                if state["cancel"]:
                    break
                chunk = pcm[i : i + step]
                item["_audio_ms"] += len(chunk) / 2 / RATE * 1000
                audio = base64.b64encode(chunk).decode()
                await self.send({"type": "response.output_audio.delta", **delta, "delta": audio})
                await asyncio.sleep(CHUNK_MS / 1000 / self.fake.pace)
        text = " ".join(said)
        part["transcript"] = text
        item["content"] = [part]
        item["status"] = "incomplete" if state["cancel"] else "completed"
        if not state["cancel"]:
            await self.send({"type": "response.output_audio.done", **where, "content_index": 0})
            await self.send(
                {
                    "type": "response.output_audio_transcript.done",
                    **where,
                    "content_index": 0,
                    "transcript": text,
                }
            )
            await self.send(
                {"type": "response.content_part.done", **where, "content_index": 0, "part": part}
            )
        await self.send(
            {"type": "response.output_item.done", **_less(where, "item_id"), "item": _public(item)}
        )
        await self.send(
            {"type": "conversation.item.done", "previous_item_id": None, "item": _public(item)}
        )
        response["status"] = "cancelled" if state["cancel"] else "completed"
        if state["cancel"]:
            response["status_details"] = {"type": "cancelled", "reason": state["cancel"]}
        response["output"] = [_public(item)]
        self.response = None
        await self.send({"type": "response.done", "response": response})


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if not k.startswith("_")}


def _less(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}
