"""The PostgreSQL protocol front: message encoding, SQL lexing, Arrow to text rows, and a
listener driven by a raw asyncio client (startup, simple and extended query, cancel,
limits, hostile input)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from decimal import Decimal

import pyarrow as pa
import pyarrow.ipc
import pytest
from query_fixtures import Filled

from pyrestate.query.engine import ARROW_CONTENT_TYPE, Answer, error_answer
from pyrestate.query.pg import PgServer, wire
from pyrestate.query.pg import sql as lex
from pyrestate.query.pg.rows import QueryFailed, answer_to_result, to_result
from pyrestate.query.service import QueryService
from pyrestate.query.tables import RegistrySnapshot

Msg = tuple[bytes, bytes]


def arrow_answer(table: pa.Table) -> Answer:
    sink = pa.BufferOutputStream()
    with pyarrow.ipc.new_stream(sink, table.schema) as out:
        out.write_table(table)
    return Answer(200, ARROW_CONTENT_TYPE, sink.getvalue().to_pybytes())


def fields_of(body: bytes) -> dict[str, str]:
    """An ErrorResponse's fields by their one-letter code."""
    out = {}
    for part in body.rstrip(b"\0").split(b"\0"):
        out[part[:1].decode()] = part[1:].decode()
    return out


def row_values(body: bytes) -> list[bytes | None]:
    (n,) = struct.unpack(">h", body[:2])
    pos, out = 2, []
    for _ in range(n):
        (size,) = struct.unpack(">i", body[pos : pos + 4])
        pos += 4
        out.append(None if size == -1 else body[pos : pos + size])
        pos += max(size, 0)
    return out


def column_oids(body: bytes) -> list[tuple[str, int]]:
    b = wire.Body(body)
    cols = []
    for _ in range(b.int16()):
        name = b.cstr()
        b.int32(), b.int16()
        oid = b.int32()
        b.int16(), b.int32(), b.int16()
        cols.append((name, oid))
    return cols


# ---- encoding and decoding ----


def test_messages_are_framed_with_their_length() -> None:
    assert wire.ready_for_query(b"I") == b"Z\x00\x00\x00\x05I"
    assert wire.command_complete("SELECT 1") == b"C\x00\x00\x00\x0dSELECT 1\x00"
    row = wire.data_row([b"ab", None])
    assert (
        row == b"D" + struct.pack(">ih", 4 + 2 + 6 + 4, 2) + b"\x00\x00\x00\x02ab\xff\xff\xff\xff"
    )
    err = wire.error_response("42P01", "no such table", "list them")
    assert err[:1] == b"E" and struct.unpack(">i", err[1:5])[0] == len(err) - 1
    assert fields_of(err[5:]) == {
        "S": "ERROR",
        "V": "ERROR",
        "C": "42P01",
        "M": "no such table",
        "H": "list them",
    }
    desc = wire.row_description([wire.Field("n", 20, 8)])
    assert column_oids(desc[5:]) == [("n", 20)]


def test_message_bodies_are_read_within_bounds() -> None:
    body = wire.Body(b"abc\x00\x00\x01")
    assert body.cstr() == "abc"
    with pytest.raises(wire.ProtocolError):
        body.int32()  # two bytes left
    with pytest.raises(wire.ProtocolError, match="unterminated"):
        wire.Body(b"no end").cstr()
    with pytest.raises(wire.ProtocolError):
        wire.Body(struct.pack(">i", 1000) + b"x").value()  # claims more than there is
    with pytest.raises(wire.ProtocolError, match="UTF-8"):
        wire.Body(b"\xff\xfe\x00").cstr()
    assert wire.Body(struct.pack(">i", -1)).value() is None


# ---- SQL lexing ----


def test_statements_split_outside_quotes_and_comments() -> None:
    sql = "select ';' as a; -- one; two\nselect \"x;y\", $$;$$ /* ; */ ;;  ; select E'\\';'"
    assert lex.split_statements(sql) == [
        "select ';' as a",
        '-- one; two\nselect "x;y", $$;$$ /* ; */',
        "select E'\\';'",
    ]
    assert lex.split_statements(" ; -- nothing\n ;") == []
    assert lex.is_empty("/* only */ ;")
    assert lex.words("/* c */ begin transaction") == ["BEGIN", "TRANSACTION"]


def test_parameters_become_quoted_literals() -> None:
    sql = "select $1, '$1', $2 -- $3\n, x$1, $3"
    out = lex.bind_params(sql, ["it's", None, "42"], [0, 25, 20])
    assert out == "select 'it''s', '$1', NULL -- $3\n, x$1, 42"
    assert lex.max_param(sql) == 3
    assert lex.bind_params("select $0, $1", ["a"], [0]) == "select $0, 'a'"
    assert lex.literal("1; drop", 20) == "'1; drop'"  # not a number: quoted, not spliced
    assert lex.literal("yes", 16) == "TRUE"
    assert lex.binary_param(struct.pack(">q", -7), 20) == "-7"
    assert lex.binary_param(b"\x01", 16) == "true"
    assert lex.binary_param(b"\x01\x02", 20) is None


# ---- Arrow to text rows ----


def test_arrow_types_map_to_postgres_types_and_text() -> None:
    table = pa.table(
        {
            "i64": pa.array([-5], pa.int64()),
            "u64": pa.array([2**64 - 1], pa.uint64()),
            "i32": pa.array([7], pa.int32()),
            "b": pa.array([True], pa.bool_()),
            "f": pa.array([0.1], pa.float64()),
            "s": pa.array(["héllo"], pa.large_string()),
            "bin": pa.array([b"\x00\xff"], pa.large_binary()),
            "ts": pa.array([1_700_000_000_123], pa.timestamp("ms", tz="+00:00")),
            "ts0": pa.array([1_700_000_000_000_000], pa.timestamp("us")),
            "dur": pa.array([90_061_500], pa.duration("ms")),
            "lst": pa.array([["a", 'q"']], pa.list_(pa.large_string())),
            "dec": pa.array([Decimal("1.50")], pa.decimal128(5, 2)),
            "n": pa.array([None], pa.int64()),
        }
    )
    result = to_result(table)
    assert [(f.name, f.oid) for f in result.fields] == [
        ("i64", 20),
        ("u64", 1700),
        ("i32", 23),
        ("b", 16),
        ("f", 701),
        ("s", 25),
        ("bin", 17),
        ("ts", 1184),
        ("ts0", 1114),
        ("dur", 1186),
        ("lst", 1009),
        ("dec", 1700),
        ("n", 20),
    ]
    assert row_values(result.rows[0][5:]) == [
        b"-5",
        b"18446744073709551615",
        b"7",
        b"t",
        b"0.1",
        "héllo".encode(),
        b"\\x00ff",
        b"2023-11-14 22:13:20.123+00",
        b"2023-11-14 22:13:20",
        b"1 day 01:01:01.5",
        b'{"a","q\\""}',
        b"1.50",
        None,
    ]


def test_error_answers_carry_sqlstates() -> None:
    cases = {
        'Datafusion error: SQL error: ParserError("Expected ...")': "42601",
        "Datafusion error: Error during planning: table 'restate.public.x' not found": "42P01",
        "Datafusion error: Schema error: No field named nope.": "42703",
        "Datafusion error: Resources exhausted: too big": "53000",
    }
    for message, code in cases.items():
        with pytest.raises(QueryFailed) as info:
            answer_to_result(error_answer(400 if code != "53000" else 500, message))
        assert info.value.code == code
        assert info.value.message == message
    with pytest.raises(QueryFailed) as info:
        answer_to_result(error_answer(500, "Datafusion error: boom"))
    assert info.value.code == "XX000"


# ---- the listener ----


class Client:
    """A raw protocol client over asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.key: tuple[int, int] = (0, 0)
        self.status: dict[str, str] = {}

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def startup_packet(self, code: int = wire.PROTOCOL_3_0, **params: str) -> bytes:
        body = struct.pack(">i", code)
        body += b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items())
        body += b"\0"
        return struct.pack(">i", len(body) + 4) + body

    async def start(self, user: str = "restate") -> list[Msg]:
        self.writer.write(self.startup_packet(user=user, database="restate"))
        msgs = await self.until_ready()
        for kind, body in msgs:
            if kind == b"K":
                self.key = struct.unpack(">ii", body)
            if kind == b"S":
                name, value, _ = body.split(b"\0")
                self.status[name.decode()] = value.decode()
        return msgs

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        self.writer.write(kind + struct.pack(">i", len(payload) + 4) + payload)

    def query(self, sql: str) -> None:
        self.send(b"Q", sql.encode() + b"\0")

    async def recv(self) -> Msg:
        kind, length = struct.unpack(">ci", await self.reader.readexactly(5))
        return kind, await self.reader.readexactly(length - 4)

    async def until_ready(self) -> list[Msg]:
        msgs = []
        while True:
            msg = await asyncio.wait_for(self.recv(), 10)
            msgs.append(msg)
            if msg[0] == b"Z":
                return msgs

    async def closed(self) -> bool:
        """Reads to end of stream; True when the server closed the connection."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), 10):
                pass
        except ConnectionError:
            pass
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def kinds(msgs: list[Msg]) -> bytes:
    return b"".join(k for k, _ in msgs)


def extended(client: Client, sql: str, params: list[bytes | None] = (), max_rows: int = 0) -> None:
    client.send(b"P", b"\0" + sql.encode() + b"\0" + struct.pack(">h", 0))
    bind = b"\0\0" + struct.pack(">hh", 0, len(params))
    for p in params:
        bind += struct.pack(">i", -1) if p is None else struct.pack(">i", len(p)) + p
    client.send(b"B", bind + struct.pack(">h", 0))
    client.send(b"D", b"P\0")
    client.send(b"E", b"\0" + struct.pack(">i", max_rows))


class Engine:
    """Answers a fixed table, or an error for SQL mentioning ``missing``; records SQL."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.block = asyncio.Event()
        self.blocking = False

    async def __call__(self, sql: str) -> Answer:
        self.seen.append(sql)
        if self.blocking:
            await self.block.wait()
        if "missing" in sql:
            return error_answer(
                500, "Datafusion error: Error during planning: table 'restate.public.missing' "
                "not found"
            )  # fmt: skip
        return arrow_answer(pa.table({"k": ["a", "b", "c"], "v": pa.array([1, 2, 3], pa.int64())}))


@pytest.fixture
def engine() -> Engine:
    return Engine()


@pytest.fixture
async def pg(engine: Engine) -> AsyncIterator[PgServer]:
    server = PgServer(engine, server_version="16.0", max_connections=3, startup_timeout_s=2)
    await server.start("127.0.0.1:0")
    try:
        yield server
    finally:
        await server.aclose()


async def test_startup_refuses_ssl_and_reports_the_settings_drivers_need(pg: PgServer) -> None:
    c = await Client.connect(pg.port)
    c.writer.write(struct.pack(">ii", 8, wire.SSL_REQUEST))
    assert await c.reader.readexactly(1) == b"N"
    c.writer.write(struct.pack(">ii", 8, wire.GSSENC_REQUEST))
    assert await c.reader.readexactly(1) == b"N"
    msgs = await c.start()
    assert msgs[0] == (b"R", struct.pack(">i", 0))
    assert kinds(msgs).endswith(b"KZ") and msgs[-1][1] == b"I"
    assert c.status["client_encoding"] == "UTF8"
    assert c.status["DateStyle"].startswith("ISO")
    assert c.status["integer_datetimes"] == "on"
    assert c.status["standard_conforming_strings"] == "on"
    assert c.status["server_version"] == "16.0"
    await c.close()


async def test_simple_query_rows_errors_and_empty(pg: PgServer, engine: Engine) -> None:
    c = await Client.connect(pg.port)
    await c.start()
    c.query("select * from t; select 2")
    msgs = await c.until_ready()
    assert kinds(msgs) == b"TDDDCTDDDCZ"
    assert column_oids(msgs[0][1]) == [("k", 25), ("v", 20)]
    assert row_values(msgs[1][1]) == [b"a", b"1"]
    assert msgs[4][1] == b"SELECT 3\0"
    assert engine.seen == ["select * from t", "select 2"]

    c.query("select * from missing; select 1")  # the error ends the batch
    msgs = await c.until_ready()
    assert kinds(msgs) == b"EZ"
    err = fields_of(msgs[0][1])
    assert err["C"] == "42P01" and "missing" in err["M"] and "information_schema" in err["H"]

    c.query("  ;  -- nothing\n")
    assert kinds(await c.until_ready()) == b"IZ"
    c.query("show server_version")
    msgs = await c.until_ready()
    assert kinds(msgs) == b"TDCZ" and row_values(msgs[1][1]) == [b"16.0"]
    c.query("set application_name = 'tour'")
    msgs = await c.until_ready()
    assert kinds(msgs) == b"SCZ" and msgs[0][1] == b"application_name\0tour\0"
    c.send(b"X")
    assert await c.closed()


async def test_transaction_blocks_for_drivers(pg: PgServer) -> None:
    c = await Client.connect(pg.port)
    await c.start()
    c.query("BEGIN")
    assert (await c.until_ready())[-1] == (b"Z", b"T")
    c.query("select * from missing")
    assert (await c.until_ready())[-1] == (b"Z", b"E")
    c.query("select 1")
    msgs = await c.until_ready()
    assert fields_of(msgs[0][1])["C"] == "25P02" and msgs[-1] == (b"Z", b"E")
    c.query("COMMIT")  # of a failed block: rolled back, as PostgreSQL reports it
    msgs = await c.until_ready()
    assert msgs[0] == (b"C", b"ROLLBACK\0") and msgs[-1] == (b"Z", b"I")
    await c.close()


async def test_extended_protocol(pg: PgServer, engine: Engine) -> None:
    c = await Client.connect(pg.port)
    await c.start()
    extended(c, "select * from t where k = $1 and v > $2", [b"it's", b"1"])
    c.send(b"S")
    msgs = await c.until_ready()
    assert kinds(msgs) == b"12TDDDCZ"
    assert engine.seen[-1] == "select * from t where k = 'it''s' and v > '1'"

    extended(c, "select * from t", max_rows=2)  # fetch in pages
    c.send(b"E", b"\0" + struct.pack(">i", 2))
    c.send(b"S")
    msgs = await c.until_ready()
    assert kinds(msgs) == b"12TDDsDCZ" and msgs[-2][1] == b"SELECT 3\0"

    # A named statement, described before it is bound; then closed.
    c.send(b"P", b"s1\0select * from t\0" + struct.pack(">h", 0))
    c.send(b"D", b"Ss1\0")
    c.send(b"C", b"Ss1\0")
    c.send(b"S")
    msgs = await c.until_ready()
    assert kinds(msgs) == b"1tT3Z"

    # A parameter number no client needs is refused, not allocated for.
    c.send(b"P", b"\0select $2000000000\0" + struct.pack(">h", 0))
    c.send(b"S")
    msgs = await c.until_ready()
    assert kinds(msgs) == b"EZ" and fields_of(msgs[0][1])["C"] == "54000"

    # An error skips everything up to Sync, which answers ReadyForQuery.
    c.send(b"B", b"\0nope\0" + struct.pack(">hhh", 0, 0, 0))
    extended(c, "select 1")
    c.send(b"S")
    msgs = await c.until_ready()
    assert kinds(msgs) == b"EZ" and fields_of(msgs[0][1])["C"] == "26000"

    c.send(b"P", b"\0BEGIN\0" + struct.pack(">h", 0))  # commands: NoData, their tag
    c.send(b"B", b"\0\0" + struct.pack(">hhh", 0, 0, 0))
    c.send(b"D", b"P\0")
    c.send(b"E", b"\0" + struct.pack(">i", 0))
    c.send(b"S")
    msgs = await c.until_ready()
    assert kinds(msgs) == b"12nCZ" and msgs[-1][1] == b"T"
    await c.close()


async def test_a_running_query_can_be_cancelled(pg: PgServer, engine: Engine) -> None:
    c = await Client.connect(pg.port)
    await c.start()
    engine.blocking = True
    c.query("select 1")
    await c.writer.drain()
    while not engine.seen:
        await asyncio.sleep(0.01)
    canceller = await Client.connect(pg.port)
    canceller.writer.write(struct.pack(">iiii", 16, wire.CANCEL_REQUEST, *c.key))
    assert await canceller.closed()
    msgs = await c.until_ready()
    assert fields_of(msgs[0][1])["C"] == "57014"
    engine.blocking = False
    c.query("select 1")
    assert kinds(await c.until_ready()) == b"TDDDCZ"
    await c.close()


async def test_connections_beyond_the_limit_are_refused(pg: PgServer) -> None:
    clients = [await Client.connect(pg.port) for _ in range(3)]
    for c in clients:
        await c.start()
    extra = await Client.connect(pg.port)
    extra.writer.write(extra.startup_packet(user="restate"))
    kind, body = await extra.recv()
    assert kind == b"E" and fields_of(body)["C"] == "53300"
    assert await extra.closed()
    await clients[0].close()
    await asyncio.sleep(0.1)
    again = await Client.connect(pg.port)  # a freed slot is usable again
    assert kinds(await again.start()).endswith(b"Z")
    for c in [*clients[1:], again]:
        await c.close()


@pytest.mark.parametrize(
    "payload",
    [
        b"Q" + struct.pack(">i", 2**31 - 1),  # a length far beyond the cap
        b"Q" + struct.pack(">i", 2),  # shorter than its own length field
        b"Q" + struct.pack(">i", -5),
        b"?" + struct.pack(">i", 4),  # unknown message type
        b"Q" + struct.pack(">i", 8) + b"abcd",  # no string terminator
        b"B" + struct.pack(">i", 10) + b"\0\0\x7f\xff\0\0",  # counts beyond the body
        b"P" + struct.pack(">i", 9) + b"\0\0\x80\x00\x01",  # negative count
    ],
)
async def test_bad_messages_close_only_that_connection(pg: PgServer, payload: bytes) -> None:
    c = await Client.connect(pg.port)
    await c.start()
    c.writer.write(payload)
    kind, body = await c.recv()
    assert kind == b"E" and fields_of(body)["C"] == "08P01"
    assert await c.closed()
    await assert_still_serving(pg)


@pytest.mark.parametrize(
    "packet",
    [
        struct.pack(">i", 100_000) + b"\0" * 16,  # startup packet beyond the cap
        struct.pack(">ii", 8, 0x00020000),  # protocol 2.0
        struct.pack(">ii", 4, 0),  # too short
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not PostgreSQL at all
    ],
)
async def test_bad_startup_packets_are_refused(pg: PgServer, packet: bytes) -> None:
    c = await Client.connect(pg.port)
    c.writer.write(packet)
    assert await c.closed()
    await assert_still_serving(pg)


async def test_early_close_and_silent_clients_free_their_slot(pg: PgServer) -> None:
    for partial in (b"", struct.pack(">i", 50), b"Q\0\0"):
        c = await Client.connect(pg.port)
        if partial:
            c.writer.write(partial)
        await c.close()
    silent = [await Client.connect(pg.port) for _ in range(3)]  # never send a startup
    for c in silent:
        assert await c.closed()  # the startup deadline ends them
    await assert_still_serving(pg)


async def assert_still_serving(pg: PgServer) -> None:
    c = await Client.connect(pg.port)
    await c.start()
    c.query("select 1")
    assert kinds(await c.until_ready()) == b"TDDDCZ"
    await c.close()


async def test_through_the_real_engine(filled: Filled) -> None:
    service = QueryService([filled.path], RegistrySnapshot, restate_version="1.7.12", workers=1)
    server = PgServer(lambda sql: service.query(sql, False), server_version="16.0")
    await server.start("127.0.0.1:0")
    try:
        c = await Client.connect(server.port)
        await c.start()
        c.query("select service_name, service_key, key, value_utf8 from state order by key")
        msgs = await c.until_ready()
        assert kinds(msgs)[0:1] == b"T" and kinds(msgs).endswith(b"CZ")
        assert [n for n, _ in column_oids(msgs[0][1])] == [
            "service_name",
            "service_key",
            "key",
            "value_utf8",
        ]
        c.query("selec 1")
        msgs = await c.until_ready()
        assert kinds(msgs) == b"EZ" and fields_of(msgs[0][1])["C"] == "42601"
        await c.close()
    finally:
        await server.aclose()
        await service.aclose()


def test_a_non_json_error_answer_is_still_an_error() -> None:
    with pytest.raises(QueryFailed, match="worker gone"):
        answer_to_result(Answer(500, "text/plain", b"worker gone"))
