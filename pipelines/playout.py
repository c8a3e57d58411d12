"""Reply audio paced into the outbox, and what the user has actually heard of it.

Audio is released at real time plus a small lead (`lead_s`), never faster: a transport's buffers
then hold at most that much, so an interruption can silence the agent at once instead of after
seconds of already-sent audio. The playout position — how far the user's speaker has got — is the
wall time since the first chunk went out, capped by what was sent; it is where an interrupted
reply is cut, in the audio and in the conversation history.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from pipelines.outbox import Outbox
from providers.messages import AudioChunk

CHUNK_S = 0.02  # one outbound frame
LEAD_S = 0.2  # how far ahead of the listener audio may be released


CHARS_PER_S = 14.0  # espeak-ng's pace at 175 wpm; estimates a sentence still being synthesised


@dataclass(slots=True)
class Segment:
    """One spoken piece of text (a sentence) and where its audio sits on the playout clock;
    `end_s` is None while its audio is still being produced."""

    text: str
    start_s: float
    end_s: float | None = None

    def estimated_end_s(self, sent_s: float) -> float:
        if self.end_s is not None:
            return self.end_s
        return max(sent_s, self.start_s + len(self.text) / CHARS_PER_S)


def heard_text(segments: list[Segment], heard_s: float, sent_s: float | None = None) -> str:
    """The text the listener heard by `heard_s`: whole segments, then the share of the words of
    the segment in progress proportional to the share of its audio played."""
    words: list[str] = []
    for seg in segments:
        end = seg.estimated_end_s(heard_s if sent_s is None else sent_s)
        if heard_s >= end and seg.end_s is not None:
            words.extend(seg.text.split())
            continue
        if heard_s > seg.start_s and end > seg.start_s:
            seg_words = seg.text.split()
            share = min(1.0, (heard_s - seg.start_s) / (end - seg.start_s))
            words.extend(seg_words[: int(len(seg_words) * share)])
        break
    return " ".join(words)


class Playout:
    """One reply's audio on its way out. Not reusable: make one per reply."""

    def __init__(
        self,
        outbox: Outbox,
        sample_rate_hz: int,
        *,
        lead_s: float = LEAD_S,
        clock: Callable[[], float] = time.monotonic,
        turn_id: int | None = None,
    ) -> None:
        self.outbox = outbox
        self.sample_rate_hz = sample_rate_hz
        self.turn_id = turn_id
        self.lead_s = lead_s
        self._clock = clock
        self._chunk_bytes = int(sample_rate_hz * CHUNK_S) * 2
        self._pending = b""
        self.started_at: float | None = None  # clock time of the first chunk out
        self.sent_s = 0.0
        self.segments: list[Segment] = []
        self.interrupted = False

    # -- output --------------------------------------------------------------------------
    async def play(self, pcm16: bytes) -> None:
        """Release whole chunks of `pcm16` (the remainder waits for more, or `finish`)."""
        self._pending += pcm16
        while len(self._pending) >= self._chunk_bytes and not self.interrupted:
            chunk, self._pending = (
                self._pending[: self._chunk_bytes],
                self._pending[self._chunk_bytes :],
            )
            await self._release(chunk)

    async def finish(self) -> None:
        """Release the remainder, then wait until the listener has heard everything."""
        if self._pending and not self.interrupted:
            chunk, self._pending = self._pending, b""
            await self._release(chunk)
        self.end_segment()
        if self.started_at is not None and not self.interrupted:
            await asyncio.sleep(max(0.0, self.started_at + self.sent_s - self._clock()))

    def begin_segment(self, text: str) -> None:
        """The audio played from now on speaks `text` (until the next segment)."""
        self.end_segment()
        self.segments.append(Segment(text, self.sent_s))

    def end_segment(self) -> None:
        if self.segments and self.segments[-1].end_s is None:
            self.segments[-1].end_s = self.sent_s

    async def _release(self, chunk: bytes) -> None:
        now = self._clock()
        if self.started_at is None:
            self.started_at = now
        ahead = self.started_at + self.sent_s - now - self.lead_s
        if ahead > 0:
            await asyncio.sleep(ahead)
            if self.interrupted:
                return
        self.outbox.put_audio(AudioChunk(chunk, self.sample_rate_hz, self.turn_id))
        self.sent_s += len(chunk) / 2 / self.sample_rate_hz

    # -- position and interruption -------------------------------------------------------
    def heard_s(self) -> float:
        if self.started_at is None:
            return 0.0
        return max(0.0, min(self.sent_s, self._clock() - self.started_at))

    def heard_text_at(self, heard_s: float) -> str:
        return heard_text(self.segments, heard_s, self.sent_s)

    def interrupt(self) -> float:
        """Stop at once: nothing more is released and queued audio is dropped from the outbox.
        Returns the playout position (seconds heard)."""
        heard = self.heard_s()
        self.interrupted = True
        self._pending = b""
        self.outbox.clear_audio()
        return heard
