"""The deploy files: the Serve config validates against Serve's schema, matches what
`serve build` makes of the app, is what the KubeRay RayService carries, and runs for real with
`serve run` on a local Ray node it starts (then stops cleanly)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "scripts" / "deploy"
SERVE = [sys.executable, "-m", "ray.serve.scripts"]


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def test_serve_config_validates_and_matches_serve_build(tmp_path: Path) -> None:
    ours = ServeDeploySchema.model_validate(load("serve_config.yaml"))
    (app,) = ours.applications
    assert app.import_path == "serve_app:build_app" and app.route_prefix == "/"
    built_path = tmp_path / "built.yaml"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from ray.serve.scripts import cli; cli()",
            "build",
            "serve_app:app",
            "-o",
            str(built_path),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    built = ServeDeploySchema.model_validate(yaml.safe_load(built_path.read_text()))
    assert [d.name for d in built.applications[0].deployments] == [
        d.name for d in app.deployments
    ], "the config names the deployments the app really has"


def test_rayservice_carries_the_serve_config_and_session_slots() -> None:
    svc = load("rayservice.yaml")
    assert svc["kind"] == "RayService" and svc["apiVersion"] == "ray.io/v1"
    inner = ServeDeploySchema.model_validate(yaml.safe_load(svc["spec"]["serveConfigV2"]))
    assert inner.applications[0].import_path == "serve_app:build_app"
    cluster = svc["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]["rayStartParams"]["resources"]
    workers = cluster["workerGroupSpecs"][0]["rayStartParams"]["resources"]
    assert '\\"voice_session\\": 0' in head and '\\"voice_session\\": 50' in workers


@pytest.mark.ray
def test_serve_config_runs_for_real(tmp_path: Path) -> None:
    port = free_port()
    config = load("serve_config.yaml")
    config["http_options"] = {"host": "127.0.0.1", "port": port}
    config["grpc_options"]["port"] = free_port()
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {
        **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        # `serve run` starts the local node itself: give it session slots.
        "RAY_OVERRIDE_RESOURCES": '{"voice_session": 4}',
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from ray.serve.scripts import cli; cli()",
            "run",
            "--address",
            "local",
            str(path),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, created = time.monotonic() + 150, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                created = httpx.post(f"{base}/v1/sessions", json={"user_id": "cfg"}, timeout=60)
                if created.status_code == 201:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        assert created is not None and created.status_code == 201, proc.poll()
        health = httpx.get(f"{base}/v1/health", timeout=10).json()
        assert health["active_sessions"] == 1 and health["max_concurrent_sessions"] == 100
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _group_alive(proc.pid):
        time.sleep(1)
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("serve run left processes behind")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
