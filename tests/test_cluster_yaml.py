"""`cluster.yaml` is a valid Ray cluster launcher config (against the schema Ray ships) that
declares session slots per worker type and starts the Serve app (`ray up` itself needs a cloud)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import ray
import yaml

ROOT = Path(__file__).resolve().parent.parent


def load() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_matches_rays_own_schema() -> None:
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(load(), schema)


def test_every_worker_type_offers_session_slots_and_the_head_starts_the_app() -> None:
    config = load()
    types = config["available_node_types"]
    head = config["head_node_type"]
    workers = {name: t for name, t in types.items() if name != head}
    assert workers and all(t["resources"]["voice_session"] > 0 for t in workers.values())
    assert types[head]["resources"].get("voice_session", 0) == 0  # calls go to workers
    start = " ".join(config["head_start_ray_commands"])
    assert "serve run" in start and "serve_app:build_app" in start
    joins = " ".join(config["worker_start_ray_commands"])
    assert "voice_session" in joins and "$RAY_HEAD_IP" in joins
