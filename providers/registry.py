"""Every provider, by kind and name, in one explicit table.

Entries are import paths, imported on first use: nothing loads a model at import time, and a
provider whose extra is not installed fails with a message naming it instead of breaking the rest.
Adding a provider is one line here plus its own folder.
"""

from __future__ import annotations

import importlib
from typing import Any

from backend.errors import BackendError, ErrorCode


class Registry:
    def __init__(self, kind: str, entries: dict[str, str]) -> None:
        self.kind = kind
        self._entries = dict(entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def register(self, name: str, target: str) -> None:
        """`target` is "module:attribute"; used by plug-ins outside this repository."""
        self._entries[name] = target

    def resolve(self, name: str) -> Any:
        target = self._entries.get(name)
        if target is None:
            raise BackendError(
                f"{self.kind}.resolve",
                ErrorCode.PROVIDER_NOT_FOUND,
                f"unknown {self.kind} provider {name!r}; "
                f"registered: {', '.join(self.names()) or 'none'}",
                field=f"{self.kind}_provider",
            )
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise BackendError(
                f"{self.kind}.resolve",
                ErrorCode.PROVIDER_NOT_FOUND,
                f"{self.kind} provider {name!r} is registered but cannot be imported ({exc}); "
                "install its extra",
            ) from exc
        return getattr(module, attr)

    def create(self, name: str, *args: Any, **options: Any) -> Any:
        return self.resolve(name)(*args, **options)


BACKENDS = Registry(
    "backend",
    {
        "local": "providers.local.backend:LocalBackendProvider",
        "livekit": "providers.livekit.backend:LiveKitBackendProvider",
        "cartesia": "providers.cartesia.backend:CartesiaBackendProvider",
        "vapi": "providers.vapi.backend:VapiBackendProvider",
        "pipecat": "providers.pipecat.backend:PipecatBackendProvider",
        "vocode": "providers.vocode.backend:VocodeBackendProvider",
    },
)
# Transports a session actor runs itself (BackendProvider.agent_transport names one).
TRANSPORTS = Registry("transport", {"livekit": "providers.livekit.transport:LiveKitTransport"})
STT_PROVIDERS = Registry(
    "stt",
    {
        "pocketsphinx": "providers.pocketsphinx.stt:PocketsphinxSTT",
        "cartesia": "providers.cartesia.stt:CartesiaSTT",
        "openai": "providers.openai.stt:OpenAISTT",
    },
)
TTS_PROVIDERS = Registry(
    "tts",
    {
        "espeak": "providers.espeak.tts:EspeakTTS",
        "cartesia": "providers.cartesia.tts:CartesiaTTS",
        "openai": "providers.openai.tts:OpenAITTS",
    },
)
# The local s2s model composes the pipeline's own turn loop, so it lives in `pipelines/`.
S2S_PROVIDERS = Registry(
    "s2s",
    {
        "local": "pipelines.s2s_local:LocalS2S",
        "openai_realtime": "providers.openai.realtime:OpenAIRealtimeS2S",
    },
)
VAD_PROVIDERS = Registry(
    "vad",
    {"silero": "providers.vad.silero:SileroVAD", "webrtc": "providers.vad.webrtc:WebrtcVAD"},
)
TURN_DETECTORS = Registry(
    "turn_detection", {"vad": "providers.turn_detection.vad:VadTurnDetection"}
)
AGENTS = Registry(
    "agent",
    {
        "echo": "providers.agents.echo:EchoAgent",
        "webhook": "providers.agents.webhook:WebhookAgent",
        "openai": "providers.agents.openai_chat:OpenAIAgent",
    },
)
