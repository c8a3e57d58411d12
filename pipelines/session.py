"""`SessionRuntime`: one voice session's logic as a plain class — no Ray, unit-testable.

It owns the inbound resampler, the turn pipeline, the outbox and the session's state. The Ray
actor (`actors/session_actor.py`) only wraps it and supplies stage proxies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from opentelemetry.trace import Tracer

from backend.errors import BackendError, ErrorCode
from backend.iface import PipelineState
from pipelines.audio import PIPELINE_RATE_HZ, decode_frame
from pipelines.outbox import Outbox
from pipelines.s2s import S2sPipeline
from pipelines.stt_tts import PipelineSettings, SttTtsPipeline
from pipelines.turn_metrics import TurnTimings
from providers.base import (
    S2S,
    STT,
    TTS,
    VAD,
    Agent,
    AgentContext,
    S2sOptions,
    TurnDetection,
)
from providers.messages import AudioChunk, Closed, ErrorEvent, StateChanged
from providers.resample import StreamResampler

log = logging.getLogger(__name__)


class SessionRuntime:
    def __init__(
        self,
        *,
        session_id: str,
        user_id: str,
        input_sample_rate_hz: int,
        settings: PipelineSettings,
        agent: Agent,
        vad: VAD | None = None,
        stt: STT | None = None,
        tts: TTS | None = None,
        s2s: S2S | None = None,
        s2s_options: S2sOptions | None = None,
        metadata: dict[str, Any] | None = None,
        turn_detection: TurnDetection | None = None,
        tracer: Tracer | None = None,
        trace_attributes: dict[str, Any] | None = None,
        on_turn: Callable[[TurnTimings], None] | None = None,
    ) -> None:
        self.session_id = session_id
        self.user_id = user_id
        self.input_sample_rate_hz = input_sample_rate_hz
        self.settings = settings
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.state = PipelineState.IDLE
        self.created_at = time.time()
        self.outbox = Outbox()
        self.audio_bytes_in = 0
        self.bad_frames = 0
        self._resampler = StreamResampler(input_sample_rate_hz, PIPELINE_RATE_HZ)
        self.ctx = AgentContext(session_id=session_id, user_id=user_id, metadata=self.metadata)
        self.pipeline: SttTtsPipeline | S2sPipeline
        if s2s is not None:  # speech-to-speech: one model does the turn
            self.pipeline = S2sPipeline(
                s2s=s2s,
                options=replace(s2s_options or S2sOptions(), agent=agent),
                agent_context=self.ctx,
                outbox=self.outbox,
                settings=settings,
                on_state=self._set_state,
                on_turn=self._turn_done,
            )
        else:
            if vad is None or stt is None or tts is None:
                raise ValueError("an stt_tts session needs vad, stt and tts")
            self.pipeline = SttTtsPipeline(
                vad=vad,
                stt=stt,
                tts=tts,
                agent=agent,
                agent_context=self.ctx,
                outbox=self.outbox,
                settings=settings,
                on_state=self._set_state,
                turn_detection=turn_detection,
                on_turn=self._turn_done,
            )
        self._tracer = tracer
        self._trace_attributes = {"session.id": session_id, **(trace_attributes or {})}
        self._on_turn = on_turn
        self._started = False
        self.outbox.put_event(StateChanged(self.state.value))

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Begin listening (idempotent): on media attach, first audio or an explicit start."""
        if self.state is PipelineState.CLOSED:
            raise BackendError(
                "session.start",
                ErrorCode.SESSION_NOT_ACTIVE,
                f"session {self.session_id} is closed",
            )
        if not self._started:
            self._started = True
            self.pipeline.start()
            self._set_state(PipelineState.LISTENING)

    async def aclose(self, reason: str = "closed") -> None:
        if self.state is PipelineState.CLOSED:
            return
        self._set_state(PipelineState.CLOSED)
        self.outbox.put_event(Closed(reason))
        self.outbox.close()
        await self.pipeline.aclose()
        try:
            await self.pipeline.agent.aclose()
        except Exception:  # closing must not fail on a user agent's cleanup
            log.exception("session %s: agent cleanup failed", self.session_id)

    def _turn_done(self, turn: TurnTimings) -> None:
        if self._tracer is not None:
            turn.record_trace(self._tracer, self._trace_attributes)
        if self._on_turn is not None:
            self._on_turn(turn)

    def _set_state(self, state: PipelineState) -> None:
        if state is self.state or self.state is PipelineState.CLOSED:
            return
        self.state = state
        self.outbox.put_event(StateChanged(state.value))

    # -- media -----------------------------------------------------------------------------
    def push_audio(self, frames: list[bytes]) -> list[dict[str, Any]]:
        """Feed client frames in order. A bad frame becomes an `error` event (also returned)
        and is skipped; the frames after it are still processed."""
        self._ensure_open("session.push_audio")
        self.start()
        errors: list[dict[str, Any]] = []
        for data in frames:
            try:
                samples = decode_frame(data, self.input_sample_rate_hz)
            except BackendError as exc:
                self.bad_frames += 1
                event = ErrorEvent.of(exc)
                self.outbox.put_event(event)
                errors.append(event.to_wire())
                continue
            self.audio_bytes_in += len(data)
            self.pipeline.on_audio(self._resampler.process(samples))
        return errors

    def send_audio(self, pcm16: bytes) -> None:
        """Queue audio for the client as-is (at the session's output rate)."""
        self._ensure_open("session.send_audio")
        decode_frame(pcm16, self.settings.output_sample_rate_hz, max_seconds=60.0)
        self.outbox.put_audio(AudioChunk(bytes(pcm16), self.settings.output_sample_rate_hz))

    def set_agent(self, agent: Agent) -> None:
        self.pipeline.agent = agent

    def update_metadata(self, values: dict[str, Any]) -> dict[str, Any]:
        self.metadata.update(values)
        return dict(self.metadata)

    def info(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "state": self.state.value,
            "turns_completed": self.pipeline.turns_completed,
            "interruptions": self.pipeline.interruptions,
            "audio_bytes_in": self.audio_bytes_in,
            "audio_bytes_out": self.outbox.audio_bytes_out,
            "bad_frames": self.bad_frames,
            "metadata": dict(self.metadata),
            "history": list(self.ctx.history),
        }

    def _ensure_open(self, op: str) -> None:
        if self.state is PipelineState.CLOSED:
            raise BackendError(
                op, ErrorCode.SESSION_NOT_ACTIVE, f"session {self.session_id} is closed"
            )
