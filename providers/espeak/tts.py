"""espeak-ng text-to-speech through ctypes, from the `espeakng-loader` wheel (no system package).

espeak-ng is a process-global C library with one voice, one rate and one output callback, so every
call into it holds `_LOCK`, and the library is initialised once per process, on first use.
Synthesis is sentence by sentence in a worker thread: the first sentence's audio is yielded while
the rest of the text is still waiting, and the event loop never waits on C code.
"""

from __future__ import annotations

import asyncio
import ctypes
import re
import threading
from collections.abc import AsyncIterator
from typing import Any

import espeakng_loader

from backend.errors import BackendError, ErrorCode
from providers.base import TTS, TtsCapabilities

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_Synth returns when done; the callback runs on its thread
_INITIALIZE_DONT_EXIT = 0x8000  # report errors instead of calling exit() in our process
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000  # add a sentence pause at the end of the text
_POS_CHARACTER = 1
_PARAM_RATE = 1
_RATE_MIN, _RATE_MAX = 80, 450  # espeakRATE_MINIMUM / espeakRATE_MAXIMUM
_BUFFER_MS = 100  # how much audio espeak hands to the callback at a time

_CALLBACK_TYPE = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
_VOICE_NAME = re.compile(r"[A-Za-z0-9_+\-/]{1,64}")  # espeak voice/variant names, never paths
_SENTENCE_END = re.compile(  # not after a title: "Dr. Smith" is one sentence
    r"(?<=[.!?])(?<!\bMr\.)(?<!\bMrs\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)\s+|\s*\n\s*"
)

_LOCK = threading.Lock()
_lib: ctypes.CDLL | None = None
_rate_hz = 0
_callback = None  # kept referenced: espeak holds the pointer for the process lifetime
_samples: list[bytes] = []  # the callback's output for the synthesis in progress
_settings: tuple[str, int] | None = None  # (voice, rate) currently set in the library


def _collect(wav: Any, numsamples: int, events: int | None) -> int:
    if wav and numsamples > 0:
        _samples.append(ctypes.string_at(wav, numsamples * 2))
    return 0  # 0 = continue


def _library() -> ctypes.CDLL:
    """The initialised library; the caller holds `_LOCK`."""
    global _lib, _rate_hz, _callback
    if _lib is not None:
        return _lib
    op = "espeak.init"
    try:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_path = espeakng_loader.get_data_path()
    except (OSError, RuntimeError) as exc:
        raise BackendError(op, ErrorCode.PIPELINE_ERROR, f"cannot load espeak-ng: {exc}") from exc
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK_TYPE]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data_path.encode(), _INITIALIZE_DONT_EXIT
    )
    if rate <= 0:
        raise BackendError(op, ErrorCode.PIPELINE_ERROR, f"espeak_Initialize failed ({rate})")
    _callback = _CALLBACK_TYPE(_collect)
    lib.espeak_SetSynthCallback(_callback)
    _lib, _rate_hz = lib, rate
    return lib


def _apply(lib: ctypes.CDLL, voice: str, rate_wpm: int) -> None:
    """Select voice and rate (another instance may have changed them); the caller holds `_LOCK`."""
    global _settings
    if _settings == (voice, rate_wpm):
        return
    _settings = None
    if not _VOICE_NAME.fullmatch(voice) or lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise BackendError(
            "espeak.voice",
            ErrorCode.INVALID_CONFIG,
            f"unknown espeak-ng voice {voice!r} (try 'en-us', 'en', 'de', 'fr', or 'en-us+f3')",
            field="tts_voice",
        )
    lib.espeak_SetParameter(_PARAM_RATE, rate_wpm, 0)
    _settings = (voice, rate_wpm)


def _synthesize_blocking(voice: str, rate_wpm: int, text: str, end_pause: bool) -> bytes:
    """PCM16 for one sentence; runs in a worker thread."""
    data = text.encode() + b"\0"
    flags = _CHARS_UTF8 | (_ENDPAUSE if end_pause else 0)
    with _LOCK:
        lib = _library()
        _apply(lib, voice, rate_wpm)
        _samples.clear()
        try:
            err = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, flags, None, None)
            pcm = b"".join(_samples)
        finally:
            _samples.clear()
    if err != 0:
        raise BackendError("espeak.synthesize", ErrorCode.PIPELINE_ERROR, f"espeak_Synth: {err}")
    return pcm


def split_sentences(text: str) -> list[str]:
    """Sentences (and lines) in order; the unit of streaming."""
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]


class EspeakTTS(TTS):
    name = "espeak"

    def __init__(self, voice: str = "en-us", rate_wpm: int = 175) -> None:
        if not _RATE_MIN <= rate_wpm <= _RATE_MAX:
            raise BackendError(
                "espeak.init",
                ErrorCode.INVALID_CONFIG,
                f"rate_wpm must be {_RATE_MIN}..{_RATE_MAX}, got {rate_wpm}",
                field="tts_rate_wpm",
            )
        self.voice = voice
        self.rate_wpm = rate_wpm
        with _LOCK:  # fail at configuration time, not on the first reply
            _apply(_library(), voice, rate_wpm)
            rate_hz = _rate_hz
        self.capabilities = TtsCapabilities(streaming=True, sample_rate_hz=rate_hz)
        self._chunk_bytes = rate_hz // 10 * 2  # 100 ms of PCM16

    async def warm_up(self) -> None:
        """One short word, so the first reply does not pay for the voice's first use."""
        async for _ in self.synthesize("ok"):
            pass

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        sentences = split_sentences(text.replace("\0", " "))
        for i, sentence in enumerate(sentences):
            last = i == len(sentences) - 1
            pcm = await asyncio.to_thread(
                _synthesize_blocking, self.voice, self.rate_wpm, sentence, not last
            )
            for start in range(0, len(pcm), self._chunk_bytes):
                yield pcm[start : start + self._chunk_bytes]
