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
# Headless Chromium for the browser tests of the web page (Debian's package; never a browser a
# tool downloads itself). CI runs as root with apt; elsewhere the browser tests say what is missing.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
fi
