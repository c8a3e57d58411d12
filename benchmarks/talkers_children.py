"""How the `benchmarks.talkers` driver runs its subprocesses (fake, callers, baseline): each is
`python -m benchmarks.talkers --role ...`, and all of a level's start at one shared instant
(READY / GO) so the meters cover exactly their run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import CpuMeter

ROOT = Path(__file__).resolve().parent.parent


class Child:
    """A subprocess of this benchmark speaking the READY / GO protocol."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc, self.log = proc, log

    @classmethod
    async def start(cls, role: str, *args: str, log: Path) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.talkers",
            "--role",
            role,
            *args,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log.open("ab"),
        )
        return cls(proc, log)

    async def line(self, timeout_s: float = 300) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        if not raw:
            raise RuntimeError(f"{self.log.name} ended: {self.log.read_text()[-2000:]}")
        return raw.decode().strip()

    def go(self, t0: float) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"GO {t0}\n".encode())

    async def wait(self, timeout_s: float) -> None:
        if await asyncio.wait_for(self.proc.wait(), timeout_s) != 0:
            raise RuntimeError(f"{self.log.name} failed: {self.log.read_text()[-2000:]}")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 10)
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()


async def run_children(
    role: str, specs: list[dict[str, Any]], tmp: Path, meters: tuple[CpuMeter, ...] = ()
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """Start one child per spec, wait until all are ready, start them at once; returns their
    reports, the meters' readings from the start to the last child's end, and the wall time
    from the start."""
    children: list[Child] = []
    try:
        for i, spec in enumerate(specs):
            spec["out"] = str(tmp / f"{role}-{i}.json")
            (tmp / f"{role}-{i}.spec.json").write_text(json.dumps(spec))
            children.append(
                await Child.start(
                    role, "--spec", str(tmp / f"{role}-{i}.spec.json"), log=tmp / f"{role}-{i}.log"
                )
            )
        for child in children:
            if (line := await child.line()) != "READY":
                raise RuntimeError(f"{role}: unexpected {line!r}")
        for meter in meters:
            meter.start()
        t0 = time.monotonic() + 0.5
        for child in children:
            child.go(t0)
        longest = max(s["turns"] * s["interval_s"] + s["interval_s"] + 30 for s in specs)
        for child in children:
            await child.wait(longest + 120)
        wall = time.monotonic() - t0
        readings = [meter.stop() for meter in meters]
        return [json.loads(Path(s["out"]).read_text()) for s in specs], readings, wall
    finally:
        for child in children:
            await child.stop()
