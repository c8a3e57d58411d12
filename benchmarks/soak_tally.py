"""What the soak counts while it runs: its calls in progress, turns, faults, losses."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = ("stt_host", "idle_worker", "session")  # the default placements
SESSION_FAULT_KINDS = ("stt_stage", "tts_stage", "idle_worker", "session")  # --placement session


@dataclass
class Live:
    """A call in progress, as the injector sees it."""

    session: dict[str, Any]
    doomed: bool = False  # its session process was killed on purpose


@dataclass
class Tally:
    started_at: float = field(default_factory=time.monotonic)
    sessions: int = 0
    turns: int = 0
    transcripts_exact: int = 0
    misheard: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    lost: list[dict[str, Any]] = field(default_factory=list)  # should not have been
    lost_by_design: int = 0
    faults: list[dict[str, Any]] = field(default_factory=list)
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    v2v: list[tuple[float, float]] = field(default_factory=list)  # (at s, ms)
    memory: list[tuple[float, float]] = field(default_factory=list)  # (at s, MB)
    failovers: int = 0
    live: dict[str, Live] = field(default_factory=dict)

    def at(self) -> float:
        return round(time.monotonic() - self.started_at, 1)


class CallLost(Exception):
    pass
