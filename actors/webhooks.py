"""Provider webhooks onto session state: the provider verifies and decodes, this applies.

`user_joined` marks the session's media connected; the user leaving on purpose or the room
finishing ends the session (slot freed, provider side released); a user dropped by the network
is marked `reconnecting` and the session's transport gives them time to come back.
"""

from __future__ import annotations

from typing import Any

from actors.control_plane import ControlPlane
from backend.errors import BackendError, ErrorCode


async def apply_webhook(sup: ControlPlane, body: str, authorization: str) -> dict[str, Any]:
    update = sup.provider.receive_webhook(body, authorization)  # 401 when forged or stale
    if update.kind == "ignored":
        return {"event": update.event, "sessions": []}
    if update.session_id is not None:
        session_ids = [update.session_id]
    else:
        records = await sup.registry.list.remote()
        session_ids = [
            r["session_id"] for r in records if (r.get("media") or {}).get("room") == update.room
        ]
    applied = []
    for session_id in session_ids:
        if await _apply(sup, update.kind, session_id):
            applied.append(session_id)
    return {"event": update.event, "sessions": applied}


async def _apply(sup: ControlPlane, kind: str, session_id: str) -> bool:
    if kind == "user_joined":
        return await sup.registry.annotate.remote(session_id, {"connection": "connected"})
    if kind == "user_dropped":
        return await sup.registry.annotate.remote(session_id, {"connection": "reconnecting"})
    reason = "the room finished" if kind == "room_finished" else "the user left the room"
    try:
        await sup.close_session(session_id, reason)
    except BackendError as err:
        if err.code is ErrorCode.SESSION_NOT_FOUND:
            return False  # already ended (the session's own transport saw it first)
        raise
    return True
