"""The STT → agent → TTS turn loop: idle → listening → processing → speaking → listening.

Inbound audio (already at `PIPELINE_RATE_HZ`) goes through the VAD and the turn detector in the
caller's task: that is cheap. While the user speaks, audio is streamed to the STT in ~100 ms
batches (one stage call per batch, not per frame), so at end of speech only finalisation is left.
Two tasks do the slow parts in order: the STT feeder (push/finish calls, strictly ordered) and
the turn worker (agent + TTS). Every turn carries one `turn_id` and its timings end up in one
`metrics` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.errors import BackendError, ErrorCode
from backend.iface import PipelineState
from pipelines.audio import PIPELINE_RATE_HZ, FrameSlicer, StreamResampler
from pipelines.endpointing import EndpointingConfig, TurnDetector, TurnEvent
from pipelines.outbox import Outbox
from providers.base import STT, TTS, VAD, Agent, AgentContext, SttStream
from providers.retry import RetryPolicy, call_with_retry

log = logging.getLogger(__name__)

STT_BATCH_S = 0.1
PREROLL_S = 0.3  # audio kept from before speech was confirmed, so the first syllable survives
OUT_CHUNK_S = 0.02


@dataclass(slots=True)
class TurnTimings:
    """Wall-clock marks of one turn (monotonic seconds)."""

    turn_id: int
    end_of_speech: float = 0.0  # when the last speech frame arrived
    end_of_turn: float = 0.0  # when the endpointer decided the user was done
    transcript: float = 0.0
    agent_reply: float = 0.0
    first_audio: float = 0.0
    done: float = 0.0
    text: str = ""

    def as_metrics(self, latency_target_s: float) -> dict[str, Any]:
        def ms(a: float, b: float) -> float | None:
            return round((b - a) * 1000, 1) if a and b else None

        response_ms = ms(self.end_of_turn, self.first_audio)
        return {
            "type": "metrics",
            "turn_id": self.turn_id,
            "end_of_turn_delay_ms": ms(self.end_of_speech, self.end_of_turn),
            "stt_final_ms": ms(self.end_of_turn, self.transcript),
            "agent_ms": ms(self.transcript, self.agent_reply),
            "tts_first_audio_ms": ms(self.agent_reply, self.first_audio),
            "response_ms": response_ms,
            "voice_to_voice_ms": ms(self.end_of_speech, self.first_audio),
            "latency_target_ms": round(latency_target_s * 1000, 1),
            # The target covers what the backend controls: end of turn → first reply audio.
            "met_latency_target": response_ms is not None
            and response_ms <= latency_target_s * 1000,
        }


@dataclass(slots=True)
class PipelineSettings:
    output_sample_rate_hz: int = 16000
    latency_target_s: float = 0.5
    endpointing: EndpointingConfig = field(default_factory=EndpointingConfig)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class SttTtsPipeline:
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
    ) -> None:
        self.vad = vad
        self.stt = stt
        self.tts = tts
        self.agent = agent
        self.ctx = agent_context
        self.outbox = outbox
        self.settings = settings
        self._on_state = on_state
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
        self._tasks: list[asyncio.Task[None]] = []
        self.turns_completed = 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._stt_feeder(), name="stt-feeder"),
            asyncio.create_task(self._turn_worker(), name="turn-worker"),
        ]

    async def aclose(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # -- inbound audio (caller's task) -----------------------------------------------------
    def on_audio(self, samples: np.ndarray) -> None:
        for frame in self._slicer.push(samples):
            prob = self.vad.speech_probability(frame.tobytes())
            event = self._detector.update(prob, self._frame_s)
            if event is TurnEvent.SPEECH_STARTED:
                self._begin_utterance()
            if self._detector.in_speech or event is TurnEvent.SPEECH_ENDED:
                self._add_to_batch(frame)
            else:
                self._preroll.append(frame)
            if event is TurnEvent.SPEECH_ENDED:
                self._end_utterance()

    def _begin_utterance(self) -> None:
        self._turn_counter += 1
        self._current = TurnTimings(turn_id=self._turn_counter)
        self._stt_cmds.put_nowait(("open", None))
        self.outbox.put_event({"type": "speech_started", "turn_id": self._turn_counter})
        for frame in self._preroll:
            self._add_to_batch(frame)
        self._preroll.clear()

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
        silence_s = self._detector.clock_s - self._detector.last_speech_at_s
        turn.end_of_speech = now - silence_s
        self._stt_cmds.put_nowait(("finish", turn))
        self._current = None
        self.outbox.put_event({"type": "speech_ended", "turn_id": turn.turn_id})

    # -- STT feeder: strictly ordered stage calls ------------------------------------------
    async def _stt_feeder(self) -> None:
        stream: SttStream | None = None
        failed: BackendError | None = None
        while True:
            cmd, arg = await self._stt_cmds.get()
            try:
                if cmd == "open":
                    stream, failed = self.stt.stream(), None
                elif cmd == "push" and stream is not None and failed is None:
                    await stream.push(arg)
                elif cmd == "finish":
                    turn: TurnTimings = arg
                    if failed is not None or stream is None:
                        raise failed or BackendError("stt", ErrorCode.PIPELINE_ERROR, "no stream")
                    s, stream = stream, None
                    turn.text = (
                        await call_with_retry("stt.finish", s.finish, self.settings.retry)
                    ).strip()
                    turn.transcript = time.monotonic()
                    self._turns.put_nowait(turn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken stage must surface, not hang the turn
                err = _as_backend_error("stt", exc)
                if cmd == "push":
                    failed = err  # reported once, at the end of the utterance
                else:
                    stream = None
                    self._report(err)

    # -- turn worker: agent + TTS, one turn at a time --------------------------------------
    async def _turn_worker(self) -> None:
        while True:
            turn = await self._turns.get()
            if not turn.text:
                self.outbox.put_event(
                    {"type": "transcript", "turn_id": turn.turn_id, "text": "", "final": True}
                )
                continue
            try:
                await self._run_turn(turn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._on_state(PipelineState.LISTENING)  # back to listening, then say why
                self._report(_as_backend_error("turn", exc), turn.turn_id)
            finally:
                self._on_state(PipelineState.LISTENING)

    async def _run_turn(self, turn: TurnTimings) -> None:
        self._on_state(PipelineState.PROCESSING)
        self.outbox.put_event(
            {"type": "transcript", "turn_id": turn.turn_id, "text": turn.text, "final": True}
        )
        self.ctx.history.append({"role": "user", "content": turn.text})
        try:
            async with asyncio.timeout(self.settings.retry.timeout_s):
                reply = (await self.agent.reply(turn.text, self.ctx)).strip()
        except TimeoutError:
            raise BackendError(
                "agent.reply",
                ErrorCode.TIMEOUT,
                f"agent did not answer within {self.settings.retry.timeout_s:g} s",
            ) from None
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(
                "agent.reply", ErrorCode.AGENT_ERROR, f"agent failed: {exc}"
            ) from exc
        turn.agent_reply = time.monotonic()
        self.outbox.put_event({"type": "agent_reply", "turn_id": turn.turn_id, "text": reply})
        self.ctx.history.append({"role": "assistant", "content": reply})
        if reply:
            await self._speak(reply, turn)
        turn.done = time.monotonic()
        self.turns_completed += 1
        self._on_state(PipelineState.LISTENING)  # before `metrics`, the event that ends a turn
        self.outbox.put_event(turn.as_metrics(self.settings.latency_target_s))

    async def _speak(self, text: str, turn: TurnTimings) -> None:
        out_rate = self.settings.output_sample_rate_hz
        resampler = StreamResampler(self.tts.capabilities.sample_rate_hz, out_rate)
        chunk_bytes = int(out_rate * OUT_CHUNK_S) * 2
        pending = b""
        self._on_state(PipelineState.SPEAKING)
        async with asyncio.timeout(self.settings.retry.timeout_s):
            async for pcm in self.tts.synthesize(text):
                out = resampler.process(np.frombuffer(pcm, dtype="<i2")).tobytes()
                pending += out
                while len(pending) >= chunk_bytes:
                    if not turn.first_audio:
                        turn.first_audio = time.monotonic()
                    self.outbox.put_audio(pending[:chunk_bytes])
                    pending = pending[chunk_bytes:]
        pending += resampler.flush().tobytes()
        if pending:
            turn.first_audio = turn.first_audio or time.monotonic()
            self.outbox.put_audio(pending)

    def _report(self, err: BackendError, turn_id: int | None = None) -> None:
        log.warning("session %s: %s", self.ctx.session_id, err)
        event: dict[str, Any] = {"type": "error", **err.to_body()["error"]}
        if turn_id is not None:
            event["turn_id"] = turn_id
        self.outbox.put_event(event)


def _as_backend_error(op: str, exc: BaseException) -> BackendError:
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, TimeoutError):
        return BackendError(op, ErrorCode.TIMEOUT, "stage did not answer in time")
    return BackendError(op, ErrorCode.PIPELINE_ERROR, f"{type(exc).__name__}: {exc}")
