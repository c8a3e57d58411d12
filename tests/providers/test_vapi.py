"""The Vapi provider without Ray: calls created through the official SDK against the loopback
Vapi, config checks, the webhook secret, and the custom LLM's chunk format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from backend.errors import BackendError
from providers.vapi.backend import VapiBackendProvider
from providers.vapi.messages import ChunkWriter, last_user_text, parse_server_message
from tests.fakes.vapi import VALID_KEY, FakeVapi, running_fake_vapi


@pytest.fixture
async def fake() -> AsyncIterator[FakeVapi]:
    async with running_fake_vapi() as server:
        yield server


def provider(fake: FakeVapi, **extra: object) -> VapiBackendProvider:
    options = {
        "api_key": VALID_KEY,
        "api_url": fake.base_url,
        "server_secret": "s3cret",
        "public_url": "http://127.0.0.1:1",  # nothing listens: Vapi's reports go nowhere
        **extra,
    }
    return VapiBackendProvider(options)


async def test_a_phone_call_with_a_saved_assistant(fake: FakeVapi) -> None:
    p = provider(fake, assistant_id="asst-1", phone_number_id="pn-1", enable_recording=True)
    media = await p.open_session("sid-1", "+14155550100", "ws://unused")
    (body,) = fake.requests
    assert body["assistantId"] == "asst-1" and body["phoneNumberId"] == "pn-1"
    assert body["customer"] == {"number": "+14155550100"}
    overrides = body["assistantOverrides"]
    assert overrides["model"]["url"] == "http://127.0.0.1:1/v1/vapi/sid-1"
    assert overrides["artifactPlan"] == {"recordingEnabled": True}
    assert overrides["metadata"] == {"session_id": "sid-1"}
    (call_id,) = fake.calls
    assert p.calls["sid-1"]["id"] == call_id and media.token
    await p.close_session("sid-1")  # a live call is ended through its control URL
    assert fake.calls[call_id]["status"] == "ended"


async def test_a_wrong_key_is_an_authentication_error(fake: FakeVapi) -> None:
    with pytest.raises(BackendError) as err:
        await provider(fake, api_key="nope").open_session("sid", "u", "ws://unused")
    assert err.value.code == "authentication_failed" and "nope" not in str(err.value)
    assert fake.calls == {}


def test_config_is_checked_and_secrets_stay_hidden() -> None:
    with pytest.raises(BackendError) as err:
        VapiBackendProvider({"api_key": "k", "server_secret": "s", "public_url": "x"})
    assert err.value.field == "provider_config.public_url"
    with pytest.raises(BackendError) as err:
        VapiBackendProvider({"api_key": "k", "public_url": "https://a.b"})
    assert "server_secret" in str(err.value)
    with pytest.raises(BackendError) as err:
        VapiBackendProvider(
            {"api_key": "k", "server_secret": "s", "public_url": "https://a.b", "assistant": "x"}
        )
    assert "provider_config.assistant" in str(err.value)
    p = VapiBackendProvider(
        {"api_key": "k-123", "server_secret": "s-456", "public_url": "https://a"}
    )
    assert "k-123" not in repr(p.config) and "s-456" not in repr(p.config)


def test_webhook_secret_and_messages() -> None:
    p = VapiBackendProvider({"api_key": "k", "server_secret": "s-456", "public_url": "https://a"})
    p.verify({"X-Vapi-Secret": "s-456"})
    for headers in ({}, {"x-vapi-secret": "s-45"}, {"Authorization": "s-456"}):
        with pytest.raises(BackendError) as err:
            p.verify(headers)
        assert err.value.code == "authentication_failed"
    msg = parse_server_message(
        {
            "message": {
                "type": "status-update",
                "status": "in-progress",
                "call": {"id": "c1", "assistant": {"metadata": {"session_id": "sid-9"}}},
            }
        }
    )
    assert p.session_for(msg) == "sid-9" and msg.status == "in-progress"
    with pytest.raises(BackendError) as err:
        parse_server_message({"type": "status-update"})
    assert err.value.code == "invalid_format"
    with pytest.raises(BackendError):
        last_user_text({"messages": [{"role": "system", "content": "x"}]})


def test_chat_chunks_are_chat_completion_chunks() -> None:
    out = ChunkWriter("voice-backend")
    events = (out.start() + out.text("Hi") + out.end()).decode().strip().split("\n\n")
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hi"},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
