"""The speech-to-speech turn loop: user audio streams to one model, its answer streams back.

The model detects turns itself (its server-side VAD); this side only relays its decisions as
events, plays the answer out paced (`pipelines.playout`), and on the model's `speech_started`
during a reply — a barge-in — silences the reply within one frame and tells the model how much
of it the user heard, so the model's conversation is truncated where the user stopped hearing.

Three tasks: the sender (user audio to the model, in ~100 ms batches), the receiver (model
events, handled at once), and the player (reply audio, paced). Control never waits behind audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from backend.errors import BackendError, ErrorCode, as_backend_error
from backend.iface import PipelineState
from pipelines.audio import PIPELINE_RATE_HZ
from pipelines.outbox import Outbox
from pipelines.playout import Playout, Segment, heard_text
from pipelines.stt_tts import STT_BATCH_S, PipelineSettings
from pipelines.turn_loop import TurnLoop
from pipelines.turn_metrics import TurnTimings
from providers.base import S2S, AgentContext, S2sEvent, S2sOptions, S2sSession
from providers.messages import AgentReply, AgentText, SpeechEnded, SpeechStarted, Transcript
from providers.resample import StreamResampler

log = logging.getLogger(__name__)

_END = object()  # player queue marker: the current response is complete


class S2sPipeline(TurnLoop):
    def __init__(
        self,
        *,
        s2s: S2S,
        options: S2sOptions,
        agent_context: AgentContext,
        outbox: Outbox,
        settings: PipelineSettings,
        on_state: Callable[[PipelineState], None],
        on_turn: Callable[[TurnTimings], None] | None = None,
    ) -> None:
        super().__init__()
        self.s2s = s2s
        self.options = options
        self.agent: Any = options.agent  # kept for `set_agent`; the model decides what to say
        self.ctx = agent_context
        self.outbox = outbox
        self.settings = settings
        self.latency_target_s = settings.latency_target_s
        self._on_state = on_state
        self._on_turn = on_turn
        rate = s2s.capabilities.sample_rate_hz
        self._to_model = StreamResampler(PIPELINE_RATE_HZ, rate)
        self._from_model_rate = rate
        self._batch = bytearray()
        self._batch_bytes = int(rate * STT_BATCH_S) * 2
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self._playback: asyncio.Queue[Any] = asyncio.Queue()
        self._session: S2sSession | None = None
        self._connected = asyncio.Event()
        self._turn_counter = 0
        self._turn: TurnTimings | None = None
        self._reply_text: list[str] = []
        self._segments: list[Segment] = []  # reply text on the clock of the audio received
        self._received_s = 0.0
        self._playout: Playout | None = None
        self._responding = False
        self._response_id = ""
        self._cancelled: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._receive(), name="s2s-receiver"),
            asyncio.create_task(self._send(), name="s2s-sender"),
            asyncio.create_task(self._play(), name="s2s-player"),
        ]

    async def aclose(self) -> None:
        await super().aclose()
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.aclose()

    # -- user audio (caller's task) --------------------------------------------------------
    def on_audio(self, samples: np.ndarray) -> None:
        self._batch += self._to_model.process(samples).tobytes()
        if len(self._batch) >= self._batch_bytes:
            self._outgoing.put_nowait(bytes(self._batch))
            self._batch.clear()

    async def _send(self) -> None:
        await self._connected.wait()
        assert self._session is not None
        while True:
            pcm = await self._outgoing.get()
            try:
                await self._session.send_audio(pcm)
            except Exception as exc:
                self._report(as_backend_error("s2s.send_audio", exc))

    # -- model events ----------------------------------------------------------------------
    async def _receive(self) -> None:
        try:
            self._session = await self.s2s.connect(self.options)
        except Exception as exc:
            self._report(as_backend_error("s2s.connect", exc))
            return
        self._connected.set()
        try:
            async with contextlib.aclosing(self._session.events()) as events:
                async for event in events:
                    await self._handle(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._report(as_backend_error("s2s.events", exc))

    async def _handle(self, ev: S2sEvent) -> None:
        now = time.monotonic()
        if ev.response_id and ev.response_id in self._cancelled:
            return  # the rest of a reply the user interrupted, already in flight
        if ev.response_id and ev.kind in ("audio", "agent_transcript"):
            self._response_id = ev.response_id
        if ev.kind == "speech_started":
            if self._responding:
                await self._interrupt()
            self._turn_counter += 1
            self._turn = TurnTimings(turn_id=self._turn_counter)
            self._reply_text = []
            self._segments, self._received_s = [], 0.0
            self._on_state(PipelineState.LISTENING)
            self.outbox.put_event(SpeechStarted(self._turn_counter))
        elif ev.kind == "speech_stopped":
            turn = self._current_turn()
            turn.end_of_speech = turn.end_of_turn = now
            self._on_state(PipelineState.PROCESSING)
            self.outbox.put_event(SpeechEnded(turn.turn_id))
        elif ev.kind == "user_transcript":
            turn = self._current_turn()
            turn.transcript, turn.text = now, ev.text.strip()
            self.ctx.history.append({"role": "user", "content": turn.text})
            self.outbox.put_event(Transcript(turn_id=turn.turn_id, text=turn.text))
        elif ev.kind == "agent_transcript":
            turn = self._current_turn()
            turn.agent_first_token = turn.agent_first_token or now
            self._reply_text.append(ev.text)
            if self._segments and self._segments[-1].end_s is None:
                self._segments[-1].end_s = self._received_s
            self._segments.append(Segment(ev.text, self._received_s))
            self.outbox.put_event(AgentText(turn_id=turn.turn_id, text=ev.text))
        elif ev.kind == "audio":
            turn = self._current_turn()
            turn.tts_first_byte = turn.tts_first_byte or now
            self._received_s += len(ev.audio) / 2 / self._from_model_rate
            if not self._responding:
                self._responding = True
                self._on_state(PipelineState.SPEAKING)
            self._playback.put_nowait(ev.audio)
        elif ev.kind == "response_done":
            if self._responding:
                self._playback.put_nowait(_END)
            else:
                self._finish_response(self._current_turn())
        elif ev.kind == "error":
            code = ev.code if ev.code in ErrorCode.__members__.values() else "pipeline_error"
            self._report(BackendError("s2s", code, ev.message or "model error"))

    def _current_turn(self) -> TurnTimings:
        if self._turn is None:  # the model answered without a user turn (e.g. a greeting)
            self._turn_counter += 1
            self._turn = TurnTimings(turn_id=self._turn_counter)
        return self._turn

    async def _interrupt(self) -> None:
        """Barge-in: drop queued reply audio here and in the transport, tell the model where
        the user stopped hearing, keep only that in the history."""
        turn = self._current_turn()
        playout = self._playout
        heard_s = playout.interrupt() if playout is not None else 0.0
        while not self._playback.empty():
            self._playback.get_nowait()
        self._responding = False
        self._playout = None
        if self._response_id:
            self._cancelled.add(self._response_id)
        heard = heard_text(self._segments, heard_s, self._received_s)
        self._announce_interruption(turn, heard_s, heard)
        if turn.heard_text:
            self.ctx.history.append({"role": "assistant", "content": turn.heard_text})
        self._emit_metrics(turn)
        if self._session is not None:
            try:
                await self._session.interrupt(int(heard_s * 1000))
            except Exception as exc:
                self._report(as_backend_error("s2s.interrupt", exc))

    # -- reply audio, paced ----------------------------------------------------------------
    async def _play(self) -> None:
        resampler: StreamResampler | None = None
        while True:
            item = await self._playback.get()
            turn = self._current_turn()
            if item is _END:
                if self._playout is not None:
                    await self._playout.finish()
                resampler = None
                self._finish_response(turn)
                continue
            if self._playout is None:
                self._playout = Playout(
                    self.outbox,
                    self.settings.output_sample_rate_hz,
                    lead_s=self.settings.playout_lead_s,
                    turn_id=turn.turn_id,
                )
                resampler = StreamResampler(
                    self._from_model_rate, self.settings.output_sample_rate_hz
                )
            assert resampler is not None
            pcm = resampler.process(np.frombuffer(item, dtype="<i2")).tobytes()
            await self._playout.play(pcm)
            if self._playout is not None and self._playout.sent_s and not turn.first_audio:
                turn.first_audio = time.monotonic()

    def _finish_response(self, turn: TurnTimings) -> None:
        reply = "".join(self._reply_text).strip()
        self._segments, self._received_s = [], 0.0
        self._responding = False
        self._playout = None
        if turn.interrupted_at:
            return  # already accounted for by the interruption
        turn.agent_reply = turn.done = time.monotonic()
        if reply:
            self.ctx.history.append({"role": "assistant", "content": reply})
        self.outbox.put_event(AgentReply(turn_id=turn.turn_id, text=reply))
        self._on_state(PipelineState.LISTENING)
        self._emit_metrics(turn)
        self._turn = None
