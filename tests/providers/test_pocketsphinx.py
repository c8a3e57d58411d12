"""The embedded STT: one decoder serves a worker's sessions one after another, so what it
heard last must not change what it hears next."""

from __future__ import annotations

import numpy as np

from providers.pocketsphinx.stt import PocketsphinxSTT


async def recognise(stt: PocketsphinxSTT, pcm16: bytes) -> str:
    stream = stt.stream()
    for i in range(0, len(pcm16), 3200):  # 100 ms pushes, as the pipeline sends them
        await stream.push(pcm16[i : i + 3200])
    return await stream.finish()


async def test_a_loud_noisy_utterance_does_not_garble_the_next(hello_16k: bytes) -> None:
    stt = PocketsphinxSTT()
    assert await recognise(stt, hello_16k) == "hello world"
    hiss = np.random.default_rng(1).normal(0, 3000, 32000).astype("<i2").tobytes()
    await recognise(stt, hiss)  # e.g. a caller on a bad line, then the next call on this worker
    assert await recognise(stt, hello_16k) == "hello world"


async def test_an_abandoned_utterance_leaves_nothing_behind(hello_16k: bytes) -> None:
    stt = PocketsphinxSTT()
    stream = stt.stream()
    await stream.push(hello_16k[: len(hello_16k) // 4 * 2])  # half, in whole samples
    await stream.aclose()
    assert await recognise(stt, hello_16k) == "hello world"
