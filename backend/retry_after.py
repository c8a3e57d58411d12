"""`Retry-After` read the one way: the seconds a server asks a caller to wait. Used by the
provider retry loop (`providers/retry.py`) and by the HTTP client of this service, which puts
it in `BackendError.details["retry_after_s"]` as the Python handle does."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping


def retry_after_s(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds a server asks us to wait (`Retry-After: <seconds>` or an HTTP date, or the
    `retry-after-ms` OpenAI sends), or None."""
    if not headers:
        return None
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    with_ms = lower.get("retry-after-ms")
    if with_ms is not None:
        try:
            return valid_seconds(float(with_ms) / 1000.0)
        except ValueError:
            pass
    value = lower.get("retry-after")
    if value is None:
        return None
    try:
        return valid_seconds(float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def valid_seconds(seconds: float) -> float | None:
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
