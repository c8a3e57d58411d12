#!/usr/bin/env bash
# Build the backend's image (Dockerfile) under the name scripts/deploy/rayservice.yaml and
# cluster.yaml run. For a cluster, build it under your registry's name and push it, e.g.
#   IMAGE=registry.example.com/voice-backend:0.1.0 bash scripts/deploy/build_image.sh
#   docker push registry.example.com/voice-backend:0.1.0
# then put that name in both files.
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGE="${IMAGE:-voice-backend:0.1.0}"
docker build -t "$IMAGE" .
echo "built $IMAGE"
