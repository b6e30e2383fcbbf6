"""Install the official Restate server, the comparison oracle, into bench/.oracle/.

Only the benchmark installs it (never the product). Run directly to install and print
the binary's path: `python bench/oracle.py`.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

VERSION = "1.7.12"
ORACLE_DIR = Path(__file__).resolve().parent / ".oracle"
PACKAGE = "@restatedev/restate-server"


def _native_binary() -> Path | None:
    # The package's .bin entry is a node wrapper around a per-platform package; the
    # native binary is used directly so that /proc sees the server, not node.
    scope = ORACLE_DIR / "node_modules" / "@restatedev"
    arch = {"x86_64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "")
    preferred = scope / f"restate-server-linux-{arch}" / "bin" / "restate-server"
    candidates = [preferred, *sorted(scope.glob("restate-server-*/bin/restate-server"))]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def _installed_version(binary: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    # "restate-server 1.7.12"
    parts = out.split()
    return parts[-1] if parts else None


def ensure_official() -> Path:
    """Path of the native restate-server binary, installing it with npm if missing."""
    binary = _native_binary()
    if binary is not None and _installed_version(binary) == VERSION:
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to install the official server for comparison")
    ORACLE_DIR.mkdir(parents=True, exist_ok=True)
    print(f"installing {PACKAGE}@{VERSION} into {ORACLE_DIR} ...", file=sys.stderr)
    subprocess.run(
        # No install scripts: the server needs none, and one dependency reports usage.
        [
            npm,
            "install",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(ORACLE_DIR),
            f"{PACKAGE}@{VERSION}",
        ],
        check=True,
        stdout=sys.stderr,
    )
    binary = _native_binary()
    if binary is None or _installed_version(binary) != VERSION:
        raise SystemExit(f"npm installed {PACKAGE}@{VERSION} but no native binary was found")
    return binary


if __name__ == "__main__":
    print(ensure_official())
