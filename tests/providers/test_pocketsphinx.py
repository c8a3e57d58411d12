"""The embedded STT: one decoder serves a worker's sessions one after another, so what it
heard last must not change what it hears next; and the same words are heard the same however
the pipeline cuts and pads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from providers.pocketsphinx.stt import PocketsphinxSTT

DATA = Path(__file__).with_name("data")
# "hello world" as one session's pipeline gave it to its STT in a five-room LiveKit test (Opus
# there and back, the VAD's cut): 1.12 s of PCM16 at 16 kHz.
VIA_LIVEKIT = DATA / "hello_world_via_livekit.pcm"
# espeak-ng's "hello world" through libopus (PyAV) and back, after 0.16 s of silence.
OPUS = DATA / "hello_world_opus.pcm"


@pytest.fixture(scope="module")
def pocketsphinx() -> PocketsphinxSTT:
    """One decoder for the cases below (each utterance's estimate is its own), loaded once."""
    return PocketsphinxSTT()


async def recognise(stt: PocketsphinxSTT, pcm16: bytes, piece: int = 3200) -> str:
    stream = stt.stream()
    for i in range(0, len(pcm16), piece):  # 100 ms pushes by default
        await stream.push(pcm16[i : i + piece])
    return await stream.finish()


@pytest.mark.parametrize("piece", [640, 3200, 4096, 8192, 35840])
async def test_how_audio_is_cut_into_pushes_does_not_change_what_is_heard(
    pocketsphinx: PocketsphinxSTT, piece: int
) -> None:
    """4096 bytes is what the pipeline pushes (four 32 ms VAD frames); the cepstral mean used to
    be measured over whatever had arrived when the window filled (0.9 s here, not 0.8 s), and
    this call was heard as "so where else"."""
    assert await recognise(pocketsphinx, VIA_LIVEKIT.read_bytes(), piece) == "hello world"


@pytest.mark.parametrize("more_silence_s", [0.0, 0.15, 0.2])
async def test_more_silence_before_the_words_does_not_change_what_is_heard(
    pocketsphinx: PocketsphinxSTT, more_silence_s: float
) -> None:
    """The VAD's pre-roll puts a varying amount of silence before the words. With the mean
    measured from the start of the audio, 0.15 s more made this "hello world" misheard."""
    pcm = bytes(int(16000 * more_silence_s) * 2) + OPUS.read_bytes()
    assert await recognise(pocketsphinx, pcm, 4096) == "hello world"


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
