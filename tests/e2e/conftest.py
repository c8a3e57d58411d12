from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import make_config

LOOPBACK = ["127.0.0.1"]


@pytest.fixture
async def rtc_backend(backend: Any) -> Any:
    """The shared backend, its WebRTC sessions offering loopback ICE candidates only, so no
    media traffic leaves the host (the `backend` fixture restores the config afterwards)."""
    await backend.update_config(make_config(provider_config={"ice_host_addresses": LOOPBACK}))
    return backend
