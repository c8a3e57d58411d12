#!/usr/bin/env bash
# Re-pin every transitive dependency (scripts/constraints.txt) from a fresh resolve of pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --upgrade pip
"$tmp/venv/bin/python" -m pip install --quiet -e ".[test]"
{
  echo "# Every transitive package pinned, so a fresh install reproduces this one."
  echo "# Regenerate after changing pyproject.toml: scripts/lock.sh"
  "$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -v '^voice-backend'
} > scripts/constraints.txt
echo "wrote scripts/constraints.txt"
