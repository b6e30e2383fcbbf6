"""Durable storage of the registry: one JSON document in ``metadata.db`` (SQLite).

The whole registry is small and changes rarely, so it is stored as a single row holding
the document and its version, replaced in one transaction with ``synchronous=FULL``:
once `save` returns, the change survives a crash or power loss.

The document holds the schema model as it is (our own shape, not the manifests): fields
by their names, rules in their textual forms.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from pyrestate.admin.model import Deployment, HandlerSchema, RetryOverrides, ServiceSchema
from pyrestate.admin.payload_rules import ContentTypeMatcher, InputRule, OutputRules
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


def _fields(obj: Any, *special: str) -> dict[str, Any]:
    """The dataclass fields of ``obj`` that are stored as they are."""
    return {f.name: getattr(obj, f.name) for f in fields(obj) if f.name not in special}


def _known(cls: type, doc: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``doc`` that name fields of ``cls`` (older documents had more)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in doc.items() if k in names}


def _handler_document(h: HandlerSchema) -> dict[str, Any]:
    rules = [
        {
            "kind": r.kind,
            "content_type": None if r.content_type is None else str(r.content_type),
            "json_schema": r.json_schema,
        }
        for r in h.input_rules
    ]
    return {
        **_fields(h, "input_rules", "output_rules", "retry"),
        "input_rules": rules,
        "output": asdict(h.output_rules),
        "retry": h.retry.to_json(),
    }


def _handler(d: Mapping[str, Any]) -> HandlerSchema:
    rules = tuple(
        InputRule(
            r["kind"],
            None if r["content_type"] is None else ContentTypeMatcher.parse(r["content_type"]),
            r["json_schema"],
        )
        for r in d["input_rules"]
    )
    return HandlerSchema(
        **{
            **_known(HandlerSchema, d),
            "input_rules": rules,
            "output_rules": OutputRules(**d["output"]),
            "retry": RetryOverrides(**d["retry"]),
        }
    )


def _service_document(s: ServiceSchema) -> dict[str, Any]:
    return {
        **_fields(s, "handlers", "deployment_id", "enable_lazy_state_override", "retry"),
        "enable_lazy_state": s.enable_lazy_state_override,
        "retry": s.retry.to_json(),
        "handlers": [_handler_document(h) for h in s.handlers.values()],
    }


def _service(d: Mapping[str, Any], deployment_id: str) -> ServiceSchema:
    return ServiceSchema(
        **{
            **_known(ServiceSchema, d),
            "deployment_id": deployment_id,
            "enable_lazy_state_override": d["enable_lazy_state"],
            "retry": RetryOverrides(**d["retry"]),
            "handlers": {h["name"]: _handler(h) for h in d["handlers"]},
        }
    )


def registry_document(registry: Registry) -> dict[str, Any]:
    """The registry as the JSON document that is stored."""
    deployments = [
        {
            **_fields(dep, "services"),
            "services": [_service_document(s) for s in dep.services.values()],
        }
        for dep in registry.deployments.values()
    ]
    return {"version": registry.version, "deployments": deployments}


def registry_from_document(doc: Mapping[str, Any]) -> Registry:
    deployments = (
        Deployment(
            **{
                **_known(Deployment, d),
                "services": {s["name"]: _service(s, d["id"]) for s in d["services"]},
            }
        )
        for d in doc["deployments"]
    )
    return Registry(deployments, doc["version"])


def connect_metadata(path: Path, schema: Iterable[str]) -> sqlite3.Connection:
    """A connection to ``metadata.db`` (created with its parent folder if new) whose
    commits are durable when they return, with ``schema``'s statements applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for statement in schema:
        conn.execute(statement)
    return conn


class RegistryStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Saves run in worker threads; one at a time keeps the version check meaningful.
        self._write_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        return connect_metadata(self.path, [_SCHEMA])

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
        registry = registry_from_document(json.loads(document))
        if registry.version != version:
            raise RegistryStoreError(f"{self.path}: registry version mismatch")
        return registry

    def save_sync(self, registry: Registry) -> None:
        document = json.dumps(
            registry_document(registry), separators=(",", ":"), ensure_ascii=False
        )
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
