"""WebRTC's GMM voice activity detector (`webrtcvad-wheels`): tiny, no model file, binary output.

It answers speech / not speech per 10, 20 or 30 ms frame; that answer is the probability (0 or 1)
the turn detector sees, so the same endpointing thresholds apply to both VADs.
"""

from __future__ import annotations

import webrtcvad

from backend.errors import BackendError, ErrorCode
from providers.base import VAD

_FRAME_MS = 30


class WebrtcVAD(VAD):
    name = "webrtc"
    sample_rate_hz = 16000

    def __init__(self, aggressiveness: int = 2) -> None:
        if aggressiveness not in (0, 1, 2, 3):
            raise BackendError(
                "webrtc_vad.init",
                ErrorCode.INVALID_CONFIG,
                f"aggressiveness must be 0..3, got {aggressiveness}",
                field="vad_aggressiveness",
            )
        self._vad = webrtcvad.Vad(aggressiveness)
        self.frame_samples = self.sample_rate_hz * _FRAME_MS // 1000

    def speech_probability(self, frame: bytes) -> float:
        return 1.0 if self._vad.is_speech(frame, self.sample_rate_hz) else 0.0
