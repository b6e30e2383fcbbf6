"""The CLI tests run against a real server and real SDK deployments, like tests/e2e.

They reuse that suite's harness and fixtures (`server`, `deployment`, `http`, ...) rather
than copy them: tests/e2e/conftest.py is loaded here under its own module name, and its
fixtures and failure-log hook are re-exported. PYRESTATE_E2E_TARGET=official runs them
against the official server.
"""

from __future__ import annotations

import sys
from pathlib import Path

E2E_DIR = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))

from harness import load_e2e_conftest  # noqa: E402

_e2e = load_e2e_conftest()

# Fixtures are found by name in this module; the hook attaches server logs to failures.
count_dir = _e2e.count_dir
deployment = _e2e.deployment
e2e_target = _e2e.e2e_target
http = _e2e.http
official_bin = _e2e.official_bin
pytest_runtest_makereport = _e2e.pytest_runtest_makereport
server = _e2e.server
server_options = _e2e.server_options
