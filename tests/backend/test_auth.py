"""backend/auth.py and backend/http_limits.py alone: keys, hooks, media tokens, quotas, the token
bucket, and the body-size cap on a real ASGI app (no Ray)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from backend.auth import (
    Credentials,
    Principal,
    TokenBucket,
    authenticate,
    check_media_token,
    check_rate,
    check_user_quota,
    credentials_from,
    key_digest,
    parse_api_keys,
    retention_record,
)
from backend.errors import BackendError
from backend.http_limits import BodySizeLimit
from backend.iface import Config

KEY = "k" * 20


def test_keys_are_stored_as_digests_in_every_spelling() -> None:
    spellings: list[Any] = [
        f"{KEY}=alice",
        [f"{KEY}=alice"],
        {KEY: "alice"},
        [{"key": KEY, "user_id": "alice"}],
        [{"key_sha256": key_digest(KEY), "user_id": "alice"}],
    ]
    for value in spellings:
        assert parse_api_keys(value) == [{"key_sha256": key_digest(KEY), "user_id": "alice"}]
    config = Config(api_keys=f"{KEY},{'s' * 20}=bob")
    dumped = str(config.model_dump(mode="json")) + repr(config)
    assert KEY not in dumped and "s" * 20 not in dumped
    assert Config(**config.model_dump(mode="json")).api_keys == config.api_keys
    assert config.public_dict()["api_keys"][0]["key_sha256"] == "***"


@pytest.mark.parametrize("value", ["short", [42], [{"user_id": "x"}], 3.5])
def test_bad_keys_are_refused_without_echoing_them(value: Any) -> None:
    with pytest.raises(BackendError) as info:
        Config(api_keys=value)
    assert info.value.field == "api_keys" and "short" not in info.value.message


async def test_keys_hooks_and_the_open_default() -> None:
    keys = parse_api_keys(f"{KEY}=alice,{'s' * 20}")
    assert (await authenticate(Credentials(None), [], None)).user_id is None
    assert (await authenticate(Credentials(KEY), keys, None)).user_id == "alice"
    assert (await authenticate(Credentials("s" * 20), keys, None)).user_id is None
    for creds in (Credentials(None), Credentials("x" * 20)):
        with pytest.raises(BackendError) as info:
            await authenticate(creds, keys, None)
        assert info.value.http_status == 401

    async def hook(creds: Credentials) -> Any:
        if creds.headers.get("x-boom"):
            raise RuntimeError(f"secret {creds.api_key}")
        return Principal("svc-user") if creds.api_key == KEY else None

    assert (await authenticate(Credentials(KEY), [], hook)).user_id == "svc-user"
    with pytest.raises(BackendError) as info:
        await authenticate(Credentials(KEY, {"x-boom": "1"}), [], hook)
    assert KEY not in str(info.value) and info.value.http_status == 401


def test_credentials_from_either_header() -> None:
    assert credentials_from({"Authorization": "Bearer abc"}, "GET", "/", None).api_key == "abc"
    assert credentials_from({"X-API-Key": "xyz"}, "GET", "/", None).api_key == "xyz"
    assert credentials_from({"Authorization": "Basic abc"}, "GET", "/", None).api_key is None


def test_media_tokens_are_scoped_and_expire() -> None:
    now = time.time()
    a = {"session_id": "a", "media": {"token": "tok-a", "token_expires_at": now + 60}}
    check_media_token(a, "tok-a", "ws")
    for token in ("tok-b", "", "tok-a "):
        with pytest.raises(BackendError, match="missing or wrong"):
            check_media_token(a, token, "ws")
    with pytest.raises(BackendError, match="expired"):
        check_media_token(a, "tok-a", "ws", now=now + 61)


async def test_quota_and_token_bucket() -> None:
    records = {str(i): {"user_id": "u"} for i in range(2)}
    check_user_quota(records, "u", 0)
    check_user_quota(records, "v", 2)
    with pytest.raises(BackendError, match="max_sessions_per_user=2") as info:
        check_user_quota(records, "u", 2)
    assert info.value.http_status == 429
    bucket = TokenBucket(rate_per_min=3)
    for _ in range(3):
        await check_rate(bucket, "u")
    with pytest.raises(BackendError) as info:
        await check_rate(bucket, "u")
    assert 1 <= info.value.details["retry_after_s"] <= 20
    await check_rate(bucket, "v")


def test_retention_record_drops_the_transcript_when_told() -> None:
    info = {"session_id": "s", "history": [{"role": "user", "content": "hi"}]}
    assert retention_record(info, "u", "done", retain_transcripts=True)["history"]
    assert retention_record(info, "u", "done", retain_transcripts=False)["history"] == []


async def test_body_size_limit_refuses_large_and_streamed_bodies() -> None:
    app = FastAPI()
    app.add_middleware(BodySizeLimit)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    BodySizeLimit.max_bytes = 1024
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.post("/echo", content=b"x" * 1000)).json() == {"bytes": 1000}
            resp = await http.post("/echo", content=b"x" * 5000)
            assert resp.status_code == 413
            assert resp.json()["error"]["code"] == "invalid_format"

            async def chunks() -> Any:
                for _ in range(10):
                    yield b"y" * 500

            resp = await http.post("/echo", content=chunks())
            assert resp.status_code == 413 and "1024 bytes" in resp.json()["error"]["message"]
    finally:
        BodySizeLimit.max_bytes = 1 << 20
