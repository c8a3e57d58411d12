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

# LiveKit's server, for the livekit provider's tests: built once from the Go module proxy and
# cached outside the repository (tests/e2e/livekit_server.py finds it at the same path).
LIVEKIT_VERSION=v1.13.5
LIVEKIT_DIR="${VOICE_CACHE_DIR:-$HOME/.cache/voice-backend}/livekit-$LIVEKIT_VERSION"
if [ ! -x "$LIVEKIT_DIR/server" ]; then
  GO="$(command -v go || echo /usr/local/go/bin/go)"
  if [ ! -x "$GO" ]; then
    echo "setup: Go (>= 1.26) is needed to build livekit-server $LIVEKIT_VERSION; not found" >&2
    exit 1
  fi
  echo "setup: building livekit-server $LIVEKIT_VERSION (a few minutes, once)"
  GOBIN="$LIVEKIT_DIR" GOFLAGS=-buildvcs=false "$GO" install \
    "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_VERSION"
fi
