"""Barge-in: what the user speaking over the agent means. A pure rule, table-tested.

Speech that starts while the agent speaks interrupts it once it has lasted
`min_interruption_s` (LiveKit's `min_interruption_duration`); if it ends before that, it was a
backchannel ("yeah", "ok"): the utterance is dropped and the agent goes on. Speech that starts
while the agent is silent is an ordinary turn. The pipeline does what the rule says: silence the
reply within the frame (`pipelines/playout.py` knows what was heard), or drop the utterance.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class UtteranceEnd(Enum):
    TURN = "turn"  # an ordinary turn: transcribe and answer it
    BACKCHANNEL = "backchannel"  # short speech over the agent: drop it, the agent goes on


@dataclass(slots=True)
class BargeIn:
    allow_interruptions: bool = True
    min_interruption_s: float = 0.5
    over_agent: bool = False  # the current utterance began while the agent was speaking

    def utterance_started(self, agent_speaking: bool) -> None:
        self.over_agent = agent_speaking and self.allow_interruptions

    def interrupts_now(self, speech_s: float) -> bool:
        """True once, on the frame at which speech over the agent becomes an interruption."""
        if self.over_agent and speech_s >= self.min_interruption_s:
            self.over_agent = False
            return True
        return False

    def utterance_ended(self, agent_speaking: bool) -> UtteranceEnd:
        backchannel = self.over_agent and agent_speaking
        self.over_agent = False
        return UtteranceEnd.BACKCHANNEL if backchannel else UtteranceEnd.TURN
