"""`SessionRef`: a session's view of the worker actor that hosts it.

Workers are reused across sessions, so a raw actor handle outlives the session it was obtained
for. A `SessionRef` looks like the handle (`ref.push_audio.remote(frames)`) but sends every call
through `SessionActor.call` with its session id: once that session has ended, the call fails with
`session_not_active` instead of reaching whoever the worker serves next.
"""

from __future__ import annotations

from typing import Any


class _BoundMethod:
    __slots__ = ("_actor", "_method", "_session_id")

    def __init__(self, actor: Any, session_id: str, method: str) -> None:
        self._actor, self._session_id, self._method = actor, session_id, method

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._actor.call.remote(self._session_id, self._method, *args, **kwargs)


class SessionRef:
    __slots__ = ("actor", "session_id")

    def __init__(self, actor: Any, session_id: str) -> None:
        self.actor = actor
        self.session_id = session_id

    def __getattr__(self, method: str) -> _BoundMethod:
        return _BoundMethod(self.actor, self.session_id, method)

    def __reduce__(self) -> tuple[Any, tuple[Any, str]]:
        return SessionRef, (self.actor, self.session_id)
