"""`pipecat` with `daily_api_key`: a Daily room per session, made through Daily's REST API (a
loopback fake of it) after admission, a real Pipecat bot started into it through its runner,
the room deleted when the session closes — or at once when the session cannot start."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.errors import BackendError, ErrorCode
from providers.pipecat.backend import PipecatBackendProvider
from tests.conftest import wait_for
from tests.e2e.providers_fixture import pipecat_bot_server
from tests.fakes.daily_api import VALID_KEY, FakeDaily, running_fake_daily


@pytest.fixture
async def daily() -> AsyncIterator[FakeDaily]:
    async with running_fake_daily() as fake:
        yield fake


@pytest.fixture(scope="module")
async def daily_bot(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[str, Path]]:
    """One bot server for the module (starting one takes seconds); it records each start."""
    record = tmp_path_factory.mktemp("daily-bot") / "bot.jsonl"
    async with pipecat_bot_server("daily", PIPECAT_BOT_RECORD=str(record)) as url:
        yield url, record


def provider(daily: FakeDaily, bot_url: str, key: str = VALID_KEY) -> PipecatBackendProvider:
    return PipecatBackendProvider(
        {
            "pipecat_server_url": bot_url,
            "daily_api_key": key,
            "daily_api_url": daily.base_url,
            "room_name_prefix": "calls",
        }
    )


async def test_a_session_gets_its_own_room_and_a_bot_in_it(
    daily: FakeDaily, daily_bot: tuple[str, Path]
) -> None:
    bot_url, record = daily_bot
    p = provider(daily, bot_url)
    media = await p.open_session("s1", "alice", "ws://unused")
    assert media.url == "https://voice-tests.daily.co/calls-s1"
    assert daily.rooms["calls-s1"]["privacy"] == "private"
    user, bot = daily.tokens
    assert (user["user_id"], user["is_owner"]) == ("alice", False)
    assert bot["is_owner"] is True and bot["room_name"] == "calls-s1"
    assert _token_props(media.token) == user  # the user's token, not the owner's
    (started,) = await wait_for(lambda: _starts(record, "s1"))  # the runner starts it async
    assert started["room_url"] == media.url and _token_props(started["token"]) == bot
    assert (await p.check_health())["reachable"] is True

    await p.open_session("s2", "bob", "ws://unused")  # one room per session, never shared
    assert set(daily.rooms) == {"calls-s1", "calls-s2"}
    await p.close_session("s1")
    assert set(daily.rooms) == {"calls-s2"} and daily.deleted == ["calls-s1"]


async def test_a_session_that_cannot_start_leaves_no_room(
    daily: FakeDaily, daily_bot: tuple[str, Path]
) -> None:
    daily.fail_tokens = True
    with pytest.raises(BackendError) as failed:
        await provider(daily, daily_bot[0]).open_session("s1", "alice", "ws://unused")
    assert failed.value.code is ErrorCode.CONNECTION_FAILED
    assert "meeting-tokens" in failed.value.message
    assert daily.rooms == {} and daily.deleted == ["calls-s1"]


async def test_a_wrong_key_is_an_authentication_error_without_the_key(
    daily: FakeDaily, daily_bot: tuple[str, Path]
) -> None:
    with pytest.raises(BackendError) as failed:
        await provider(daily, daily_bot[0], key="wrong-secret").open_session("s1", "a", "ws://x")
    assert failed.value.code is ErrorCode.AUTHENTICATION_FAILED
    assert "wrong-secret" not in str(failed.value) and daily.rooms == {}


async def _starts(record: Path, session_id: str) -> list[dict]:
    lines = record.read_text().splitlines() if record.exists() else []
    return [b for b in map(json.loads, lines) if b["session_id"] == session_id]


def _token_props(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.encode()))
