"""OpenAI transcription as the STT stage (`stt_provider="openai"`): the utterance is buffered
while the user speaks and uploaded whole, as a WAV file, when it ends
(`audio.transcriptions.create`). One attempt per `finish`, which keeps the audio, so the
pipeline's retry (the backend's `max_retries`/`retry_delay`) can call it again."""

from __future__ import annotations

from typing import Any

from backend.errors import BackendError, ErrorCode
from backend.wav import wav_bytes
from providers.base import STT, SttCapabilities, SttStream
from providers.openai.config import AudioOptions, openai_error, parse_options

_RATE_HZ = 16000  # the pipeline's rate; the API takes any WAV


class OpenAISttStream(SttStream):
    def __init__(self, owner: OpenAISTT) -> None:
        self._owner = owner
        self._pcm = bytearray()
        self._result: str | None = None

    async def push(self, pcm16: bytes) -> None:
        if len(pcm16) % 2:
            raise BackendError(
                "openai.stt.push",
                ErrorCode.INVALID_FORMAT,
                f"PCM16 needs an even number of bytes, got {len(pcm16)}",
            )
        self._pcm += pcm16

    async def finish(self) -> str:
        if self._result is None:
            self._result = await self._owner.transcribe(bytes(self._pcm)) if self._pcm else ""
        return self._result

    async def aclose(self) -> None:
        self._pcm.clear()


class OpenAISTT(STT):
    name = "openai"
    capabilities = SttCapabilities(streaming=False, sample_rate_hz=_RATE_HZ)

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(AudioOptions, self.name, options)
        self._client = self.options.client(timeout_s=self.options.timeout)

    def stream(self) -> SttStream:
        return OpenAISttStream(self)

    async def transcribe(self, pcm16: bytes) -> str:
        opts = self.options
        extra: dict[str, Any] = {}
        if opts.language:
            extra["language"] = opts.language
        if opts.prompt:
            extra["prompt"] = opts.prompt
        try:
            result = await self._client.audio.transcriptions.create(
                file=("utterance.wav", wav_bytes(pcm16, _RATE_HZ), "audio/wav"),
                model=opts.stt_model,
                response_format="json",
                **extra,
            )
        except Exception as exc:
            raise openai_error("openai.stt", exc) from None
        return result.text.strip()

    async def aclose(self) -> None:
        await self._client.close()
