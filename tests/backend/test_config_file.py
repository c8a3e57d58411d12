"""A backend Config from YAML/TOML files and VOICE_BACKEND_* variables: precedence, and bad
values named with where they came from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backend.config_file import load_config
from backend.errors import BackendError, ErrorCode


def test_file_then_environment_then_arguments(tmp_path: Path) -> None:
    yml = tmp_path / "backend.yaml"
    yml.write_text("max_concurrent_sessions: 7\nlatency_target: 0.8\nvad_provider: webrtc\n")
    env = {"VOICE_BACKEND_LATENCY_TARGET": "0.3", "VOICE_BACKEND_PROVIDER_CONFIG": '{"port": 9}'}
    cfg = load_config(yml, env=env, max_concurrent_sessions=3)
    assert cfg.max_concurrent_sessions == 3  # argument over file
    assert cfg.latency_target == 0.3  # environment over file
    assert cfg.vad_provider == "webrtc" and cfg.provider_config == {"port": 9}


def test_toml(tmp_path: Path) -> None:
    toml = tmp_path / "backend.toml"
    toml.write_text('pipeline_type = "s2s"\ns2s_provider = "local"\ntimeout = 12\n')
    cfg = load_config(toml, env={})
    assert cfg.pipeline_type.value == "s2s" and cfg.timeout == 12


@pytest.mark.parametrize(
    ("text", "env", "field", "where"),
    [
        ("latency_target: 9\n", {}, "latency_target", "backend.yaml"),
        ("", {"VOICE_BACKEND_TIMEOUT": "forever"}, "timeout", "environment"),
        ("", {"VOICE_BACKEND_COLOUR": "blue"}, "colour", "VOICE_BACKEND_COLOUR"),
        ("", {"VOICE_BACKEND_PROVIDER_CONFIG": "{nope"}, "provider_config", "JSON"),
        ("surprise: 1\n", {}, "surprise", "backend.yaml"),
    ],
)
def test_bad_values_are_named_with_their_source(
    tmp_path: Path, text: str, env: dict[str, str], field: str, where: str
) -> None:
    yml = tmp_path / "backend.yaml"
    yml.write_text(text)
    with pytest.raises(BackendError) as info:
        load_config(yml, env=env)
    assert info.value.code is ErrorCode.INVALID_CONFIG
    assert info.value.field == field and where in info.value.message


def test_unreadable_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="No such file"):
        load_config(tmp_path / "missing.yaml", env={})
    ini = tmp_path / "backend.ini"
    ini.write_text("x=1")
    with pytest.raises(BackendError, match=r"\.yaml, \.yml or \.toml"):
        load_config(ini, env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(BackendError, match="mapping"):
        load_config(bad, env={})


# Every variable the README or the CLI documents, with a value a user would export. Client-side
# and Ray's own variables share the server's shell, so none of them may stop it from starting.
DOCUMENTED_ENV = {
    "VOICE_BACKEND_API_KEY": "client-key-0123456789abcdef",  # the CLI's, for a secured backend
    "VOICE_BACKEND_API_KEYS": "server-key-0123456789abcdef=alice",
    "VOICE_BACKEND_MAX_CONCURRENT_SESSIONS": "50",
    "RAY_ADDRESS": "127.0.0.1:6379",
    "RAY_OVERRIDE_RESOURCES": '{"voice_session": 100}',
    "LIVEKIT_URL": "ws://127.0.0.1:7880",
    "LIVEKIT_API_KEY": "devkey",
    "LIVEKIT_API_SECRET": "secret",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces",
    "VOICE_INGRESS_REPLICAS": "2",
    "VOICE_INGRESS_ON_HEAD": "1",
    "VOICE_RAY_DASHBOARD": "0",
    "VOICE_CACHE_DIR": "/tmp/voice-cache",
}


def test_every_variable_the_readme_names_is_covered() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    named = set(re.findall(r"\b((?:VOICE|RAY|LIVEKIT|OTEL)_[A-Z_]*[A-Z])\b", readme))
    named.discard("VOICE_BACKEND")  # the prefix of `VOICE_BACKEND_<FIELD>`
    assert named <= DOCUMENTED_ENV.keys(), named - DOCUMENTED_ENV.keys()


@pytest.mark.parametrize("names", [[name] for name in DOCUMENTED_ENV] + [list(DOCUMENTED_ENV)])
def test_documented_variables_never_stop_the_server_from_starting(
    monkeypatch: pytest.MonkeyPatch, names: list[str]
) -> None:
    """What `voice-backend serve` and `serve run serve_app:build_app` read before Ray starts."""
    from backend import cli

    # build_app may set it: recorded first (setenv), so the test's end restores it (unset),
    # else every Ray node the suite starts later would offer 100 session slots.
    monkeypatch.setenv("RAY_OVERRIDE_RESOURCES", "")
    monkeypatch.delenv("RAY_OVERRIDE_RESOURCES")
    for name in names:
        monkeypatch.setenv(name, DOCUMENTED_ENV[name])
    config = cli._config(cli._parser().parse_args(["serve"]))
    if "VOICE_BACKEND_MAX_CONCURRENT_SESSIONS" in names:
        assert config.max_concurrent_sessions == 50
    assert bool(config.api_keys) == ("VOICE_BACKEND_API_KEYS" in names)

    import serve_app

    assert serve_app.build_app({}) is not None


def test_the_clients_api_key_is_not_a_server_field() -> None:
    cfg = load_config(env={"VOICE_BACKEND_API_KEY": "client-key-0123456789abcdef"})
    assert not cfg.api_keys
