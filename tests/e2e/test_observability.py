"""What an operator sees of a session besides metrics and traces: the actors' names in Ray's
log prefixes (`session:<id>`, `session:<id>/stt`, …), their log lines as JSON carrying the
session id, and a config read back with its secrets masked (and sent back without losing them)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from backend.errors import BackendError
from backend.iface import SessionConfig
from tests.conftest import SESSION_STAGES, make_config, wait_for

pytestmark = pytest.mark.ray

PREFIX = ":actor_name:"  # the line Ray's log monitor takes a worker's log prefix from


def worker_logs(pid: int, ext: str) -> str:
    import ray

    logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path())
    return "".join(p.read_text(errors="replace") for p in logs.glob(f"worker-*-{pid}.{ext}"))


def prefixes(pid: int) -> list[str]:
    return [
        line.removeprefix(PREFIX)
        for line in worker_logs(pid, "err").splitlines()
        if line.startswith(PREFIX)
    ]


def json_lines(pid: int, session_id: str) -> list[dict[str, Any]]:
    out = []
    for line in worker_logs(pid, "err").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("session_id") == session_id:
                out.append(entry)
    return out


async def test_session_actors_are_named_for_their_session_and_log_json(
    backend: Any, base_url: str
) -> None:
    # Stages in processes of their own (the `session` placement), each named for the call.
    await backend.update_config(make_config(enable_structured_logging=True, **SESSION_STAGES))
    sess = await backend.create_session(SessionConfig(user_id="named-user", agent={"type": "echo"}))
    sid, info = sess.id, sess.info
    worker = info["worker"]
    pids = {
        "": info["pid"],
        "/stt": info["stages"]["stt"]["pid"],
        "/tts": info["stages"]["tts"]["pid"],
    }

    async def named() -> bool:
        return all(prefixes(pid)[-1:] == [f"session:{sid}{sfx}"] for sfx, pid in pids.items())

    assert await wait_for(named, timeout_s=20), {s: prefixes(p)[-3:] for s, p in pids.items()}
    for sfx, pid in pids.items():
        (started,) = [e for e in json_lines(pid, sid) if e["message"] == "session started"]
        assert started["user_id"] == "named-user" and started["provider"] == "local"
        assert started.get("stage") == (sfx[1:] or None)
    await backend.close_session(sid)

    async def idle_again() -> bool:  # back to the pool: the worker's own name again
        return all(prefixes(pid)[-1:] == [f"{worker}{sfx}"] for sfx, pid in pids.items())

    assert await wait_for(idle_again, timeout_s=20), {s: prefixes(p)[-3:] for s, p in pids.items()}
    assert any(e["message"] == "session ended" for e in json_lines(info["pid"], sid))


async def test_get_config_masks_secrets_and_a_read_back_config_keeps_them(
    backend: Any,
) -> None:
    secret = "s3cret-" + secrets.token_hex(6)
    turn = {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": secret}
    await backend.update_config(make_config(provider_config={"ice_servers": [turn]}))
    shown = await backend.get_config()
    assert shown.provider_config["ice_servers"][0]["credential"] == "***"
    assert secret not in shown.model_dump_json()
    # Sent back as read (a changed cap, masked secret): the running secret stays.
    applied = await backend.update_config(shown.model_copy(update={"max_concurrent_sessions": 7}))
    assert applied.max_concurrent_sessions == 7 and secret not in applied.model_dump_json()
    sess = await backend.create_session(
        SessionConfig(user_id="masked", transport="webrtc", agent={"type": "echo"})
    )
    try:
        assert sess.info["media"]["ice_servers"][0]["credential"] == secret
    finally:
        await backend.close_session(sess.id)
    # A masked value with no secret behind it is an error naming the field, not "***" kept.
    await backend.update_config(make_config())
    with pytest.raises(BackendError) as err:
        await backend.update_config(
            make_config(provider_config={"ice_servers": [{**turn, "credential": "***"}]})
        )
    assert err.value.code.value == "invalid_config"
    assert err.value.field == "provider_config.ice_servers.0.credential"
