"""The demo's latency report: the target is checked against what the caller hears (end of speech to
the first reply audio, end-of-turn silence included), the server's own response shown apart."""

from __future__ import annotations

from typing import Any

import pytest

from backend.cli_report import call_report
from backend.http_client import CallResult


def _report(capsys: pytest.CaptureFixture[str], **metrics: Any) -> str:
    turn = {
        "type": "metrics",
        "turn_id": 1,
        "end_of_turn_delay_ms": 512.0,
        "stt_final_ms": 46.7,
        "agent_ms": 0.1,
        "tts_first_audio_ms": 6.7,
        "response_ms": 53.5,
        "voice_to_voice_ms": 565.5,
        "latency_target_ms": 500.0,
        "met_latency_target": True,  # the server's own verdict: its response alone
    } | metrics
    result = CallResult(events=[turn], first_audio_at=10.57, speech_sent_at=10.0)
    call_report(result, '"hello world"', "reply.wav", 16000)
    return capsys.readouterr().out


def test_met_means_what_the_caller_heard(capsys: pytest.CaptureFixture[str]) -> None:
    out = _report(capsys)
    target = next(line for line in out.splitlines() if "latency target" in line)
    assert "end of speech -> first reply audio" in target and "silence included" in target
    assert "565.5 ms, missed" in target  # the server met its part; the caller waited 565 ms
    assert "server alone, turn end -> first reply audio: 53.5 ms (within target)" in out
    assert "end-of-turn silence alone is 512 ms" in out
    assert "voice-to-voice (client)" in out and "570.0" in out


def test_met_when_the_caller_got_the_reply_in_time(capsys: pytest.CaptureFixture[str]) -> None:
    out = _report(
        capsys, end_of_turn_delay_ms=300.0, voice_to_voice_ms=420.0, latency_target_ms=500.0
    )
    assert "420.0 ms, met" in out and "silence alone" not in out


def test_no_end_of_speech_mark_is_not_a_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    out = _report(capsys, voice_to_voice_ms=None, end_of_turn_delay_ms=None)
    assert "not measured" in out and " met" not in out.replace("not measured", "")
