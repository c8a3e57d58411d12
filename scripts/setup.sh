#!/usr/bin/env bash
# Set up the project, every package pinned (pyproject.toml for what we use directly,
# scripts/constraints.txt for everything beneath). Two levels:
#
#   bash scripts/setup.sh --service   what the demo, `voice-backend serve` and the web page need:
#                                     pip only (Python 3.11 and PyPI, no Go, Node or apt)
#   bash scripts/setup.sh [--test]    the above plus what the test suite needs: the test tools and
#                                     every provider extra, headless Chromium (apt), the Pipecat and
#                                     Vocode peer venvs, livekit-server built with Go
#
# Installs into .venv, or with --no-venv into $PYTHON itself (a container image whose Python is
# the environment: the Dockerfile and cluster.yaml). Re-running is quick: pip is skipped while
# pyproject.toml and the constraints are unchanged since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

LEVEL=test
VENV=.venv
for arg in "$@"; do
  case "$arg" in
    --service) LEVEL=service ;;
    --test) LEVEL=test ;;
    --no-venv) VENV= ;;
    *) echo "usage: scripts/setup.sh [--service | --test] [--no-venv]" >&2; exit 2 ;;
  esac
done

# The project's Python: $PYTHON if given, else the first of python3.11, python3, python3.12 that
# is 3.11 or 3.12 (requires-python in pyproject.toml).
py_ok() { "$1" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 13))' 2>/dev/null; }
if [ -z "${PYTHON:-}" ]; then
  for candidate in python3.11 python3 python3.12; do
    if command -v "$candidate" >/dev/null 2>&1 && py_ok "$candidate"; then
      PYTHON="$candidate"
      break
    fi
  done
fi
if [ -z "${PYTHON:-}" ] || ! py_ok "$PYTHON"; then
  echo "setup: Python 3.11 (or 3.12) is needed and was not found; install it (e.g. apt-get install" \
    "python3.11 python3.11-venv, brew install python@3.11, or pyenv) or set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

if [ -n "$VENV" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
  fi
  PY="$VENV/bin/python"
else
  PY="$PYTHON"
fi

# What was installed last, and from which pins: a test install covers a service one.
stamp="$("$PY" -c 'import sys; print(sys.prefix)')/voice-backend-setup"
pins="$("$PY" -c 'import hashlib, sys; print(hashlib.sha256(b"".join(open(p, "rb").read() for p in sys.argv[1:])).hexdigest())' pyproject.toml scripts/constraints.txt)"
installed="$(cat "$stamp" 2>/dev/null || true)"
if [ "$installed" != "test $pins" ] && [ "$installed" != "$LEVEL $pins" ]; then
  echo "setup: installing the $LEVEL packages with pip (pinned)"
  "$PY" -m pip install --quiet -c scripts/constraints.txt -e ".[$LEVEL]"
  echo "$LEVEL $pins" > "$stamp"
fi
[ "$LEVEL" = service ] && exit 0

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
  peer_pins="scripts/peers/$peer.txt"
  if [ ! -x "$venv/bin/python" ] || ! cmp -s "$peer_pins" "$venv/pins.txt"; then
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet --no-deps -r "$peer_pins"
    cp "$peer_pins" "$venv/pins.txt"
  fi
done

# LiveKit's server, for the livekit provider's tests: built once from the Go module proxy and
# cached outside the repository (tests/e2e/livekit_server.py finds it at the same path).
LIVEKIT_VERSION=v1.13.5
LIVEKIT_DIR="${VOICE_CACHE_DIR:-$HOME/.cache/voice-backend}/livekit-$LIVEKIT_VERSION"
if [ ! -x "$LIVEKIT_DIR/server" ]; then
  GO="$(command -v go || echo /usr/local/go/bin/go)"
  if [ ! -x "$GO" ]; then
    echo "setup: Go (>= 1.26) is needed to build livekit-server $LIVEKIT_VERSION for the tests;" \
      "not found (the demo and the service need only: bash scripts/setup.sh --service)" >&2
    exit 1
  fi
  echo "setup: building livekit-server $LIVEKIT_VERSION (a few minutes, once)"
  GOBIN="$LIVEKIT_DIR" GOFLAGS=-buildvcs=false "$GO" install \
    "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_VERSION"
fi
