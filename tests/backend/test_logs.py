import json
import logging

import pytest

from backend.logs import configure_logging, session_id_var


def test_structured_logs_are_json_lines_with_the_session(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(structured=True, session_id="s-42")
    logging.getLogger("voice.test").warning("turn %d done", 3, extra={"turn_id": 3})
    token = session_id_var.set("s-other")
    logging.getLogger("voice.test").info("elsewhere")
    session_id_var.reset(token)
    lines = [json.loads(x) for x in capsys.readouterr().err.strip().splitlines()]
    assert lines[0]["message"] == "turn 3 done" and lines[0]["session_id"] == "s-42"
    assert lines[0]["turn_id"] == 3 and lines[0]["level"] == "warning"
    assert lines[1]["session_id"] == "s-other"
    configure_logging(structured=False)
    logging.getLogger("voice.test").info("plain")
    assert "plain" in capsys.readouterr().err
    for handler in list(logging.getLogger().handlers):  # leave the test process as it was
        if getattr(handler, "_voice_backend", False):
            logging.getLogger().removeHandler(handler)


def test_fields_of_the_session_go_on_every_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(
        structured=True, session_id="s-7", fields={"user_id": "u-1", "provider": "local"}
    )
    logging.getLogger("voice.test").info("bound", extra={"provider": "explicit"})
    (entry,) = [json.loads(x) for x in capsys.readouterr().err.strip().splitlines()]
    assert entry["session_id"] == "s-7" and entry["user_id"] == "u-1"
    assert entry["provider"] == "explicit", "a record's own value wins over the defaults"
    for handler in list(logging.getLogger().handlers):
        if getattr(handler, "_voice_backend", False):
            logging.getLogger().removeHandler(handler)
