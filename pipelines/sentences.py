"""Streamed agent text → whole sentences, so speech starts on the first sentence of a reply
while the agent is still writing the rest."""

from __future__ import annotations

import re

# A sentence ends at . ! ? (not after a common title) followed by space, or at a line break.
_BOUNDARY = re.compile(
    r"(?<=[.!?])(?<!\bMr\.)(?<!\bMrs\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)\s+|\s*\n\s*"
)
MIN_SENTENCE_CHARS = 12  # shorter pieces ("Hi.") wait for the next one: fewer, smoother TTS calls


class SentenceAggregator:
    def __init__(self, min_chars: int = MIN_SENTENCE_CHARS) -> None:
        self.min_chars = min_chars
        self._buf = ""

    def push(self, text: str) -> list[str]:
        """Add streamed text; return the sentences it completed."""
        self._buf += text
        out: list[str] = []
        start = 0
        for m in _BOUNDARY.finditer(self._buf):
            candidate = self._buf[start : m.start()].strip()
            if len(candidate) >= self.min_chars:
                out.append(candidate)
                start = m.end()
        self._buf = self._buf[start:]
        return out

    def flush(self) -> list[str]:
        """What is left at the end of the stream."""
        rest, self._buf = self._buf.strip(), ""
        return [rest] if rest else []
