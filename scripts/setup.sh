#!/usr/bin/env bash
# Create .venv and install the project with its test tools, every package pinned
# (pyproject.toml for what we use directly, scripts/constraints.txt for everything beneath).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c scripts/constraints.txt -e ".[test]"
