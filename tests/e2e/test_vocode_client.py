"""Vocode clients talk to a `vocode` session unchanged: the real `vocode` package's websocket
message models (tests/peers/vocode_client.py) drive a call — telephony-style 8 kHz mu-law, and
linear16 with WAV-wrapped reply chunks as Vocode's own router sends them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.http_client import HttpClient
from tests.conftest import BackendHolder
from tests.e2e.providers_fixture import run_peer, serve_provider

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
async def vocode_base_url(backend_holder: BackendHolder) -> AsyncIterator[str]:
    async for url in serve_provider(backend_holder, "vocode"):
        yield url


@pytest.fixture
def speech_file(tmp_path: Path, hello_16k: bytes) -> Path:
    path = tmp_path / "hello.pcm"
    path.write_bytes(hello_16k)
    return path


async def _call(base_url: str, speech: Path, *flags: str) -> dict:
    async with HttpClient(base_url) as client:
        session = await client.create_session(user_id="vocode-user")
        assert session["provider"] == "vocode"
        url = f"{session['media']['url']}?token={session['media']['token']}"
        try:
            return await run_peer("vocode", "vocode_client.py", url, str(speech), *flags)
        finally:
            await client.close_session(session["session_id"])


async def test_telephony_mulaw_call(vocode_base_url: str, speech_file: Path) -> None:
    got = await _call(vocode_base_url, speech_file)
    assert got["ready"]
    assert {"sender": "human", "text": "hello world"} in got["transcripts"], got
    assert {"sender": "bot", "text": "You said: hello world"} in got["transcripts"]
    assert got["reply_s"] >= 0.5 and got["reply_rms"] > 300  # mu-law decoded by audioop
    assert got["errors"] == []
    assert got["closed_after_stop"]


async def test_linear16_call_with_wav_chunks(vocode_base_url: str, speech_file: Path) -> None:
    got = await _call(vocode_base_url, speech_file, "--linear16")
    assert {"sender": "human", "text": "hello world"} in got["transcripts"], got
    assert got["reply_s"] >= 0.5 and got["reply_rms"] > 300


async def test_malformed_messages_get_errors_and_the_call_goes_on(
    vocode_base_url: str, speech_file: Path
) -> None:
    got = await _call(vocode_base_url, speech_file, "--malformed")
    messages = [e["message"] for e in got["errors"]]
    assert len(messages) == 2 and all(e["code"] == "invalid_format" for e in got["errors"])
    assert "JSON" in messages[0] and "base64" in messages[1]
    assert {"sender": "human", "text": "hello world"} in got["transcripts"]
    assert got["reply_s"] >= 0.5
