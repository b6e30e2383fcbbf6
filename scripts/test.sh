#!/usr/bin/env bash
# Sets everything up on a fresh machine and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check
.venv/bin/ruff format --check
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest -q "$@"
fi
.venv/bin/python -m pytest -q
# The end-to-end tests again, the deployments on the newest SDK (the first run: pinned),
# then once more with the services inside the server (the in-process transport); tests of
# the server's own surface do not change with either and ran above.
again=(-m "not server_only" tests/e2e)
PYRESTATE_E2E_SDK_PYTHON="$PWD/.venv-sdk-latest/bin/python" .venv/bin/python -m pytest -q "${again[@]}"
PYRESTATE_E2E_TRANSPORT=inprocess exec .venv/bin/python -m pytest -q "${again[@]}"
