"""One turn's timings, collected in one place: the `metrics` event for the client, and the turn as
an OpenTelemetry trace (recorded after the fact from the marks, so no stage is touched)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Tracer, set_span_in_context

from providers.messages import Metrics

# monotonic marks → wall-clock nanoseconds for span timestamps
_WALL_OFFSET_NS = time.time_ns() - time.monotonic_ns()


@dataclass(slots=True)
class TurnTimings:
    """Monotonic-clock marks of one turn (0.0 = did not happen)."""

    turn_id: int
    end_of_speech: float = 0.0  # the last speech frame arrived
    end_of_turn: float = 0.0  # the endpointer decided the user was done
    transcript: float = 0.0  # the STT's final transcript
    agent_first_token: float = 0.0
    agent_reply: float = 0.0  # the agent finished writing
    tts_first_byte: float = 0.0
    first_audio: float = 0.0  # the first reply audio went out
    done: float = 0.0
    interrupted_at: float = 0.0
    text: str = ""
    heard_text: str = ""  # what the user heard of an interrupted reply

    def as_metrics(self, latency_target_s: float) -> dict[str, Any]:
        """The `metrics` event as its wire dict."""
        return self.metrics(latency_target_s).to_wire()

    def metrics(self, latency_target_s: float) -> Metrics:
        response_ms = _ms(self.end_of_turn, self.first_audio)
        values = {
            "end_of_turn_delay_ms": _ms(self.end_of_speech, self.end_of_turn),
            "stt_final_ms": _ms(self.end_of_turn, self.transcript),
            "agent_ms": _ms(self.transcript, self.agent_first_token),
            "agent_total_ms": _ms(self.transcript, self.agent_reply),
            "tts_first_audio_ms": _ms(self.agent_first_token, self.tts_first_byte),
            "response_ms": response_ms,
            "voice_to_voice_ms": _ms(self.end_of_speech, self.first_audio),
            "latency_target_ms": round(latency_target_s * 1000, 1),
            # The target covers what the backend controls: end of turn → first reply audio.
            "met_latency_target": response_ms is not None
            and response_ms <= latency_target_s * 1000,
            "interrupted": bool(self.interrupted_at),
        }
        return Metrics(self.turn_id, values)

    def record_trace(self, tracer: Tracer, attributes: dict[str, Any]) -> None:
        """The turn as one trace: a `voice.turn` root and a span per stage, on the turn's clock."""
        start = self.end_of_speech or self.end_of_turn
        end = self.done or self.interrupted_at or max(self.first_audio, self.transcript, start)
        if not start:
            return
        root = tracer.start_span(
            "voice.turn",
            start_time=_ns(start),
            attributes={
                **attributes,
                "turn.id": self.turn_id,
                "turn.interrupted": bool(self.interrupted_at),
                **{
                    f"turn.{k}": v
                    for k, v in self.as_metrics(1.0).items()
                    if k.endswith("_ms") and k != "latency_target_ms" and v is not None
                },
            },
        )
        ctx = set_span_in_context(root)
        stages = (
            ("vad_end_of_speech", self.end_of_speech, self.end_of_turn),
            ("stt_final", self.end_of_turn, self.transcript),
            ("agent_first_token", self.transcript, self.agent_first_token),
            ("tts_first_byte", self.agent_first_token, self.tts_first_byte),
            ("first_audio_out", self.tts_first_byte, self.first_audio),
        )
        for name, a, b in stages:
            if a and b:
                tracer.start_span(name, context=ctx, start_time=_ns(a), attributes=attributes).end(
                    end_time=_ns(b)
                )
        root.end(end_time=_ns(end))


def _ms(a: float, b: float) -> float | None:
    return round((b - a) * 1000, 1) if a and b else None


def _ns(monotonic_s: float) -> int:
    return int(monotonic_s * 1e9) + _WALL_OFFSET_NS
