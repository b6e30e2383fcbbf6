#!/usr/bin/env bash
# Creates .venv (if needed) with pyrestate and its test tools installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.pyrestate-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
  touch "$stamp"
fi

# The newest restate-sdk on PyPI, in a venv of its own: scripts/test.sh runs the
# end-to-end tests a second time with the example deployments served by it.
SDK_LATEST=1.3.0
latest_stamp=.venv-sdk-latest/.installed-$SDK_LATEST
if [ ! -f "$latest_stamp" ]; then
  "$PY" -m venv .venv-sdk-latest
  .venv-sdk-latest/bin/python -m pip install -q "restate-sdk==$SDK_LATEST" hypercorn uvicorn
  touch "$latest_stamp"
fi

# The official `restate` CLI, which the tests drive against pyrestate (from npm; a test
# tool only, never a dependency of pyrestate).
CLI_VERSION=1.7.12
cli_stamp=.tools/.restate-cli-$CLI_VERSION
if [ ! -f "$cli_stamp" ]; then
  npm install --prefix .tools --no-audit --no-fund --silent "@restatedev/restate@$CLI_VERSION"
  touch "$cli_stamp"
fi

# psql, which the end-to-end tests run against the PostgreSQL protocol (Debian's client).
if ! command -v psql >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq postgresql-client
fi

# Chromium, which the web UI's browser tests drive through Playwright (Debian's build:
# Playwright never downloads a browser of its own here).
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && apt-get install -y -qq chromium
fi
