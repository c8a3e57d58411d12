"""Per-turn figures as Ray metrics (Prometheus through the Ray dashboard), when
`Config.enable_metrics`: the same numbers as each turn's `metrics` event and trace."""

from __future__ import annotations

from functools import cache
from typing import Any

from ray.util.metrics import Counter, Histogram

from pipelines.turn_metrics import TurnTimings

_BOUNDARIES_S = [0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0]
_STAGES = {  # metric stage tag → field of the `metrics` event (milliseconds)
    "end_of_turn": "end_of_turn_delay_ms",
    "stt_final": "stt_final_ms",
    "agent_first_token": "agent_ms",
    "tts_first_byte": "tts_first_audio_ms",
    "response": "response_ms",
    "voice_to_voice": "voice_to_voice_ms",
}


@cache
def _instruments() -> tuple[Histogram, Counter, Counter]:
    latency = Histogram(
        "voice_turn_latency_seconds",
        description="Latency of each stage of a voice turn",
        boundaries=_BOUNDARIES_S,
        tag_keys=("stage", "provider", "pipeline"),
    )
    turns = Counter(
        "voice_turns_total",
        description="Voice turns completed, by whether they met the latency target",
        tag_keys=("pipeline", "met_latency_target", "interrupted"),
    )
    barge_ins = Counter(
        "voice_barge_ins_total", description="Replies interrupted by the user", tag_keys=()
    )
    return latency, turns, barge_ins


def record_turn(turn: TurnTimings, latency_target_s: float, tags: dict[str, Any]) -> None:
    latency, turns, barge_ins = _instruments()
    figures = turn.as_metrics(latency_target_s)
    for stage, key in _STAGES.items():
        if figures.get(key) is not None:
            latency.observe(
                figures[key] / 1000,
                tags={"stage": stage, "provider": tags["provider"], "pipeline": tags["pipeline"]},
            )
    turns.inc(
        tags={
            "pipeline": tags["pipeline"],
            "met_latency_target": str(figures["met_latency_target"]).lower(),
            "interrupted": str(figures["interrupted"]).lower(),
        }
    )
    if figures["interrupted"]:
        barge_ins.inc()
