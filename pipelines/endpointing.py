"""Turn detection from VAD probabilities: a pure state machine, table-tested without audio.

Speech must last `min_speech_s` before a turn starts (so clicks and coughs don't), and silence
must last `min_silence_s` before it ends (LiveKit's min endpointing delay). Time is the audio's
own clock (frames counted), never the wall clock, so results do not depend on machine load.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class TurnEvent(Enum):
    SPEECH_STARTED = "speech_started"
    SPEECH_ENDED = "speech_ended"


@dataclass(frozen=True, slots=True)
class EndpointingConfig:
    activation_threshold: float = 0.5
    deactivation_threshold: float = 0.35  # hysteresis: speech continues above this
    min_speech_s: float = 0.1
    min_silence_s: float = 0.5
    max_utterance_s: float = 30.0  # a turn this long is ended so the user is answered


class TurnDetector:
    def __init__(self, config: EndpointingConfig | None = None) -> None:
        self.config = config or EndpointingConfig()
        # Silence that ends the current utterance; a turn-detection provider may lengthen it
        # (up to the max endpointing delay) when it judges the user is not done.
        self.required_silence_s = self.config.min_silence_s
        self.in_speech = False
        self.clock_s = 0.0
        self.speech_started_at_s = 0.0
        self.last_speech_at_s = 0.0
        self._speech_run_s = 0.0
        self._silence_run_s = 0.0

    def update(self, probability: float, frame_s: float) -> TurnEvent | None:
        cfg = self.config
        self.clock_s += frame_s
        if not self.in_speech:
            if probability >= cfg.activation_threshold:
                self._speech_run_s += frame_s
                if self._speech_run_s >= cfg.min_speech_s:
                    self.in_speech = True
                    self.speech_started_at_s = self.clock_s - self._speech_run_s
                    self.last_speech_at_s = self.clock_s
                    self._silence_run_s = 0.0
                    return TurnEvent.SPEECH_STARTED
            else:
                self._speech_run_s = 0.0
            return None

        if probability >= cfg.deactivation_threshold:
            self._silence_run_s = 0.0
            self.last_speech_at_s = self.clock_s
        else:
            self._silence_run_s += frame_s
        too_long = self.clock_s - self.speech_started_at_s >= cfg.max_utterance_s
        if self._silence_run_s >= self.required_silence_s or too_long:
            self.in_speech = False
            self._speech_run_s = 0.0
            self._silence_run_s = 0.0
            return TurnEvent.SPEECH_ENDED
        return None

    @property
    def silence_s(self) -> float:
        """How long the current utterance has been silent (0 when not in speech, or voiced)."""
        return self._silence_run_s if self.in_speech else 0.0

    @property
    def speech_s(self) -> float:
        """How long the user has spoken in the current utterance, up to the last voiced frame
        (the trailing silence that may end it does not count); 0 when not in speech."""
        return self.last_speech_at_s - self.speech_started_at_s if self.in_speech else 0.0
