"""A backend `Config` from a YAML or TOML file and `VOICE_BACKEND_*` environment variables.

Precedence: the file, then the environment, then explicit overrides (CLI flags). Every value goes
through `Config`, so a bad one fails with the same message as in the Python API, plus where it
came from. This is the one module that reads the backend's environment variables.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from backend.errors import BackendError, ErrorCode
from backend.iface import Config

ENV_PREFIX = "VOICE_BACKEND_"
# The CLI's own key for calling a secured backend: it shares the prefix but belongs to the client,
# so a shell that exports it must still be able to start the server.
CLIENT_API_KEY_ENV = "VOICE_BACKEND_API_KEY"
CLIENT_VARIABLES = frozenset({CLIENT_API_KEY_ENV})
_OP = "config.load"


def read_file(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise BackendError(_OP, ErrorCode.INVALID_CONFIG, f"{path}: {exc.strerror}") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise BackendError(
                _OP, ErrorCode.INVALID_CONFIG, f"{path}: use a .yaml, .yml or .toml file"
            )
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise BackendError(_OP, ErrorCode.INVALID_CONFIG, f"{path}: not valid: {exc}") from None
    if not isinstance(data, dict):
        raise BackendError(_OP, ErrorCode.INVALID_CONFIG, f"{path}: must be a mapping of fields")
    return data


def read_env(env: Mapping[str, str]) -> dict[str, Any]:
    """`VOICE_BACKEND_MAX_CONCURRENT_SESSIONS=5` → {"max_concurrent_sessions": "5"}; dict fields
    (`provider_config`, `stage_provider_config`) are JSON. The client's variables are not ours."""
    fields = Config.model_fields
    out: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key in CLIENT_VARIABLES:
            continue
        name = key.removeprefix(ENV_PREFIX).lower()
        if name not in fields:
            raise BackendError(
                _OP, ErrorCode.INVALID_CONFIG, f"{key}: no Config field {name!r}", field=name
            )
        if name in ("provider_config", "stage_provider_config"):
            try:
                value = json.loads(value)
            except ValueError:
                raise BackendError(
                    _OP, ErrorCode.INVALID_CONFIG, f"{key}: must be a JSON object", field=name
                ) from None
        out[name] = value
    return out


def load_config(
    path: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    layers = [
        (read_file(path) if path else {}, str(path)),
        (read_env(os.environ if env is None else env), "environment"),
        ({k: v for k, v in overrides.items() if v is not None}, "arguments"),
    ]
    for layer, source in layers:
        values.update(layer)
        sources.update(dict.fromkeys(layer, source))
    try:
        return Config(**values)
    except BackendError as err:
        where = sources.get(err.field or "", "")
        if not where:
            raise
        raise BackendError(
            err.op, err.code, f"{err.message} (from {where})", field=err.field
        ) from None
