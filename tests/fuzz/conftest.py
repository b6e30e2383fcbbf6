"""Fixtures of the fuzz suite.

The suite reuses the end-to-end harness (tests/e2e/harness.py) to start the server and
the example deployments; like tests/e2e it has no __init__.py, so its helper modules are
imported by name from this directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_E2E = Path(__file__).resolve().parents[1] / "e2e"
if str(_E2E) not in sys.path:
    sys.path.insert(0, str(_E2E))

from fuzzkit import SEED_ENV, fuzz_seed  # noqa: E402  (needs the harness on sys.path)


@pytest.fixture
def seed() -> int:
    return fuzz_seed()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    # A failure of any kind names the seed, so the run can be repeated exactly.
    if report.failed:
        seed = fuzz_seed()
        report.sections.append(("fuzz seed", f"{seed} (rerun with {SEED_ENV}={seed})"))
    return report
