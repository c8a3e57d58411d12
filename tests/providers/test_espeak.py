"""The embedded TTS's warm-up: it leaves the instance speaking with its own voice and rate."""

from __future__ import annotations

from providers.espeak.tts import EspeakTTS


async def test_warm_up_then_speak() -> None:
    fast = EspeakTTS(rate_wpm=300)
    slow = EspeakTTS(voice="en", rate_wpm=120)
    await fast.warm_up()
    await slow.warm_up()
    await slow.warm_up()  # idempotent
    fast_pcm = b"".join([c async for c in fast.synthesize("hello world")])
    slow_pcm = b"".join([c async for c in slow.synthesize("hello world")])
    assert fast_pcm and len(slow_pcm) > 1.5 * len(fast_pcm)  # each kept its own rate
