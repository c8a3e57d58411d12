"""The fake Cartesia provider of `benchmarks.talkers`, run in a subprocess of its own so its
CPU is measured apart from the runtime's; canned by default so the provider costs ~0.
"""

from __future__ import annotations

import asyncio
import sys

import numpy as np

from benchmarks.talkers_call import PHRASES


async def serve_fake(kind: str, real_stt: bool) -> None:
    """Run the loopback Cartesia server until stdin closes; prints its URL first."""
    from tests.fakes.cartesia import FakeCartesia
    from tests.fakes.loopback import serving

    cache: dict[tuple[str, int], bytes] = {}

    class CheapCartesia(FakeCartesia):
        """The fake with a canned recogniser and cached speech: a provider that costs ~0."""

        async def _recognise(self, pcm: bytes, rate: int) -> str:
            if real_stt:
                return await super()._recognise(pcm, rate)
            samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
            voiced = samples.size and float(np.sqrt(np.mean(samples**2))) > 100
            return PHRASES[0] if voiced else ""

        async def _speech(self, text: str, rate: int) -> bytes:
            if (text, rate) not in cache:
                cache[(text, rate)] = await super()._speech(text, rate)
            return cache[(text, rate)]

    if kind != "cartesia":
        raise SystemExit(f"unknown fake {kind!r}")
    fake = CheapCartesia()
    async with serving(fake.app) as url:
        print(url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
