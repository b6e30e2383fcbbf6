"""One PostgreSQL client connection: startup, simple and extended query protocol.

Queries go to the SQL engine as text; the few statements drivers send on their own
(BEGIN/COMMIT, SET, SHOW of a session setting) are answered here, since the engine
allows only queries. Transactions are accepted for drivers' sake: every query is a
read of the current data, so there is nothing to commit or roll back.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pyrestate.query.engine import MAX_SQL_BYTES, Answer
from pyrestate.query.pg import sql as lex
from pyrestate.query.pg import wire
from pyrestate.query.pg.rows import TEXT, QueryFailed, Result, answer_to_result
from pyrestate.query.pg.wire import Body, Field, ProtocolError

Query = Callable[[str], Awaitable[Answer]]
log = logging.getLogger("pyrestate.pgsql")

MAX_PREPARED = 256  # named statements, and portals, per connection
MAX_PARAMS = 65_535  # PostgreSQL's own limit
_EXTENDED = frozenset({b"P", b"B", b"D", b"E", b"C", b"H"})
_FLUSH_BYTES = 256 * 1024
_SET = re.compile(
    r"SET\s+(?:SESSION\s+|LOCAL\s+)?([A-Za-z_][\w.]*)\s*(?:=|\s+TO\s+)\s*(.*)",
    re.IGNORECASE | re.DOTALL,
)
# Settings the server reports and does not let a client change (it only speaks these).
_FIXED = {
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "integer_datetimes": "on",
    "standard_conforming_strings": "on",
    "is_superuser": "off",
}
_TX_TAGS = {"BEGIN": "BEGIN", "START": "BEGIN", "COMMIT": "COMMIT", "END": "COMMIT"}
_LOCAL = {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SET", "RESET", "SAVEPOINT",
          "RELEASE", "DISCARD", "DEALLOCATE", "SHOW"}  # fmt: skip


@dataclass(slots=True)
class _Statement:
    sql: str
    oids: list[int]


@dataclass(slots=True)
class _Portal:
    sql: str
    result: Result | None = None
    sent: int = 0


class Session:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        query: Query,
        *,
        pid: int,
        secret: int,
        server_version: str,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._query = query
        self.pid = pid
        self.secret = secret
        self._settings = {"server_version": server_version, **_FIXED}
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._tx = b"I"  # I idle, T in a transaction block, E failed transaction block
        self._statements: dict[str, _Statement] = {}
        self._portals: dict[str, _Portal] = {}
        self._skip_to_sync = False
        self._running: asyncio.Future[Answer] | None = None

    # ---- output ----

    def _send(self, message: bytes) -> None:
        self._out.append(message)
        self._out_bytes += len(message)

    async def _flush(self) -> None:
        if self._out:
            self._writer.write(b"".join(self._out))
            self._out.clear()
            self._out_bytes = 0
        await self._writer.drain()

    async def _maybe_flush(self) -> None:
        if self._out_bytes >= _FLUSH_BYTES:
            await self._flush()

    async def fail_and_close(self, code: str, message: str) -> None:
        self._send(wire.error_response(code, message))
        await self._flush()

    # ---- startup ----

    async def startup(self) -> tuple[int, int] | dict[str, str]:
        """The client's startup parameters, or (pid, secret) of a cancel request."""
        for _ in range(3):  # an SSL and a GSSAPI encryption request may come first
            code, body = await wire.read_startup(self._reader)
            if code in (wire.SSL_REQUEST, wire.GSSENC_REQUEST):
                self._writer.write(b"N")  # plain connections only, as the official server
                await self._writer.drain()
                continue
            if code == wire.CANCEL_REQUEST:
                return body.int32(), body.int32()
            if code >> 16 != 3:
                raise ProtocolError(f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}")
            params: dict[str, str] = {}
            while (name := body.cstr()) != "":
                params[name] = body.cstr()
            unknown = [p for p in params if p.startswith("_pq_.")]
            if code & 0xFFFF or unknown:
                self._send(wire.negotiate_protocol_version(0, unknown))
            return params
        raise ProtocolError("too many startup requests")

    async def greet(self, params: dict[str, str]) -> None:
        user = params.get("user", "restate")
        self._settings["session_authorization"] = user
        self._settings["application_name"] = params.get("application_name", "")
        self._send(wire.authentication_ok())  # no authentication: meant for local use
        for name, value in self._settings.items():
            self._send(wire.parameter_status(name, value))
        self._send(wire.backend_key_data(self.pid, self.secret))
        self._send(wire.ready_for_query(self._tx))
        await self._flush()

    def cancel(self) -> None:
        if self._running is not None:
            self._running.cancel()

    # ---- message loop ----

    async def serve(self) -> None:
        """Answers messages until Terminate or end of stream; raises ProtocolError."""
        while True:
            try:
                kind, body = await wire.read_message(self._reader)
            except asyncio.IncompleteReadError:
                return
            if kind == b"X":
                return
            if kind == b"S":
                self._sync()
            elif self._skip_to_sync:
                continue
            elif kind == b"Q":
                text = body.cstr()
                body.end()
                await self._simple_query(text)
            elif kind in _EXTENDED:
                try:
                    await self._extended(kind, body)
                except QueryFailed as e:
                    self._error(e)
                    self._skip_to_sync = True
            else:
                raise ProtocolError(f"unexpected message type {kind!r}")
            await self._flush()

    def _sync(self) -> None:
        self._skip_to_sync = False
        if self._tx == b"I":
            self._portals.clear()  # the implicit transaction ends, and its portals
        self._send(wire.ready_for_query(self._tx))

    def _error(self, e: QueryFailed) -> None:
        self._send(wire.error_response(e.code, e.message, e.hint))
        if self._tx == b"T":
            self._tx = b"E"

    # ---- simple query ----

    async def _simple_query(self, text: str) -> None:
        try:
            _check_length(text)
            statements = lex.split_statements(text)
            if not statements:
                self._send(wire.EMPTY_QUERY_RESPONSE)
            for sql in statements:
                result, tag = await self._statement(sql)
                if result is not None:
                    self._send(wire.row_description(result.fields))
                    for row in result.rows:
                        self._send(row)
                        await self._maybe_flush()
                self._send(wire.command_complete(tag))
        except QueryFailed as e:
            self._error(e)
        self._send(wire.ready_for_query(self._tx))

    async def _statement(self, sql: str) -> tuple[Result | None, str]:
        """Runs one statement: its rows (None for a command) and its completion tag."""
        words = lex.words(sql)
        first = words[0] if words else ""
        if self._tx == b"E" and first not in ("COMMIT", "END", "ROLLBACK", "ABORT"):
            raise QueryFailed(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            )
        if first in _LOCAL:
            local = self._local(first, words, sql)
            if local is not None:
                return local
        result = await self._run(sql)
        return result, f"SELECT {len(result.rows)}"

    def _local(self, first: str, words: list[str], sql: str) -> tuple[Result | None, str] | None:
        if first in _TX_TAGS:
            tag = "ROLLBACK" if first in ("COMMIT", "END") and self._tx == b"E" else _TX_TAGS[first]
            self._tx = b"T" if tag == "BEGIN" else b"I"
            return None, tag
        if first in ("ROLLBACK", "ABORT"):
            if "TO" not in words:
                self._tx = b"I"
            return None, "ROLLBACK"
        if first == "SET":
            self._set(sql)
            return None, "SET"
        if first == "SHOW" and len(words) == 2:
            return self._show(words[1])
        if first == "SHOW":
            return None  # SHOW TABLES and friends: the engine knows them
        if first == "DEALLOCATE":
            name = words[-1].lower() if len(words) > 1 else ""
            if name == "all":
                self._statements.clear()
            self._statements.pop(name, None)
            return None, "DEALLOCATE"
        return None, " ".join(words[:2]) if first == "DISCARD" else first

    def _set(self, sql: str) -> None:
        m = _SET.fullmatch(sql.strip())
        if m is None:
            return  # SET TIME ZONE, SET TRANSACTION ...: nothing here depends on them
        name = next((k for k in self._settings if k.lower() == m.group(1).lower()), m.group(1))
        if name in _FIXED or name == "server_version":
            return
        value = m.group(2).strip().strip("'\"")
        self._settings[name] = value
        if name == "application_name":
            self._send(wire.parameter_status(name, value))

    def _show(self, name: str) -> tuple[Result | None, str] | None:
        key = next((k for k in self._settings if k.lower() == name.lower()), None)
        if key is None:
            return None  # let the engine answer (or refuse) it
        value = self._settings[key].encode()
        return Result([Field(key.lower(), TEXT, -1)], [wire.data_row([value])]), "SHOW"

    async def _run(self, sql: str) -> Result:
        task = asyncio.ensure_future(self._query(sql))
        self._running = task
        try:
            await asyncio.wait([task])
        finally:
            self._running = None
            task.cancel()  # only has an effect when we were cancelled ourselves
        if task.cancelled():
            raise QueryFailed("57014", "canceling statement due to user request")
        try:
            # Decoding and formatting are CPU work on up to the engine's result limit.
            return await asyncio.to_thread(answer_to_result, task.result())
        except QueryFailed:
            raise
        except Exception as e:
            log.exception("pgsql: could not turn the answer to %.200r into rows", sql)
            raise QueryFailed("XX000", f"internal error: {e}") from None

    # ---- extended query ----

    async def _extended(self, kind: bytes, body: Body) -> None:
        if kind == b"P":
            self._parse(body)
        elif kind == b"B":
            self._bind(body)
        elif kind == b"D":
            target, name = body.byte(), body.cstr()
            body.end()
            await self._describe(target, name)
        elif kind == b"E":
            name, max_rows = body.cstr(), body.int32()
            body.end()
            await self._execute(name, max_rows)
        elif kind == b"C":
            target, name = body.byte(), body.cstr()
            body.end()
            (self._statements if target == b"S" else self._portals).pop(name, None)
            self._send(wire.CLOSE_COMPLETE)
        # H (Flush): the loop flushes after every message anyway

    def _parse(self, body: Body) -> None:
        name, sql = body.cstr(), body.cstr()
        oids = [body.int32() for _ in range(body.count())]
        body.end()
        _check_length(sql)
        if name and name in self._statements:
            raise QueryFailed("42P05", f'prepared statement "{name}" already exists')
        if name and len(self._statements) >= MAX_PREPARED:
            raise QueryFailed("53400", f"more than {MAX_PREPARED} prepared statements")
        if len(lex.split_statements(sql)) > 1:
            raise QueryFailed("42601", "cannot insert multiple commands into a prepared statement")
        wanted = lex.max_param(sql)
        if wanted > MAX_PARAMS:
            raise QueryFailed("54000", f"more than {MAX_PARAMS} parameters")
        oids += [0] * (wanted - len(oids))
        self._statements[name] = _Statement(sql.strip().rstrip(";"), oids)
        self._send(wire.PARSE_COMPLETE)

    def _bind(self, body: Body) -> None:
        portal, name = body.cstr(), body.cstr()
        formats = [body.int16() for _ in range(body.count())]
        values = [body.value() for _ in range(body.count())]
        results = [body.int16() for _ in range(body.count())]
        body.end()
        stmt = self._statements.get(name)
        if stmt is None:
            raise QueryFailed("26000", f'prepared statement "{name}" does not exist')
        if portal and portal not in self._portals and len(self._portals) >= MAX_PREPARED:
            raise QueryFailed("53400", f"more than {MAX_PREPARED} portals")
        if len(values) != len(stmt.oids):
            raise QueryFailed(
                "08P01",
                f"bind message supplies {len(values)} parameters, "
                f"but prepared statement requires {len(stmt.oids)}",
            )
        if any(f != 0 for f in results):
            raise QueryFailed("0A000", "only text format is supported for results")
        texts = [_param(v, _format_of(formats, i), stmt.oids[i]) for i, v in enumerate(values)]
        self._portals[portal] = _Portal(lex.bind_params(stmt.sql, texts, stmt.oids))
        self._send(wire.BIND_COMPLETE)

    async def _describe(self, target: bytes, name: str) -> None:
        if target == b"S":
            stmt = self._statements.get(name)
            if stmt is None:
                raise QueryFailed("26000", f'prepared statement "{name}" does not exist')
            self._send(wire.parameter_description([o or TEXT for o in stmt.oids]))
            sql = lex.bind_params(stmt.sql, [None] * len(stmt.oids), stmt.oids)
            portal = _Portal(sql)
        else:
            found = self._portals.get(name)
            if found is None:
                raise QueryFailed("34000", f'portal "{name}" does not exist')
            portal = found
        fields = await self._fields(portal)
        self._send(wire.NO_DATA if fields is None else wire.row_description(fields))

    async def _fields(self, portal: _Portal) -> list[Field] | None:
        """The portal's columns (running it now, keeping its rows), None for a command."""
        if lex.is_empty(portal.sql):
            return None
        words = lex.words(portal.sql) or [""]
        if words[0] == "SHOW" and len(words) == 2 and self._show(words[1]) is not None:
            return [Field(words[1].lower(), TEXT, -1)]
        if words[0] in _LOCAL and words[0] != "SHOW":
            return None
        if portal.result is None:
            portal.result, _ = await self._statement(portal.sql)
        return None if portal.result is None else portal.result.fields

    async def _execute(self, name: str, max_rows: int) -> None:
        portal = self._portals.get(name)
        if portal is None:
            raise QueryFailed("34000", f'portal "{name}" does not exist')
        if lex.is_empty(portal.sql):
            self._send(wire.EMPTY_QUERY_RESPONSE)
            return
        tag = f"SELECT {len(portal.result.rows)}" if portal.result is not None else ""
        if portal.result is None:
            portal.result, tag = await self._statement(portal.sql)
            if portal.result is None:
                self._send(wire.command_complete(tag))
                return
        rows = portal.result.rows
        end = len(rows) if max_rows <= 0 else min(len(rows), portal.sent + max_rows)
        for row in rows[portal.sent : end]:
            self._send(row)
            await self._maybe_flush()
        portal.sent = end
        self._send(wire.PORTAL_SUSPENDED if end < len(rows) else wire.command_complete(tag))


def _format_of(formats: list[int], i: int) -> int:
    """One code for all parameters, or one each (the protocol allows both)."""
    if not formats:
        return 0
    return formats[0] if len(formats) == 1 else formats[i] if i < len(formats) else -1


def _param(raw: bytes | None, fmt: int, oid: int) -> str | None:
    if raw is None:
        return None
    try:
        text = raw.decode() if fmt == 0 else lex.binary_param(raw, oid) if fmt == 1 else None
    except UnicodeDecodeError:
        raise QueryFailed("22021", "invalid byte sequence for encoding UTF8") from None
    if text is None:
        raise QueryFailed("0A000", f"binary parameters of type {oid} are not supported")
    return text


def _check_length(sql: str) -> None:
    if len(sql) > MAX_SQL_BYTES:
        raise QueryFailed("54000", f"the query is longer than {MAX_SQL_BYTES} bytes")
