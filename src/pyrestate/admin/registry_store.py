"""Durable storage of the registry: one JSON document in ``metadata.db`` (SQLite).

The whole registry is small and changes rarely, so it is stored as a single row holding
the document and its version, replaced in one transaction with ``synchronous=FULL``:
once `save` returns, the change survives a crash or power loss.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path

from pyrestate.admin.registry import Registry

# Bumped if the document layout changes incompatibly.
FORMAT = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS registry (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    format INTEGER NOT NULL,
    document TEXT NOT NULL
)
"""


class RegistryStoreError(RuntimeError):
    pass


class RegistryStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Saves run in worker threads; one at a time keeps the version check meaningful.
        self._write_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(_SCHEMA)
        return conn

    def load(self) -> Registry:
        """The stored registry, or an empty one for a new data directory."""
        conn = self._connect()
        try:
            row = conn.execute(
                "SELECT version, format, document FROM registry WHERE id = 1"
            ).fetchone()
        finally:
            conn.close()
        if row is None:
            return Registry()
        version, fmt, document = row
        if fmt != FORMAT:
            raise RegistryStoreError(f"{self.path}: unsupported registry format {fmt}")
        registry = Registry.from_json(json.loads(document))
        if registry.version != version:
            raise RegistryStoreError(f"{self.path}: registry version mismatch")
        return registry

    def save_sync(self, registry: Registry) -> None:
        document = json.dumps(registry.to_json(), separators=(",", ":"), ensure_ascii=False)
        with self._write_lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute("SELECT version FROM registry WHERE id = 1").fetchone()
                    if row is not None and row[0] > registry.version:
                        # An older value must never overwrite a newer one.
                        raise RegistryStoreError(
                            f"refusing to replace registry version {row[0]} "
                            f"with older version {registry.version}"
                        )
                    conn.execute(
                        "INSERT INTO registry (id, version, format, document) VALUES (1, ?, ?, ?) "
                        "ON CONFLICT(id) DO UPDATE SET version = excluded.version, "
                        "format = excluded.format, document = excluded.document",
                        (registry.version, FORMAT, document),
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            finally:
                conn.close()

    async def save(self, registry: Registry) -> None:
        """Persist ``registry``; returns once it is durable."""
        await asyncio.to_thread(self.save_sync, registry)
