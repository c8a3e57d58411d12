"""The barge-in rule alone: speech over the agent interrupts once it lasts long enough;
shorter, it is a backchannel; speech while the agent is silent is an ordinary turn."""

from __future__ import annotations

import pytest

from pipelines.barge_in import BargeIn, UtteranceEnd


@pytest.mark.parametrize(
    ("agent_speaking", "allow", "speech_s", "interrupts", "ends_as"),
    [
        (True, True, [0.2, 0.4, 0.5, 0.7], [False, False, True, False], UtteranceEnd.TURN),
        (True, True, [0.1, 0.3], [False, False], UtteranceEnd.BACKCHANNEL),
        (False, True, [0.1, 0.6, 1.2], [False, False, False], UtteranceEnd.TURN),
        (True, False, [0.6, 1.2], [False, False], UtteranceEnd.TURN),  # interruptions off
    ],
    ids=["interruption", "backchannel", "agent-silent", "not-allowed"],
)
def test_speech_over_the_agent(
    agent_speaking: bool,
    allow: bool,
    speech_s: list[float],
    interrupts: list[bool],
    ends_as: UtteranceEnd,
) -> None:
    rule = BargeIn(allow_interruptions=allow, min_interruption_s=0.5)
    rule.utterance_started(agent_speaking)
    assert [rule.interrupts_now(s) for s in speech_s] == interrupts
    # After an interruption the agent has stopped; a backchannel leaves it speaking.
    still_speaking = agent_speaking and not any(interrupts)
    assert rule.utterance_ended(still_speaking) is ends_as
    assert not rule.over_agent  # each utterance starts afresh
