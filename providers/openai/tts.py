"""OpenAI speech as the TTS stage (`tts_provider="openai"`): `audio.speech` with
`response_format="pcm"` (24 kHz PCM16 mono), streamed, so the first chunk plays while the rest
is generated. A failed request is retried (`max_retries`/`retry_delay`) only until the first
chunk has been yielded: after that a retry would say the start of the sentence twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

from backend.errors import BackendError
from providers.base import TTS, TtsCapabilities
from providers.openai.config import AudioOptions, openai_error, parse_options
from providers.resilience import guarded_call

_RATE_HZ = 24000
_CHUNK_BYTES = 4800  # 100 ms


class OpenAITTS(TTS):
    name = "openai"
    capabilities = TtsCapabilities(streaming=True, sample_rate_hz=_RATE_HZ)

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(AudioOptions, self.name, options)
        self._client = self.options.client(timeout_s=self.options.timeout)
        host = urlparse(self.options.base_url or "https://api.openai.com").netloc
        self.breaker_name = f"openai tts {host}"  # a failing endpoint is left alone a while

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        if not text.strip():
            return
        opts = self.options
        extra: dict[str, Any] = {"speed": opts.speed} if opts.speed != 1.0 else {}
        if opts.instructions:
            extra["instructions"] = opts.instructions

        async def open_stream() -> Any:
            manager = self._client.audio.speech.with_streaming_response.create(
                model=opts.tts_model,
                voice=opts.voice,
                input=text,
                response_format="pcm",
                **extra,
            )
            try:
                return manager, await manager.__aenter__()
            except Exception as exc:
                raise openai_error("openai.tts", exc) from None

        manager, response = await guarded_call(
            "openai.tts", self.breaker_name, open_stream, opts.retry_policy()
        )
        odd = b""  # keep samples whole across network chunks
        try:
            async for chunk in response.iter_bytes(_CHUNK_BYTES):
                data = odd + chunk
                cut = len(data) - len(data) % 2
                odd = data[cut:]
                if cut:
                    yield data[:cut]
        except BackendError:
            raise
        except Exception as exc:
            raise openai_error("openai.tts", exc) from None
        finally:
            await manager.__aexit__(None, None, None)

    async def aclose(self) -> None:
        await self._client.close()
