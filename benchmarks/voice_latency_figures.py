"""Per-level figures of `benchmarks.voice_latency`: what the JSON keeps of a turn, a level's
v2v / waterfall summary and the recogniser's word accuracy.

Why apart: the over-the-backend levels, the first-turn call and the in-process baseline are
summarised the same way, so their figures compare.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from benchmarks.common import pct, summary
from benchmarks.stt_settings import word_errors
from benchmarks.voice_latency_calls import STAGES


def sample(turn: dict[str, Any]) -> dict[str, Any]:
    """What the JSON keeps of one turn."""
    return {k: turn.get(k) for k in ("client_v2v_ms", "response_ms", *STAGES, "heard")}


def level_figures(turns: list[dict[str, Any]]) -> dict[str, Any]:
    v2v = [t["client_v2v_ms"] for t in turns if t["client_v2v_ms"] is not None]
    return {
        "client_v2v_ms": summary(v2v),
        "v2v_within_500ms": round(sum(v <= 500 for v in v2v) / len(v2v), 3) if v2v else None,
        "turns_without_reply": sum(t["client_v2v_ms"] is None for t in turns),
        "server_response_ms": summary([t["response_ms"] for t in turns if t.get("response_ms")]),
        "waterfall_p50_ms": {
            s: round(pct([t[s] for t in turns if t.get(s) is not None], 50), 1) for s in STAGES
        },
    }


def word_accuracy(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """What the recogniser heard against what was spoken: 1 - word errors / words spoken, and
    every transcript heard per phrase with its count."""
    words = sum(len(t["spoken"].split()) for t in turns)
    errors = sum(word_errors(t["spoken"], t["heard"] or "") for t in turns)
    heard: dict[str, Counter[str]] = {}
    for t in turns:
        heard.setdefault(t["spoken"], Counter())[t["heard"] or ""] += 1
    return {
        "word_accuracy": round(1 - errors / words, 4) if words else None,
        "words": words,
        "word_errors": errors,
        "turns": len(turns),
        "turns_exact": sum((t["heard"] or "") == t["spoken"] for t in turns),
        "heard_vs_spoken": {p: dict(c.most_common()) for p, c in heard.items()},
    }


def ms_p50_max(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "max": None}
    return {"n": len(values), "p50": round(pct(values, 50), 1), "max": round(max(values), 1)}
