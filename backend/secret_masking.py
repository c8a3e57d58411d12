"""Secrets in provider options: masked wherever a config is shown, kept when a masked config is
sent back (so `get_config` → edit → `update_config` never wipes a key)."""

from __future__ import annotations

from typing import Any

from backend.errors import BackendError, ErrorCode

SECRET_KEY_PARTS = ("secret", "key", "token", "password", "credential")
MASK = "***"  # what `public_dict` (and `get_config`) show in place of a secret


def mask_secrets(values: dict[str, Any]) -> dict[str, Any]:
    """Secret-looking keys masked, at any depth (e.g. a TURN server's `credential`)."""

    def mask(k: str, v: Any) -> Any:
        if any(p in k.lower() for p in SECRET_KEY_PARTS) and v:
            return MASK
        if isinstance(v, dict):
            return mask_secrets(v)
        if isinstance(v, list):
            return [mask_secrets(i) if isinstance(i, dict) else i for i in v]
        return v

    return {k: mask(k, v) for k, v in values.items()}


def unmask_secrets(new: Any, current: Any, path: str = "") -> Any:
    """A config read back (`get_config`, secrets masked) and sent again keeps the secrets it
    runs with: a masked value takes the current one at the same place."""
    if new == MASK:
        if current is None or current == MASK:
            raise BackendError(
                "update_config",
                ErrorCode.INVALID_CONFIG,
                f"{path}: {MASK!r} is a masked secret and there is none to keep; give the value",
                field=path,
            )
        return current
    if isinstance(new, dict):
        cur = current if isinstance(current, dict) else {}
        return {
            k: unmask_secrets(v, cur.get(k), f"{path}.{k}" if path else k) for k, v in new.items()
        }
    if isinstance(new, list):
        cur = (
            current if isinstance(current, list) and len(current) == len(new) else [None] * len(new)
        )
        return [
            unmask_secrets(v, c, f"{path}.{i}")
            for i, (v, c) in enumerate(zip(new, cur, strict=True))
        ]
    return new
