#!/usr/bin/env bash
# The whole test suite: lint, import contracts, unit tests, then the Ray end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. .venv/bin/activate
export RAY_USAGE_STATS_ENABLED=0 VOICE_RAY_DASHBOARD=0
ruff check .
ruff format --check .
lint-imports
python -m pytest -p no:cacheprovider "$@"
