"""`cluster.yaml` is a valid Ray cluster launcher config (against the schema Ray ships) that
declares session slots per worker type and starts the Serve app (`ray up` itself needs a cloud);
the Dockerfile, which this machine cannot build, is checked for what can be read: it is the
official Ray image of the pinned Ray and Python, installs through the service set-up, and is the
image the RayService manifest and cluster.yaml run."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


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


def test_the_app_arguments_in_cluster_yaml_make_a_valid_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What `serve run` passes the app builder is accepted as is, and the session processes
    listen on the port range the comment tells operators to open."""
    import serve_app

    for name in [k for k in os.environ if k.startswith("VOICE_BACKEND_")]:
        monkeypatch.delenv(name)  # the file alone decides
    start = next(c for c in load()["head_start_ray_commands"] if "serve_app:build_app" in c)
    args = dict(word.split("=", 1) for word in start.split("serve_app:build_app", 1)[1].split())
    config = serve_app.config_from_args(args)
    assert config.provider == "local" and config.warm_pool_size == 4
    assert config.media_port_range == "20000-20999"
    assert "20000-20999" in (ROOT / "cluster.yaml").read_text().split("cluster_name:")[0]


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def ray_pin() -> str:
    (pin,) = [d for d in PYPROJECT["dependencies"] if d.startswith("ray[serve]==")]
    return pin.split("==")[1]


def built_image() -> str:
    """The name scripts/deploy/build_image.sh gives the Dockerfile's image."""
    script = (ROOT / "scripts" / "deploy" / "build_image.sh").read_text()
    (image,) = re.findall(r'IMAGE="\$\{IMAGE:-([^}]+)\}"', script)
    assert 'docker build -t "$IMAGE" .' in script
    return image


def service_setup() -> str:
    """The commands `scripts/setup.sh --service` runs: all before the service level stops, without
    comments."""
    script = (ROOT / "scripts" / "setup.sh").read_text()
    head, stop, _ = script.partition('[ "$LEVEL" = service ] && exit 0')
    assert stop, "setup.sh stops after the pip install for --service"
    return "\n".join(line for line in head.splitlines() if not line.strip().startswith("#"))


def test_dockerfile_is_the_official_ray_image_of_the_pinned_ray_and_python() -> None:
    (base,) = [args for op, args in dockerfile() if op == "FROM"]
    assert base == f"rayproject/ray:{ray_pin()}-py311"
    assert "3.11" in SpecifierSet(PYPROJECT["requires-python"])
    svc = yaml.safe_load((ROOT / "scripts" / "deploy" / "rayservice.yaml").read_text())
    assert svc["spec"]["rayClusterConfig"]["rayVersion"] == ray_pin()


def test_dockerfile_installs_through_the_service_setup_only() -> None:
    runs = [args for op, args in dockerfile() if op == "RUN"]
    installs = [r for r in runs if "setup.sh" in r or re.search(r"pip|apt|conda|go |npm", r)]
    assert installs == ["bash scripts/setup.sh --service --no-venv"], installs
    # The service set-up is pip only and pinned: no Go, Node, apt or browser.
    head = service_setup()
    assert '-m pip install --quiet -c scripts/constraints.txt -e ".[$LEVEL]"' in head
    for tool in ("apt-get install -y", '"$GO" install', "npm ", "chromium", ".venv-peers"):
        assert tool not in head, tool
    assert "bash scripts/setup.sh --service" in (ROOT / "scripts" / "demo.sh").read_text()
    # The `service` extra installs no test tools or hosted providers' SDKs.
    service = " ".join(PYPROJECT["optional-dependencies"]["service"])
    assert "test" not in service and "cartesia" not in service and "vapi" not in service


def test_dockerignore_keeps_what_the_setup_installs() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = [
        "pyproject.toml",
        "README.md",  # the package's readme
        "scripts/setup.sh",
        "scripts/constraints.txt",
        "serve_app.py",
        *(
            f"{pkg}/__init__.py"
            for pkg in ("backend", "actors", "pipelines", "providers", "ingress")
        ),
        "backend/web/index.html",
    ]
    for path in needed:
        assert (ROOT / path).exists(), path
        prefixes = ["/".join(path.split("/")[: i + 1]) for i in range(path.count("/") + 1)]
        hits = [p for p in patterns for pre in prefixes if fnmatch.fnmatch(pre, p.lstrip("/"))]
        assert not hits, f"{path} is excluded from the image by {hits}"


def test_manifest_and_cluster_yaml_run_the_image_the_dockerfile_builds() -> None:
    image = built_image()
    assert image.rsplit(":", 1)[1] == PYPROJECT["version"]
    svc = yaml.safe_load((ROOT / "scripts" / "deploy" / "rayservice.yaml").read_text())
    cluster = svc["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    containers = [c for g in groups for c in g["template"]["spec"]["containers"]]
    (workdir,) = [args for op, args in dockerfile() if op == "WORKDIR"]
    assert containers and all(c["image"] == image for c in containers)
    assert all(c["workingDir"] == workdir for c in containers)
    assert load()["docker"]["image"] == image


def test_cluster_setup_commands_work_with_the_images_python() -> None:
    """In the container the image's own Python (3.11) is the environment: the set-up runs the
    service level into it, where the Dockerfile put the repository; nothing refers to a venv,
    a copy of the repository in the home directory, or a tool the image does not have."""
    config = load()
    (workdir,) = [args for op, args in dockerfile() if op == "WORKDIR"]
    assert config["setup_commands"] == [
        f"cd {workdir} && bash scripts/setup.sh --service --no-venv"
    ]
    commands = " ".join(
        config["setup_commands"]
        + config["head_start_ray_commands"]
        + config["worker_start_ray_commands"]
    )
    assert ".venv" not in commands and "~/voice-backend" not in commands
    assert f"cd {workdir} && RAY_ADDRESS=auto serve run" in commands
    # setup.sh accepts the image's Python (py311 in the FROM tag) as it checks it.
    (accepted,) = re.findall(
        r"sys.exit\(not (\(.+?\)) <= sys.version_info\[:2\] < (\(.+?\))\)", service_setup()
    )
    low, high = (tuple(int(n) for n in bound.strip("()").split(",")) for bound in accepted)
    assert low <= (3, 11) < high
