"""The turn detector as a table: probability sequences in, events out, on the audio's clock."""

import pytest

from pipelines.endpointing import EndpointingConfig, TurnDetector, TurnEvent

FRAME_S = 0.032  # one silero frame at 16 kHz
S, Q = 0.9, 0.05  # speech, quiet


def run(probs: list[float], **cfg: float) -> list[tuple[int, TurnEvent]]:
    det = TurnDetector(EndpointingConfig(**cfg))
    return [(i, ev) for i, p in enumerate(probs) if (ev := det.update(p, FRAME_S))]


@pytest.mark.parametrize(
    ("probs", "expected"),
    [
        pytest.param([Q] * 50, [], id="silence-only"),
        pytest.param([S] * 2 + [Q] * 30, [], id="click-shorter-than-min-speech"),
        pytest.param(
            [Q] * 5 + [S] * 20 + [Q] * 30,
            [(8, TurnEvent.SPEECH_STARTED), (40, TurnEvent.SPEECH_ENDED)],
            id="one-utterance",
        ),
        pytest.param(
            [S] * 10 + [Q] * 10 + [S] * 10 + [Q] * 20,
            [(3, TurnEvent.SPEECH_STARTED), (45, TurnEvent.SPEECH_ENDED)],
            id="pause-shorter-than-min-silence-keeps-the-turn",
        ),
        pytest.param(
            [S] * 10 + [0.4] * 30 + [Q] * 16,
            [(3, TurnEvent.SPEECH_STARTED), (55, TurnEvent.SPEECH_ENDED)],
            id="hysteresis-keeps-speech-above-deactivation",
        ),
    ],
)
def test_turn_events(probs: list[float], expected: list[tuple[int, TurnEvent]]) -> None:
    assert run(probs) == expected


def test_min_silence_is_configurable() -> None:
    probs = [S] * 10 + [Q] * 40
    short = run(probs, min_silence_s=0.2)
    long = run(probs, min_silence_s=1.0)
    assert short[-1][0] < long[-1][0]
    assert long[-1] == (10 + 31, TurnEvent.SPEECH_ENDED)


def test_max_utterance_forces_a_turn_end() -> None:
    events = run([S] * 200, max_utterance_s=2.0)
    ends = [i for i, ev in events if ev is TurnEvent.SPEECH_ENDED]
    assert ends, "an endless utterance must still end"
    assert ends[0] * FRAME_S == pytest.approx(2.0, abs=FRAME_S * 2)


def test_last_speech_time_marks_end_of_speech() -> None:
    det = TurnDetector()
    for p in [S] * 10 + [Q] * 16:
        det.update(p, FRAME_S)
    assert det.last_speech_at_s == pytest.approx(10 * FRAME_S)
    assert not det.in_speech


def test_speech_duration_excludes_the_trailing_silence_and_silence_can_be_lengthened() -> None:
    det = TurnDetector(EndpointingConfig(min_silence_s=0.5))
    for p in [S] * 10:
        det.update(p, FRAME_S)
    spoken = det.speech_s
    for p in [Q] * 10:
        det.update(p, FRAME_S)
    assert det.in_speech and det.speech_s == spoken, "silence does not count as speech"
    det.required_silence_s = 1.0  # a turn-detection provider judged the user not done
    events = [det.update(Q, FRAME_S) for _ in range(25)]
    assert events.count(TurnEvent.SPEECH_ENDED) == 1 and events.index(TurnEvent.SPEECH_ENDED) > 10
