# The backend's image: the official Ray image of the Ray version pinned in pyproject.toml, with the
# project's Python (3.11), and the service set-up installed into that Python: the same pinned pip
# install that `bash scripts/setup.sh --service` runs on a laptop (no Go, Node or apt).
#
#   bash scripts/deploy/build_image.sh      # docker build -t voice-backend:0.1.0 .
#
# scripts/deploy/rayservice.yaml (KubeRay) and cluster.yaml (`ray up`) run this image;
# tests/test_cluster_yaml.py keeps the three in step.
FROM rayproject/ray:2.60.0-py311

# The base image runs as `ray` (uid 1000, gid 100); the editable install writes into /app.
USER root
RUN mkdir -p /app && chown 1000:100 /app
USER ray
WORKDIR /app
COPY --chown=1000:100 . /app

# --no-venv: the image's own Python is the environment, so `ray start` (KubeRay, `ray up`) and
# `serve run` find the backend next to the Ray they come from.
RUN bash scripts/setup.sh --service --no-venv

ENV RAY_USAGE_STATS_ENABLED=0
# Two malloc arenas per process: memory of long-lived Ray processes creeps less (README, soak).
ENV MALLOC_ARENA_MAX=2
EXPOSE 8000
# Standalone (one node): docker run -p 8000:8000 voice-backend:0.1.0. KubeRay and `ray up`
# replace this with their own `ray start`.
CMD ["voice-backend", "serve", "--host", "0.0.0.0", "--port", "8000"]
