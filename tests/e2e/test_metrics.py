"""The backend's Ray metrics, scraped from the node's Prometheus endpoint (Ray's metrics agent)
after real requests, a real call, a refused admission and a close: the series the Grafana
dashboard (scripts/deploy/grafana_dashboard.json) queries exist with the values we caused."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from backend.http_client import HttpClient
from tests.conftest import make_config, wait_for

pytestmark = pytest.mark.ray

DASHBOARD = Path(__file__).resolve().parents[2] / "scripts" / "deploy" / "grafana_dashboard.json"


def metrics_url() -> str:
    import ray

    node = ray._private.worker.global_worker.node
    return f"http://{node.node_ip_address}:{node.metrics_export_port}/metrics"


Samples = dict[str, list[tuple[dict[str, str], float]]]


async def scrape() -> Samples:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(metrics_url())).text
    out: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name].append((s.labels, s.value))
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        v for tags, v in samples.get(name, []) if all(tags.get(k) == x for k, x in labels.items())
    )


async def test_backend_metrics_reach_rays_prometheus_endpoint(
    backend: Any, base_url: str, hello_16k: bytes
) -> None:
    before = await scrape()
    async with HttpClient(base_url) as client, httpx.AsyncClient(base_url=base_url) as http:
        assert (await http.get("/v1/health")).status_code == 200
        assert (await http.get("/v1/sessions/no-such-session")).status_code == 404
        session = await client.create_session(user_id="metrics-user")
        result = await client.talk(session, hello_16k, 16000, realtime=False)
        assert result.audio, "the call must answer for throughput out to count"
        await backend.update_config(make_config(max_concurrent_sessions=1))
        refused = await http.post("/v1/sessions", json={"user_id": "metrics-refused"})
        assert refused.status_code == 503, refused.text
        await client.close_session(session["session_id"])

    def grew(now: Samples, name: str, **labels: str) -> bool:
        # Every backend series says its provider: growth is looked for in `local`'s rows only
        # (earlier tests' backends, with other providers, may still flush their own late).
        if name.startswith("ray_backend_"):
            labels = {"provider": "local", **labels}
        return total(now, name, **labels) > total(before, name, **labels)

    expectations = {
        "requests": ("ray_backend_requests_total", {"route": "/v1/health", "status": "200"}),
        "errors": ("ray_backend_errors_total", {"error_code": "session_not_found"}),
        "handle": ("ray_backend_requests_total", {"route": "handle:update_config"}),
        "latency": ("ray_backend_latency_seconds_count", {"route": "/v1/sessions"}),
        "sessions": ("ray_backend_sessions_total", {"provider": "local"}),
        "creation": ("ray_backend_session_creation_time_seconds_count", {}),
        "rejected": (
            "ray_backend_admission_rejections_total",
            {"reason": "max_concurrent_sessions", "error_code": "session_limit_exceeded"},
        ),
        "ends": ("ray_backend_session_ends_total", {"reason": "closed"}),
        "bytes_in": ("ray_backend_throughput_bytes_total", {"direction": "in"}),
        "bytes_out": ("ray_backend_throughput_bytes_total", {"direction": "out"}),
        "turns": ("ray_voice_turns_total", {}),
    }

    async def all_grew() -> Samples | None:
        now = await scrape()
        missing = [k for k, (n, labels) in expectations.items() if not grew(now, n, **labels)]
        return None if missing else now

    now = await wait_for(all_grew, timeout_s=60, interval_s=2)
    if now is None:
        now = await scrape()
        missing = [k for k, (n, labels) in expectations.items() if not grew(now, n, **labels)]
        pytest.fail(f"series that did not grow: {missing}")
    # Audio in is what we sent (16-bit PCM), at least; every backend series says its provider.
    sent = total(now, "ray_backend_throughput_bytes_total", direction="in") - total(
        before, "ray_backend_throughput_bytes_total", direction="in"
    )
    assert sent >= len(hello_16k)
    # Gauges from the registry: free slots and warm spares per node, active sessions.
    assert now["ray_backend_session_slots_free"] and now["ray_backend_warm_pool_size"]
    assert all("node" in tags for tags, _ in now["ray_backend_session_slots_free"])
    assert "ray_backend_sessions_active" in now


def test_the_dashboard_queries_only_series_the_backend_exports() -> None:
    """Every `ray_backend_*` / `ray_voice_*` name in the Grafana JSON is one we define."""
    import re

    from actors import metrics

    exprs = [
        t["expr"]
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for t in panel.get("targets", [])
    ]
    used = {m for e in exprs for m in re.findall(r"ray_((?:backend|voice)_[a-z_]+)", e)}
    source = Path(metrics.__file__).read_text()
    kinds = {"c": "Counter", "g": "Gauge", "h": "Histogram"}
    defined = {
        name: kinds.get(kind, kind)
        for kind, name in re.findall(r'\b(Counter|Gauge|Histogram|c|g|h)\(\s*"([a-z_]+)"', source)
    }
    exported: dict[str, str] = {}  # Prometheus name as Ray exports it → metric
    for name, kind in defined.items():
        if kind == "Counter":  # Ray's exporter adds `_total` to counters that lack it
            exported[name if name.endswith("_total") else f"{name}_total"] = name
        elif kind == "Gauge":
            exported[name] = name
        else:
            exported.update({f"{name}_{s}": name for s in ("bucket", "count", "sum")})
    assert len(defined) >= 16, defined
    assert used <= exported.keys(), used - exported.keys()
    assert {exported[u] for u in used} == defined.keys(), "every metric has a panel"


async def test_a_stage_process_killed_and_restarted_by_ray_is_counted(backend: Any) -> None:
    import os
    import signal

    from backend.iface import SessionConfig
    from tests.conftest import SESSION_STAGES, make_config

    await backend.update_config(make_config(**SESSION_STAGES))  # a stage actor of its own
    sess = await backend.create_session(SessionConfig(user_id="restart", agent={"type": "echo"}))
    stt_pid = sess.info["stages"]["stt"]["pid"]
    before = total(await scrape(), "ray_backend_stage_restarts_total", stage="stt")
    os.kill(stt_pid, signal.SIGKILL)  # Ray restarts the stage actor (max_restarts)

    async def counted() -> bool:
        now = total(await scrape(), "ray_backend_stage_restarts_total", stage="stt")
        return now > before

    try:
        assert await wait_for(counted, timeout_s=60, interval_s=2)
        rows = (await scrape())["ray_backend_stage_restarts_total"]
        assert any(tags.get("provider") == "pocketsphinx" for tags, _ in rows), rows
    finally:
        await backend.close_session(sess.id)


async def test_a_failing_provider_call_is_counted_with_its_error_code(
    backend: Any, base_url: str, hello_16k: bytes
) -> None:
    from tests.fakes.cartesia import VALID_KEY, running_fake_cartesia

    async with running_fake_cartesia() as fake:
        options = {"api_key": VALID_KEY, "api_url": fake.base_url, "sample_rate": 16000}
        await backend.update_config(
            make_config(tts_provider="cartesia", stage_provider_config={"cartesia": options})
        )
        before = total(await scrape(), "ray_backend_provider_errors_total", stage="tts")
        fake.fail_tts = {"status_code": 429, "title": "Too many requests", "message": "slow"}
        async with HttpClient(base_url) as client:
            session = await client.create_session(user_id="metrics-provider-error")
            result = await client.talk(session, hello_16k, 16000, realtime=False)
            await client.close_session(session["session_id"])
    assert result.replies, result.events  # the retry spoke the reply

    async def counted() -> bool:
        now = await scrape()
        grown = total(now, "ray_backend_provider_errors_total", stage="tts") > before
        return (
            grown
            and total(
                now,
                "ray_backend_provider_errors_total",
                stage="tts",
                provider="cartesia",
                error_code="rate_limit_exceeded",
            )
            > 0
        )

    assert await wait_for(counted, timeout_s=60, interval_s=2)
