"""A backend Config from YAML/TOML files and VOICE_BACKEND_* variables: precedence, and bad
values named with where they came from."""

from __future__ import annotations

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
