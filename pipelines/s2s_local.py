"""The embedded speech-to-speech model: the local VAD, STT, agent and TTS composed behind the s2s
interface, so `pipeline_type="s2s"` works offline exactly as it will with OpenAI Realtime.

Inside, an `SttTtsPipeline` does the work with its own turn detection — the "server-side VAD"
of this model, including barge-in and backchannels — and its outbox is translated into s2s
events. Its audio is not paced here (a model streams faster than real time); the session paces
it, and tells this model on interruption how much was heard.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from backend.iface import PipelineState
from pipelines.endpointing import EndpointingConfig
from pipelines.outbox import Outbox
from pipelines.stt_tts import PipelineSettings, SttTtsPipeline
from providers.agents.echo import EchoAgent
from providers.base import (
    S2S,
    STT,
    TTS,
    VAD,
    AgentContext,
    S2sCapabilities,
    S2sEvent,
    S2sOptions,
    S2sSession,
)
from providers.messages import (
    AgentText,
    AudioChunk,
    ErrorEvent,
    Interruption,
    Metrics,
    SpeechEnded,
    SpeechStarted,
    Transcript,
)
from providers.registry import STT_PROVIDERS, TTS_PROVIDERS, VAD_PROVIDERS

_RATE_HZ = 16000
_UNPACED_S = 3600.0  # playout lead that never makes the inner pipeline wait


class LocalS2S(S2S):
    name = "local"
    placement = "session"  # it loads its own recogniser: isolated, as its own process
    cpu_cores_per_call = 0.25
    capabilities = S2sCapabilities(sample_rate_hz=_RATE_HZ, server_turn_detection=True)

    def __init__(
        self,
        stt: str = "pocketsphinx",
        tts: str = "espeak",
        vad: str = "silero",
        stage_options: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        options = stage_options or {}
        self._stt: STT = STT_PROVIDERS.create(stt, **options.get(stt, {}))
        self._tts: TTS = TTS_PROVIDERS.create(tts, **options.get(tts, {}))
        self._vad_name = vad

    async def connect(self, options: S2sOptions) -> S2sSession:
        return LocalS2sSession(VAD_PROVIDERS.create(self._vad_name), self._stt, self._tts, options)


class LocalS2sSession(S2sSession):
    def __init__(self, vad: VAD, stt: STT, tts: TTS, options: S2sOptions) -> None:
        self.outbox = Outbox()
        history = [{"role": role, "content": text} for role, text in options.history]
        self.ctx = AgentContext(session_id="local-s2s", user_id="", history=history)
        self.pipeline = SttTtsPipeline(
            vad=vad,
            stt=stt,
            tts=tts,
            agent=options.agent or EchoAgent(),
            agent_context=self.ctx,
            outbox=self.outbox,
            settings=PipelineSettings(
                output_sample_rate_hz=_RATE_HZ,
                endpointing=EndpointingConfig(min_silence_s=options.min_silence_s),
                playout_lead_s=_UNPACED_S,
            ),
            on_state=self._on_state,
        )
        self.pipeline.start()
        self._responding = False

    def _on_state(self, state: PipelineState) -> None:
        if state is PipelineState.SPEAKING:
            self._responding = True

    async def send_audio(self, pcm16: bytes) -> None:
        self.pipeline.on_audio(np.frombuffer(pcm16, dtype="<i2"))

    async def events(self) -> AsyncIterator[S2sEvent]:
        response_id = ""
        while True:
            out = await self.outbox.poll(timeout_s=30)
            for item in out["items"]:
                match item:
                    case AudioChunk():
                        yield S2sEvent("audio", audio=item.pcm16, response_id=response_id)
                    case SpeechStarted() if not self._responding:
                        yield S2sEvent("speech_started")
                    case Interruption():  # a barge-in, decided by this model's turn detection
                        self._responding = False
                        yield S2sEvent("speech_started")
                    case SpeechEnded():
                        yield S2sEvent("speech_stopped")
                    case Transcript(text=text) if text:
                        response_id = f"resp-{item.turn_id}"
                        yield S2sEvent("user_transcript", text=text)
                    case AgentText(text=text):
                        yield S2sEvent("agent_transcript", text=text + " ", response_id=response_id)
                    case Metrics(values=values) if not values.get("interrupted"):
                        self._responding = False
                        yield S2sEvent("response_done", response_id=response_id)
                    case ErrorEvent(code=code, message=message):
                        yield S2sEvent("error", code=code, message=message)
            if out["closed"]:
                return

    async def interrupt(self, played_ms: int) -> None:
        self.pipeline.truncate_last_reply(played_ms / 1000)

    async def aclose(self) -> None:
        self.outbox.close()
        with contextlib.suppress(Exception):
            await self.pipeline.aclose()
