"""`stt_early_finish_s` is a Config field like the other durations: bounded, seconds or a
timedelta, and 0 means off (the pipeline takes None as off)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from backend.errors import BackendError, ErrorCode
from backend.iface import Config


def test_default_is_the_pipelines() -> None:
    from pipelines.stt_tts import PipelineSettings

    assert Config().stt_early_finish_s == PipelineSettings().stt_early_finish_s == 0.15


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.2, 0.2), (timedelta(milliseconds=250), 0.25), (0, None), (0.0, None), (None, None)],
)
def test_accepted_values(value: Any, expected: float | None) -> None:
    assert Config(stt_early_finish_s=value).stt_early_finish_s == expected


@pytest.mark.parametrize("value", [-0.1, 10.5, "soon"])
def test_bad_values_are_refused_naming_the_field(value: Any) -> None:
    with pytest.raises(BackendError) as info:
        Config(stt_early_finish_s=value)
    assert info.value.code is ErrorCode.INVALID_CONFIG
    assert info.value.field == "stt_early_finish_s"
    assert "stt_early_finish_s" in info.value.message


def test_assignment_is_validated_too() -> None:
    cfg = Config()
    with pytest.raises(ValueError, match="stt_early_finish_s"):  # pydantic's, as for any field
        cfg.stt_early_finish_s = -1
    cfg.stt_early_finish_s = 0
    assert cfg.stt_early_finish_s is None
