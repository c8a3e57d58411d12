"""Log set-up for every process of the backend: plain text, or one JSON object per line when
`Config.enable_structured_logging`, always carrying the session id where there is one."""

from __future__ import annotations

import contextvars
import json
import logging
import time
from typing import Any

session_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "session_id", default=None
)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class _SessionFilter(logging.Filter):
    """Stamp each record with the session it was logged for (if any)."""

    def __init__(self, session_id: str | None = None, fields: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.session_id = session_id
        self.fields = dict(fields or {})

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "session_id", None):
            record.session_id = session_id_var.get() or self.session_id
        for key, value in self.fields.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(
    *,
    structured: bool,
    session_id: str | None = None,
    level: int = logging.INFO,
    fields: dict[str, Any] | None = None,
) -> None:
    """Install one handler on the root logger of this process (idempotent). `fields` are added
    to every record (e.g. the user id and provider of the session an actor serves)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_voice_backend", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler._voice_backend = True  # type: ignore[attr-defined]
    handler.addFilter(_SessionFilter(session_id, fields))
    if structured:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(session_id)s] %(message)s")
        )
    root.addHandler(handler)
    root.setLevel(level)
