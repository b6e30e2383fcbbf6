#!/usr/bin/env bash
# Sets everything up on a fresh machine and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check
.venv/bin/ruff format --check
exec .venv/bin/python -m pytest -q "$@"
