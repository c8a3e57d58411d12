"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis) against the running Serve app:
valid and invalid inputs alike get no 500, a declared status code, and a body that matches the
schema declared for it (the error body included). Examples are bounded (a couple of minutes on
two slow cores); every session a generated request creates is closed at once."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.ray

EXAMPLES_PER_OPERATION = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


async def test_api_conforms_to_its_schema(base_url: str) -> None:
    schema = await asyncio.to_thread(schemathesis.openapi.from_url, f"{base_url}/openapi.json")
    ops = operations(schema)
    assert {op.path for op in ops} >= {"/v1/sessions", "/v1/sessions/{session_id}", "/v1/health"}
    # Both kinds of data: schema-valid (must be served or refused cleanly) and schema-invalid.
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        for op in ops:
            await asyncio.to_thread(fuzz_operation, op, mode, base_url)


def fuzz_operation(op: Any, mode: GenerationMode, base_url: str) -> None:
    @given(case=op.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,  # the same examples every run: a failure here is reproducible
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, timeout=60)
        try:
            case.validate_response(response, checks=CHECKS)
        finally:
            _close_created(case, response, base_url)

    try:
        run()
    except Unsatisfiable:  # no parameters or body: nothing invalid to generate for it
        assert mode is GenerationMode.NEGATIVE, op.label


def _close_created(case: Any, response: Any, base_url: str) -> None:
    created = case.method.upper() == "POST" and case.path == "/v1/sessions"
    if created and response.status_code == 201:
        sid = response.json()["session_id"]
        httpx.delete(f"{base_url}/v1/sessions/{sid}", timeout=60)
