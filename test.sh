#!/usr/bin/env bash
# Install dagrt with its test dependencies into ./.venv and run the whole test suite.
# Usage: ./test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")"

# The dashboard's browser tests drive Debian's Chromium; as root on Debian/Ubuntu
# install it (and redis-server, a fallback server) when missing.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=""
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
    command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
    if [ -n "$missing" ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null \
            || echo "warning: could not install$missing; tests that need them will say so" >&2
    fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
exec .venv/bin/python -m pytest "$@"
