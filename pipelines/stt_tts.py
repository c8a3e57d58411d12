"""The STT → agent → TTS turn loop: idle → listening → processing → speaking → listening.

Inbound audio (already at `PIPELINE_RATE_HZ`) goes through the VAD and the turn detector in the
caller's task: that is cheap. While the user speaks, audio is streamed to the STT in ~100 ms
batches (one stage call per batch, not per frame), so at end of speech only finalisation is left.
That finalisation starts early, `stt_early_finish_s` into the silence that may end the turn, so
it overlaps the endpointing delay instead of following it; if the user goes on speaking, the
early result is dropped and the utterance so far is replayed to a fresh STT stream.
Two tasks do the slow parts in order: the STT feeder (push/finish calls, strictly ordered) and
the turn worker (agent + TTS, one turn at a time, each turn its own task so that a barge-in can
cancel it). The agent's text is spoken sentence by sentence as it streams in, and the audio is
paced out (`pipelines.playout`), so an interruption silences the agent within one inbound frame
and the history keeps only what the user heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.errors import BackendError, ErrorCode, as_backend_error
from backend.iface import PipelineState
from pipelines.audio import PIPELINE_RATE_HZ, FrameSlicer
from pipelines.barge_in import BargeIn, UtteranceEnd
from pipelines.endpointing import EndpointingConfig, TurnDetector, TurnEvent
from pipelines.outbox import Outbox
from pipelines.playout import LEAD_S, Playout
from pipelines.sentences import SentenceAggregator
from pipelines.turn_loop import TurnLoop
from pipelines.turn_metrics import TurnTimings
from pipelines.utterance import SttUtterance
from providers.base import (
    STT,
    TTS,
    VAD,
    Agent,
    AgentContext,
    SttStream,
    TurnContext,
    TurnDetection,
)
from providers.messages import (
    AgentReply,
    AgentText,
    Backchannel,
    SpeechEnded,
    SpeechStarted,
    Transcript,
)
from providers.resample import StreamResampler
from providers.retry import RetryPolicy, call_with_retry
from providers.turn_detection.vad import VadTurnDetection

log = logging.getLogger(__name__)

STT_BATCH_S = 0.1
PREROLL_S = 0.3  # audio kept from before speech was confirmed, so the first syllable survives


@dataclass(slots=True)
class PipelineSettings:
    output_sample_rate_hz: int = 16000
    latency_target_s: float = 0.5
    endpointing: EndpointingConfig = field(default_factory=EndpointingConfig)
    max_endpointing_delay_s: float = 3.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    allow_interruptions: bool = True
    min_interruption_s: float = 0.5  # speech over the agent shorter than this is a backchannel
    playout_lead_s: float = LEAD_S
    # Silence after which the STT is asked for its final transcript, before the endpointing
    # delay has confirmed the turn (None: only once it has). Below the shortest endpointing
    # delay, so that a pause between words seldom costs a replay.
    stt_early_finish_s: float | None = 0.15


class SttTtsPipeline(TurnLoop):
    def __init__(
        self,
        *,
        vad: VAD,
        stt: STT,
        tts: TTS,
        agent: Agent,
        agent_context: AgentContext,
        outbox: Outbox,
        settings: PipelineSettings,
        on_state: Callable[[PipelineState], None],
        turn_detection: TurnDetection | None = None,
        on_turn: Callable[[TurnTimings], None] | None = None,
    ) -> None:
        super().__init__()
        self.vad = vad
        self.stt = stt
        self.tts = tts
        self.agent = agent
        self.ctx = agent_context
        self.outbox = outbox
        self.settings = settings
        self.latency_target_s = settings.latency_target_s
        self.turn_detection = turn_detection or VadTurnDetection()
        self._on_state = on_state
        self._on_turn = on_turn
        self._detector = TurnDetector(settings.endpointing)
        self._slicer = FrameSlicer(vad.frame_samples)
        self._frame_s = vad.frame_samples / PIPELINE_RATE_HZ
        self._preroll: deque[np.ndarray] = deque(maxlen=max(1, int(PREROLL_S / self._frame_s)))
        self._batch: list[np.ndarray] = []
        self._batch_samples = 0
        self._stt_cmds: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._turns: asyncio.Queue[TurnTimings] = asyncio.Queue()
        self._turn_counter = 0
        self._current: TurnTimings | None = None
        # The reply being spoken, if any: what a barge-in cancels.
        self._speaking: tuple[TurnTimings, Playout, asyncio.Task[None]] | None = None
        self._barge_in = BargeIn(
            self.settings.allow_interruptions, self.settings.min_interruption_s
        )
        self._early_finished = False  # the STT was asked to finish this utterance early
        self.last_playout: Playout | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._stt_feeder(), name="stt-feeder"),
            asyncio.create_task(self._turn_worker(), name="turn-worker"),
        ]

    # -- inbound audio (caller's task) -----------------------------------------------------
    def on_audio(self, samples: np.ndarray) -> None:
        det = self._detector
        for frame in self._slicer.push(samples):
            prob = self.vad.speech_probability(frame.tobytes())
            event = det.update(prob, self._frame_s)
            if event is TurnEvent.SPEECH_STARTED:
                self._begin_utterance()
            if det.in_speech or event is TurnEvent.SPEECH_ENDED:
                self._add_to_batch(frame)
                self._maybe_finish_early()
            else:
                self._preroll.append(frame)
            if det.in_speech and self._barge_in.interrupts_now(det.speech_s):
                self._interrupt()
            if event is TurnEvent.SPEECH_ENDED:
                agent_speaking = self._speaking is not None
                if self._barge_in.utterance_ended(agent_speaking) is UtteranceEnd.BACKCHANNEL:
                    self._drop_utterance()
                else:
                    self._end_utterance()

    def _maybe_finish_early(self) -> None:
        """Ask for the transcript while the endpointing delay runs; take it back if the user
        goes on (the feeder replays the utterance to a fresh stream)."""
        det, early_s = self._detector, self.settings.stt_early_finish_s
        if early_s is None or not det.in_speech or early_s >= det.required_silence_s:
            return
        if not self._early_finished and det.silence_s >= early_s:
            self._flush_batch()
            self._early_finished = True
            self._stt_cmds.put_nowait(("finish_early", None))
        elif self._early_finished and det.silence_s == 0.0:
            self._early_finished = False
            self._stt_cmds.put_nowait(("resume", None))

    def _begin_utterance(self) -> None:
        self._early_finished = False
        self._turn_counter += 1
        self._current = TurnTimings(turn_id=self._turn_counter)
        self._barge_in.utterance_started(agent_speaking=self._speaking is not None)
        self._detector.required_silence_s = self._end_of_turn_silence_s()
        self._stt_cmds.put_nowait(("open", None))
        self.outbox.put_event(SpeechStarted(self._turn_counter))
        for frame in self._preroll:
            self._add_to_batch(frame)
        self._preroll.clear()

    def _end_of_turn_silence_s(self) -> float:
        lo = self.settings.endpointing.min_silence_s
        hi = max(lo, self.settings.max_endpointing_delay_s)
        ctx = TurnContext(speech_s=self._detector.speech_s, history=list(self.ctx.history))
        return min(hi, max(lo, self.turn_detection.end_of_turn_silence_s(ctx, lo, hi)))

    def _add_to_batch(self, frame: np.ndarray) -> None:
        self._batch.append(frame)
        self._batch_samples += frame.size
        if self._batch_samples >= STT_BATCH_S * PIPELINE_RATE_HZ:
            self._flush_batch()

    def _flush_batch(self) -> None:
        if self._batch:
            self._stt_cmds.put_nowait(("push", np.concatenate(self._batch).tobytes()))
        self._batch, self._batch_samples = [], 0

    def _end_utterance(self) -> None:
        self._flush_batch()
        turn = self._current or TurnTimings(turn_id=self._turn_counter)
        now = time.monotonic()
        turn.end_of_turn = now
        turn.end_of_speech = now - (self._detector.clock_s - self._detector.last_speech_at_s)
        self._stt_cmds.put_nowait(("finish", turn))
        self._current = None
        self._early_finished = False
        self.outbox.put_event(SpeechEnded(turn.turn_id))

    def _drop_utterance(self) -> None:
        self._batch, self._batch_samples = [], 0
        self._early_finished = False
        turn_id = self._current.turn_id if self._current else self._turn_counter
        self._current = None
        self._stt_cmds.put_nowait(("drop", None))
        self.outbox.put_event(Backchannel(turn_id))

    def _interrupt(self) -> None:
        """The user spoke over the agent: silence it now (synchronously, within this frame),
        keep in the history only what was heard, and cancel the rest of the reply."""
        if self._speaking is None:
            return
        turn, playout, task = self._speaking
        self._speaking = None
        heard_s = playout.interrupt()
        self._announce_interruption(turn, heard_s, playout.heard_text_at(heard_s))
        task.cancel()

    # -- STT feeder: strictly ordered stage calls ------------------------------------------
    async def _stt_feeder(self) -> None:
        utt = SttUtterance()
        while True:
            cmd, arg = await self._stt_cmds.get()
            try:
                if cmd == "open":
                    utt = SttUtterance(self.stt.stream())
                elif cmd == "push":
                    await utt.push(arg)
                elif cmd == "drop":
                    utt, old = SttUtterance(), utt
                    await old.aclose()
                elif cmd == "finish_early":
                    await utt.finish_early(self._finish_stream)
                elif cmd == "resume":
                    await utt.resume(self.stt)
                elif cmd == "finish":
                    turn: TurnTimings = arg
                    utt, done = SttUtterance(), utt
                    turn.text = (await done.finish(self._finish_stream)).strip()
                    turn.transcript = time.monotonic()
                    self._turns.put_nowait(turn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken stage must surface, not hang the turn
                err = as_backend_error("stt", exc)
                if cmd in ("push", "finish_early", "resume"):
                    utt.failed = err  # reported once, at the end of the utterance
                else:
                    utt = SttUtterance()
                    # The turn's own error event ends it for the client: never a silent hang.
                    self._report(err, arg.turn_id if cmd == "finish" else None)

    async def _finish_stream(self, stream: SttStream) -> str:
        return await call_with_retry("stt.finish", stream.finish, self.settings.retry)

    # -- turn worker: agent + TTS, one turn at a time --------------------------------------
    async def _turn_worker(self) -> None:
        while True:
            turn = await self._turns.get()
            if not turn.text:
                self.outbox.put_event(Transcript(turn_id=turn.turn_id, text=""))
                continue
            task = asyncio.create_task(self._run_turn(turn), name=f"turn-{turn.turn_id}")
            try:
                await asyncio.wait({task})  # a barge-in cancels the turn, never this worker
            except asyncio.CancelledError:
                task.cancel()
                raise
            if task.cancelled():
                self._finish_interrupted(turn)
            elif (exc := task.exception()) is not None:
                self._on_state(PipelineState.LISTENING)  # back to listening, then say why
                self._report(as_backend_error("turn", exc), turn.turn_id)
            self._on_state(PipelineState.LISTENING)

    async def _run_turn(self, turn: TurnTimings) -> None:
        self._on_state(PipelineState.PROCESSING)
        self.outbox.put_event(Transcript(turn_id=turn.turn_id, text=turn.text))
        self.ctx.history.append({"role": "user", "content": turn.text})
        rate, lead_s = self.settings.output_sample_rate_hz, self.settings.playout_lead_s
        playout = Playout(self.outbox, rate, lead_s=lead_s, turn_id=turn.turn_id)
        current = asyncio.current_task()
        assert current is not None
        self._speaking = (turn, playout, current)
        self.last_playout = playout
        try:
            reply = await self._speak_agent_reply(turn, playout)
        finally:
            if self._speaking is not None and self._speaking[1] is playout:
                self._speaking = None
        self.ctx.history.append({"role": "assistant", "content": reply})
        turn.done = time.monotonic()
        self._on_state(PipelineState.LISTENING)  # before `metrics`, the event that ends a turn
        self._emit_metrics(turn)

    async def _speak_agent_reply(self, turn: TurnTimings, playout: Playout) -> str:
        """Stream the agent's text, speak each sentence as soon as it is complete."""
        timeout_s = self.settings.retry.timeout_s
        sentences = SentenceAggregator()
        parts: list[str] = []
        await self.tts.begin_turn(turn.turn_id)  # the sentences below are one reply
        spoken = False
        try:
            async with asyncio.timeout(timeout_s):
                async with contextlib.aclosing(self.agent.stream(turn.text, self.ctx)) as text:
                    async for piece in text:
                        turn.agent_first_token = turn.agent_first_token or time.monotonic()
                        parts.append(piece)
                        for sentence in sentences.push(piece):
                            await self._speak(sentence, turn, playout)
                turn.agent_reply = time.monotonic()
                reply = "".join(parts).strip()
                self.outbox.put_event(AgentReply(turn_id=turn.turn_id, text=reply))
                for sentence in sentences.flush():
                    await self._speak(sentence, turn, playout)
                spoken = True
        except TimeoutError:
            raise BackendError(
                "agent.reply", ErrorCode.TIMEOUT, f"agent did not answer within {timeout_s:g} s"
            ) from None
        except (BackendError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise BackendError(
                "agent.reply", ErrorCode.AGENT_ERROR, f"agent failed: {exc}"
            ) from exc
        finally:
            with contextlib.suppress(Exception):  # a barge-in or failure cancels what is left
                await self.tts.end_turn(turn.turn_id, interrupted=not spoken)
        await playout.finish()  # the turn lasts until the user has heard the reply
        return reply

    async def _speak(self, sentence: str, turn: TurnTimings, playout: Playout) -> None:
        resampler = StreamResampler(
            self.tts.capabilities.sample_rate_hz, self.settings.output_sample_rate_hz
        )
        self._on_state(PipelineState.SPEAKING)
        self.outbox.put_event(AgentText(turn_id=turn.turn_id, text=sentence))
        playout.begin_segment(sentence)
        started = False

        async def attempt() -> None:
            nonlocal started
            # aclosing: a barge-in cancels us mid-stream; the stage's generation must stop.
            async with contextlib.aclosing(self.tts.synthesize(sentence)) as chunks:
                async for pcm in chunks:
                    started = True
                    turn.tts_first_byte = turn.tts_first_byte or time.monotonic()
                    samples = np.frombuffer(pcm, dtype="<i2")
                    await playout.play(resampler.process(samples).tobytes())
                    if playout.sent_s and not turn.first_audio:
                        turn.first_audio = time.monotonic()

        # A retryable failure before any audio (a dropped connection) is retried; after the
        # first chunk a retry would say the start of the sentence twice. The turn's own timeout
        # bounds the whole reply, so attempts have none.
        await call_with_retry(
            "tts.synthesize",
            attempt,
            dataclasses.replace(self.settings.retry, timeout_s=None),
            retry_if=lambda err: not started and err.retryable,
        )
        await playout.play(resampler.flush().tobytes())

    def truncate_last_reply(self, heard_s: float) -> None:
        """Make the history's last reply what the first `heard_s` seconds of its audio said
        (for a listener whose playout position is known better elsewhere)."""
        if self.last_playout is None:
            return
        heard = self.last_playout.heard_text_at(heard_s)
        if self.ctx.history and self.ctx.history[-1]["role"] == "assistant":
            self.ctx.history.pop()
        if heard:
            self.ctx.history.append({"role": "assistant", "content": heard})

    def _finish_interrupted(self, turn: TurnTimings) -> None:
        if turn.heard_text:
            self.ctx.history.append({"role": "assistant", "content": turn.heard_text})
        turn.done = time.monotonic()
        self._on_state(PipelineState.LISTENING)
        self._emit_metrics(turn)
