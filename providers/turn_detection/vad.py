"""End of turn from silence alone: the user is done after the minimum endpointing delay."""

from __future__ import annotations

from providers.base import TurnContext, TurnDetection


class VadTurnDetection(TurnDetection):
    name = "vad"

    def end_of_turn_silence_s(self, ctx: TurnContext, min_s: float, max_s: float) -> float:
        return min_s
