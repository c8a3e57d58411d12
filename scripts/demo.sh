#!/usr/bin/env bash
# Set up what the service needs (once; pip only), then start the backend on local Ray and place
# one real voice call through it.
# Options go to `voice-backend demo`: --text "...", --wav my.wav, --keep-serving, --out reply.wav
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --service
export RAY_USAGE_STATS_ENABLED=0
exec .venv/bin/voice-backend demo "$@"
