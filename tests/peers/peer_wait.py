"""Shared by the peer scripts (each runs in its ecosystem's own venv, with this folder on
sys.path): wait until something the peer recorded makes a predicate true."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_for_change(
    changed: asyncio.Event, predicate: Callable[[], bool], timeout_s: float
) -> bool:
    """True once `predicate()` holds, re-checked whenever `changed` is set; False on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        changed.clear()
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        try:
            await asyncio.wait_for(changed.wait(), remaining)
        except TimeoutError:
            return False
    return True
