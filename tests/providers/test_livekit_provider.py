"""The livekit provider's configuration and webhook verification, in process (no server needed:
the server-facing parts are tested against a real LiveKit server in tests/e2e/test_livekit.py)."""

from __future__ import annotations

import pytest
from livekit import api

from backend.errors import BackendError, ErrorCode
from backend.iface import Config
from providers.livekit.backend import LiveKitBackendProvider, event_body, sign_webhook
from providers.registry import BACKENDS

SECRET = "unit-test-secret-unit-test-secret-0123"
GOOD = {"url": "wss://lk.example.com", "api_key": "key1", "api_secret": SECRET}


def test_registered_by_name() -> None:
    assert BACKENDS.resolve("livekit") is LiveKitBackendProvider
    caps = LiveKitBackendProvider(GOOD).capabilities()
    assert caps.supports_multi_user and "opus" in caps.supported_codecs
    assert caps.supports_stt_tts and caps.supports_s2s


def test_environment_fills_what_provider_config_leaves_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIVEKIT_URL", "ws://from-env:7880")
    monkeypatch.setenv("LIVEKIT_API_KEY", "env-key")
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    cfg = LiveKitBackendProvider({}).cfg
    assert (cfg.url, cfg.api_key, cfg.secret()) == ("ws://from-env:7880", "env-key", SECRET)
    assert LiveKitBackendProvider({"url": "wss://explicit"}).cfg.url == "wss://explicit"


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({**GOOD, "url": None}, "provider_config.url", "LIVEKIT_URL"),
        ({**GOOD, "api_secret": ""}, "provider_config.api_secret", "LIVEKIT_API_SECRET"),
        ({**GOOD, "url": "ftp://x"}, "provider_config.url", "ws://"),
        ({**GOOD, "room": "typo"}, "provider_config.room", "Extra inputs"),
        ({**GOOD, "token_ttl_s": "long"}, "provider_config.token_ttl_s", "number"),
    ],
)
def test_bad_config_names_the_key(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, object], field: str, words: str
) -> None:
    for var in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(BackendError) as info:
        LiveKitBackendProvider(values)
    assert info.value.code is ErrorCode.INVALID_CONFIG and info.value.field == field
    assert words in info.value.message and SECRET not in info.value.message


def test_secret_stays_out_of_reprs_and_public_config() -> None:
    provider = LiveKitBackendProvider(GOOD)
    assert SECRET not in repr(provider.cfg) and SECRET not in str(provider.cfg)
    public = Config(provider="livekit", provider_config=GOOD).public_dict()
    assert public["provider_config"]["api_secret"] == "***"


def test_webhook_is_verified_and_mapped() -> None:
    provider = LiveKitBackendProvider(GOOD)
    joined = event_body(
        "participant_joined",
        room=api.Room(name="voice-s1"),
        participant=api.ParticipantInfo(identity="user-s1"),
    )
    update = provider.receive_webhook(joined, sign_webhook(joined, "key1", SECRET))
    assert (update.kind, update.session_id) == ("user_joined", "s1")

    dropped = event_body(
        "participant_left",
        participant=api.ParticipantInfo(
            identity="user-s1", disconnect_reason=api.DisconnectReason.CONNECTION_TIMEOUT
        ),
    )
    assert provider.receive_webhook(dropped, sign_webhook(dropped, "key1", SECRET)).kind == (
        "user_dropped"
    )
    finished = event_body("room_finished", room=api.Room(name="shared"))
    update = provider.receive_webhook(finished, sign_webhook(finished, "key1", SECRET))
    assert (update.kind, update.session_id, update.room) == ("room_finished", None, "shared")
    agent = event_body("participant_joined", participant=api.ParticipantInfo(identity="agent-s1"))
    assert provider.receive_webhook(agent, sign_webhook(agent, "key1", SECRET)).kind == "ignored"

    for auth in (
        sign_webhook(joined, "key1", "some-other-secret-some-other-secret"),  # forged
        sign_webhook(joined, "key1", SECRET, ttl_s=-300),  # stale
        sign_webhook(finished, "key1", SECRET),  # signed for another body
        "not a token",
    ):
        with pytest.raises(BackendError) as info:
            provider.receive_webhook(joined, auth)
        assert info.value.code is ErrorCode.AUTHENTICATION_FAILED
        assert SECRET not in info.value.message
