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

# Test peers: the real pipecat-ai and vocode packages, each in its own venv because their pins
# conflict with ours (tests/peers/ runs them as subprocesses). Rebuilt when their pins change.
for peer in pipecat vocode; do
  venv=".venv-peers/$peer"
  pins="scripts/peers/$peer.txt"
  if [ ! -x "$venv/bin/python" ] || ! cmp -s "$pins" "$venv/pins.txt"; then
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet --no-deps -r "$pins"
    cp "$pins" "$venv/pins.txt"
  fi
done
