"""Public API of the voice backend (the Python counterpart of Beluga's `pkg/voice/backend`).

    from backend import new_backend
    from backend.iface import Config, SessionConfig, PipelineType

Importing this package does not import Ray; `new_backend` does, on first call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.client import VoiceBackend, VoiceSession

__all__ = ["VoiceBackend", "VoiceSession", "new_backend"]


async def new_backend(provider: str, config: Any = None, **options: Any) -> VoiceBackend:
    from backend.client import new_backend as _new_backend

    return await _new_backend(provider, config, **options)


def __getattr__(name: str) -> Any:
    if name in ("VoiceBackend", "VoiceSession"):
        from backend import client

        return getattr(client, name)
    raise AttributeError(name)
