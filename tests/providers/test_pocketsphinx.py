"""The embedded STT: one decoder serves a worker's sessions one after another, so what it
heard last must not change what it hears next; and the same words are heard the same however
the pipeline cuts and pads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend.errors import BackendError, ErrorCode
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


@pytest.mark.parametrize("clip", [VIA_LIVEKIT, OPUS])
async def test_warm_up_leaves_nothing_behind(pocketsphinx: PocketsphinxSTT, clip: Path) -> None:
    """A worker warms its decoder before its first call: the call must hear what a decoder
    that was never warmed hears, however often the worker was warmed."""
    pcm = clip.read_bytes()
    fresh = await recognise(PocketsphinxSTT(), pcm, 4096)
    warmed = PocketsphinxSTT()
    await warmed.warm_up()
    assert await recognise(warmed, pcm, 4096) == fresh
    await warmed.warm_up()
    await warmed.warm_up()
    assert await recognise(warmed, pcm, 4096) == fresh == "hello world"


async def test_warm_up_does_not_disturb_an_utterance_in_flight(hello_16k: bytes) -> None:
    stt = PocketsphinxSTT()
    stream = stt.stream()
    half = len(hello_16k) // 4 * 2
    await stream.push(hello_16k[:half])
    await stt.warm_up()
    await stream.push(hello_16k[half:])
    assert await stream.finish() == "hello world"


async def test_a_declared_vocabulary_is_all_it_hears(hello_16k: bytes) -> None:
    stt = PocketsphinxSTT(phrases=["Stop, please!", "hello world", "reschedule my visit"])
    assert await recognise(stt, hello_16k, 4096) == "hello world"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"phrases": ["hello zzyzzyx"]}, "phrases"),
        ({"phrases": ["?!"]}, "phrases"),
        ({"words": ["reschedule", "zzyzzyx"]}, "words"),
        ({"decoder_options": {"no_such_option": 1}}, "stt_model"),
    ],
)
def test_bad_options_are_configuration_errors(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(BackendError) as info:
        PocketsphinxSTT(**kwargs)
    assert info.value.code is ErrorCode.INVALID_CONFIG and info.value.field == field


async def test_words_beyond_the_default_vocabulary_can_be_added(hello_16k: bytes) -> None:
    """The default dictionary keeps the language model's 20,000 likeliest words."""
    assert PocketsphinxSTT()._decoder.lookup_word("reschedule") is None
    stt = PocketsphinxSTT(words=["Reschedule", "unsubscribe"])
    assert stt._decoder.lookup_word("reschedule") is not None
    assert await recognise(stt, hello_16k, 4096) == "hello world"
