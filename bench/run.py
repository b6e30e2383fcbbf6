"""Benchmark pyrestate against the official Restate server, side by side, in one run.

    python bench/run.py [--rounds N] [--duration S] [--workloads a,b,...]
                        [--servers pyrestate,official] [--workers 1,2] [--quick]

Each round starts, for each hypercorn worker count and each server, a fresh server on a
fresh data dir and a fresh deployment of bench/services.py, registers it, warms up, and
runs the workloads with a closed-loop load generator. The order of the servers flips
every round so that drift on the machine (other jobs, thermal, page cache) falls on both.
Results: bench/results/<output>.json (raw, per round) and <output>.md (the table).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
# The sibling modules are imported by name, also when run.py is imported from elsewhere.
sys.path.insert(0, str(BENCH_DIR))

import loadgen  # noqa: E402
import procstat  # noqa: E402
import report  # noqa: E402
from loadgen import Client, LoadResult  # noqa: E402
from oracle import VERSION as OFFICIAL_VERSION  # noqa: E402

# pyrestate runs with --log-level warning; the official server's default filter is
# "warn,restate=info", lowered to the same level.
OFFICIAL_LOG_FILTER = "warn"
from oracle import ensure_official  # noqa: E402

ALL_WORKLOADS = "abcdefg"
DEFAULT_WORKLOADS = "abcdef"  # g takes minutes per server: run it on request
WORKLOAD_NAMES = {
    "a": "noop",
    "b": "3 steps",
    "c": "object get+set",
    "d": "fan-out 10",
    "e": "sleep 10 ms",
    "f": "/send ingestion",
    "g": "timers pending",
}


@dataclass
class Config:
    rounds: int
    duration: float
    warmup: float
    concurrency: int
    workloads: str
    servers: list[str]
    workers: list[int]
    object_keys: int
    send_shards: int
    g_count: int
    g_mode: str
    g_shards: int
    g_lead: float | None  # seconds from the start of sending to the deadline; None: calibrate
    output: str
    keep: bool
    quiet_cores: float
    quiet_wait: float
    load_mismatch: float = 0.1
    allow_dirty: bool = False


# ---------------------------------------------------------------- processes


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held together so none is handed out twice)."""
    socks = []
    try:
        while len(socks) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            # Ports other engineers use on this machine, and the official defaults.
            if s.getsockname()[1] in (8080, 9070, 5122, 9080):
                s.close()
                continue
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Proc:
    """A child in its own session, so that its whole process group can be stopped."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str], cwd: Path):
        self.name = name
        self.log = log
        with open(log, "ab") as f:
            self.popen = subprocess.Popen(
                argv,
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log.read_text(errors="replace").splitlines()[-40:]
            raise RuntimeError(
                f"{self.name} exited with {self.popen.returncode}:\n" + "\n".join(tail)
            )

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=10)
        # Workers that outlived their parent would hold ports and skew the next run.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)


def wait_for(what: str, predicate: Callable[[], bool], procs: list[Proc], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        for p in procs:
            p.check()
        try:
            if predicate():
                return
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what} (last error: {last!r})")


@dataclass
class Server:
    kind: str
    proc: Proc
    ingress_port: int
    admin_port: int


def server_command(
    kind: str, data: Path, ingress: int, admin: int, node: int
) -> tuple[list[str], dict[str, str]]:
    """argv and environment of a server on these loopback ports and data dir."""
    env = dict(os.environ)
    if kind == "pyrestate":
        env["PYTHONUNBUFFERED"] = "1"
        argv = [
            sys.executable,
            "-m",
            "pyrestate",
            "server",
            "--ingress-bind",
            f"127.0.0.1:{ingress}",
            "--admin-bind",
            f"127.0.0.1:{admin}",
            "--data-dir",
            str(data),
            "--log-level",
            "warning",
        ]
    else:
        env.update(
            RESTATE_INGRESS__BIND_ADDRESS=f"127.0.0.1:{ingress}",
            RESTATE_ADMIN__BIND_ADDRESS=f"127.0.0.1:{admin}",
            RESTATE_BIND_ADDRESS=f"127.0.0.1:{node}",
            RESTATE_ADVERTISED_ADDRESS=f"http://127.0.0.1:{node}",
            RESTATE_DISABLE_TELEMETRY="true",
            DO_NOT_TRACK="1",
            RESTATE_LOG_DISABLE_ANSI_CODES="true",
            # Its default is warn,restate=info: the same level as pyrestate's above.
            RESTATE_LOG_FILTER=OFFICIAL_LOG_FILTER,
        )
        argv = [str(ensure_official()), "--base-dir", str(data), "--node-name", "n1"]
    return argv, env


def server_ready(server: Server) -> bool:
    if httpx.get(f"http://127.0.0.1:{server.admin_port}/health", timeout=2).status_code != 200:
        return False
    httpx.get(f"http://127.0.0.1:{server.ingress_port}/restate/health", timeout=2)
    return True


def start_server(kind: str, workdir: Path, extra_env: dict[str, str] | None = None) -> Server:
    ingress, admin, node = free_ports(3)
    data = workdir / "data"
    data.mkdir(parents=True)
    argv, env = server_command(kind, data, ingress, admin, node)
    env.update(extra_env or {})
    proc = Proc(f"{kind} server", argv, workdir / "server.log", env, REPO_ROOT)
    server = Server(kind, proc, ingress, admin)
    try:
        wait_for(f"{kind} server health", lambda: server_ready(server), [proc], 90)
    except BaseException:
        proc.stop()
        raise
    return server


def services_env() -> dict[str, str]:
    """The environment of a process that imports bench/services.py (as ``services``)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH_DIR), env.get("PYTHONPATH")) if p)
    return env


# hypercorn (0.18) closes an HTTP/2 connection once it has served keep_alive_max_requests
# (its default: 1000) requests, failing the streams still open on it. pyrestate retires
# its connections before that; the official server does not, and its invocations on that
# connection fail and are retried with backoff (hundreds of retries and half the
# throughput over 30,000 invocations, measured with bench/kafka.py). A property of the
# deployment's HTTP server, not of either Restate server: raised for both.
KEEP_ALIVE_MAX_REQUESTS = 10**9


def start_service(
    workers: int, workdir: Path, keep_alive_max_requests: int = KEEP_ALIVE_MAX_REQUESTS
) -> tuple[Proc, int]:
    (port,) = free_ports(1)
    env = services_env()
    config = workdir / "hypercorn.toml"
    config.write_text(f"keep_alive_max_requests = {keep_alive_max_requests}\n")
    # hypercorn speaks HTTP/2 with prior knowledge on cleartext, which both servers use
    # for bidirectional streaming to the deployment.
    argv = [
        sys.executable,
        "-m",
        "hypercorn",
        "services:app",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--config",
        str(config),
    ]
    proc = Proc(
        f"service (hypercorn --workers {workers})", argv, workdir / "service.log", env, BENCH_DIR
    )

    def ready() -> bool:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200

    try:
        wait_for("service health", ready, [proc], 60)
    except BaseException:
        proc.stop()
        raise
    return proc, port


async def warm_up(cfg: Config, server: Server) -> None:
    """Warm both processes (imports, caches, connection pools) before measuring."""
    await loadgen.closed_loop(
        "127.0.0.1",
        server.ingress_port,
        lambda c, w, i: (c.format("POST", "/Bench/noop", b"1"), expect_json(1)),
        cfg.concurrency,
        0.0,
        max(1.0, cfg.warmup),
        lambda: {},
    )


def register(server: Server, service_port: int, service: Proc) -> None:
    resp = httpx.post(
        f"http://127.0.0.1:{server.admin_port}/deployments",
        json={"uri": f"http://127.0.0.1:{service_port}"},
        timeout=30,
    )
    if resp.status_code not in (200, 201):
        raise RuntimeError(f"registration failed: {resp.status_code} {resp.text[:500]}")

    # The ingress learns of new services asynchronously on the official server.
    def callable_() -> bool:
        r = httpx.post(f"http://127.0.0.1:{server.ingress_port}/Bench/noop", json=1, timeout=10)
        return r.status_code == 200

    wait_for("first call through the ingress", callable_, [server.proc, service], 60)


# ---------------------------------------------------------------- measurements


def _system_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine (to spot other jobs stealing the cores)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / procstat.CLK_TCK


def sampler(server: Server, service: Proc | None) -> Callable[[], dict[str, float]]:
    """CPU seconds so far; ``service`` None: the services run inside the server."""

    def sample() -> dict[str, float]:
        out = {
            "wall": time.monotonic(),
            "server": procstat.tree_cpu_seconds(server.proc.pid),
            "service": procstat.tree_cpu_seconds(service.pid) if service else 0.0,
            "loadgen": procstat.self_cpu_seconds(),
            "machine": _system_busy_seconds(),
        }
        if service is not None:
            for pid, cpu in procstat.per_process_cpu_seconds(service.pid).items():
                out[f"service_pid_{pid}"] = cpu
        return out

    return sample


def cpu_metrics(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, Any]:
    """CPU ms per request of each party over a window, and what the rest of the box used."""
    d = {k: after[k] - before[k] for k in ("wall", "server", "service", "loadgen", "machine")}
    per = max(n, 1)
    other = d["machine"] - d["server"] - d["service"] - d["loadgen"]
    # How evenly hypercorn's workers shared the service CPU (the parent only supervises).
    worker_cpu = sorted(
        (after[k] - before.get(k, 0.0) for k in after if k.startswith("service_pid_")),
        reverse=True,
    )
    return {
        "server_cpu_ms": d["server"] * 1000 / per,
        "service_cpu_ms": d["service"] * 1000 / per,
        "loadgen_cpu_ms": d["loadgen"] * 1000 / per,
        "server_cores": d["server"] / d["wall"],
        "service_cores": d["service"] / d["wall"],
        "other_cores": max(0.0, other) / d["wall"],
        "service_cpu_by_process_s": [round(x, 3) for x in worker_cpu],
    }


def expect_json(expected: Any) -> loadgen.Check:
    exact = json.dumps(expected).encode()

    def check(status: int, body: bytes) -> str | None:
        if status == 200 and (body == exact or _loads(body) == expected):
            return None
        return f"status {status}, body {body[:200]!r}, expected {exact!r}"

    return check


def _in_order(calls: list[tuple[int, float, float]]) -> bool:
    """(n, sent, answered) of one key's calls: 1..len each once, and linearizable."""
    calls = sorted(calls)
    if [n for n, _, _ in calls] != list(range(1, len(calls) + 1)):
        return False
    latest_sent = float("-inf")  # among calls with a smaller n
    for _, sent, answered in calls:
        if answered < latest_sent:
            return False  # answered before a call with a smaller n was even sent
        latest_sent = max(latest_sent, sent)
    return True


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


class Runner:
    """Runs the workloads against one started server + service."""

    def __init__(self, cfg: Config, server: Server, service: Proc | None) -> None:
        self.cfg = cfg
        self.server = server
        self.service = service
        self.sample = sampler(server, service)
        self.port = server.ingress_port

    async def wait_quiet(self) -> dict[str, float]:
        """Wait (bounded) until other jobs on the machine leave the cores to us.

        This machine is shared; a test suite starting next to a measured window can
        take half a core. Waiting for a quiet second before each workload keeps most
        windows clean, and what remains is reported as "other cores".
        """
        start = time.monotonic()
        other = 0.0
        while self.cfg.quiet_cores > 0:
            a = self.sample()
            await asyncio.sleep(1.0)
            other = cpu_metrics(a, self.sample(), 1)["other_cores"]
            if other <= self.cfg.quiet_cores or time.monotonic() - start > self.cfg.quiet_wait:
                break
        return {"quiet_wait_s": time.monotonic() - start, "other_cores_before": other}

    def check(self) -> None:
        """Both processes still alive (raises otherwise)."""
        self.server.proc.check()
        if self.service is not None:
            self.service.check()

    async def closed(self, make: loadgen.MakeRequest, duration: float | None = None) -> LoadResult:
        self.check()
        result = await loadgen.closed_loop(
            "127.0.0.1",
            self.port,
            make,
            self.cfg.concurrency,
            self.cfg.warmup,
            self.cfg.duration if duration is None else duration,
            self.sample,
        )
        self.check()
        return result

    def summarize(self, r: LoadResult, extra_failures: int = 0) -> dict[str, Any]:
        ok = len(r.latencies_ms)
        return {
            "throughput": ok / r.window_s,
            "p50_ms": loadgen.percentile(r.latencies_ms, 50),
            "p99_ms": loadgen.percentile(r.latencies_ms, 99),
            "requests": r.total_requests,
            "failures": r.failures + extra_failures,
            "failure_samples": r.failure_samples,
            **cpu_metrics(r.cpu_before, r.cpu_after, ok),
        }

    async def run(self, w: str) -> dict[str, Any]:
        return await getattr(self, f"workload_{w}")()

    async def _simple(self, path: str, arg: Callable[[int], int], result: Callable[[int], Any]):
        def make(client: Client, w: int, i: int) -> tuple[bytes, loadgen.Check]:
            x = arg(w * 10_000_000 + i)
            return client.format("POST", path, str(x).encode()), expect_json(result(x))

        return self.summarize(await self.closed(make))

    async def workload_a(self) -> dict[str, Any]:
        return await self._simple("/Bench/noop", lambda n: n, lambda x: x)

    async def workload_b(self) -> dict[str, Any]:
        return await self._simple("/Bench/steps", lambda n: n, lambda x: x + 3)

    async def workload_c(self) -> dict[str, Any]:
        keys = self.cfg.object_keys
        seen: dict[int, list[tuple[int, float, float]]] = {}
        rng = random.Random(7)

        def make(client: Client, w: int, i: int) -> tuple[bytes, loadgen.Check]:
            k = rng.randrange(keys)
            sent = time.perf_counter()

            def check(status: int, body: bytes) -> str | None:
                n = _loads(body) if status == 200 else None
                if not isinstance(n, int):
                    return f"status {status}, body {body[:200]!r}"
                seen.setdefault(k, []).append((n, sent, time.perf_counter()))
                return None

            return client.format("POST", f"/BenchObj/k{k}/getset", b"0"), check

        r = await self.closed(make)
        # Per key the calls must have returned 1..n, each once (nothing lost or doubled),
        # and in order: a call sent after another one's answer came must see a higher n.
        # Each key breaking either counts as one failure.
        bad = [k for k, calls in seen.items() if not _in_order(calls)]
        out = self.summarize(r, extra_failures=len(bad))
        if bad:
            out["failure_samples"].append(f"keys with wrong sequences, e.g. k{bad[0]}")
        out["keys_touched"] = len(seen)
        return out

    async def workload_d(self) -> dict[str, Any]:
        return await self._simple("/Bench/fanout", lambda n: n, lambda x: 10 * x + 45)

    async def workload_e(self) -> dict[str, Any]:
        return await self._simple("/Bench/sleep", lambda n: 10, lambda x: 10)

    async def _sink_count(self, client: Client, prefix: str, shard: int) -> int:
        status, body = await client.request("POST", f"/Sink/{prefix}{shard}/count", b"")
        n = _loads(body) if status == 200 else None
        if not isinstance(n, int):
            raise RuntimeError(f"count of shard {shard}: {status} {body[:200]!r}")
        return n

    async def sink_total(self, prefix: str, expected: dict[int, int], timeout: float) -> float:
        """Poll the Sink counters until each shard reached its expected count.

        Returns the monotonic time when all had. Shards that are done are not polled
        again, and polls are spaced, to keep the polling's own load small.
        """
        client = Client("127.0.0.1", self.port)
        pending = {s for s, n in expected.items() if n > 0}
        deadline = time.monotonic() + timeout
        try:
            while pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(pending)} {prefix} shards not complete")
                for s in sorted(pending):
                    if await self._sink_count(client, prefix, s) >= expected[s]:
                        pending.discard(s)
                if pending:
                    await asyncio.sleep(0.2)
            return time.monotonic()
        finally:
            client.close()

    async def sink_audit(
        self, prefix: str, expected: dict[int, int], linger: float = 3.0
    ) -> dict[str, int]:
        """After ``linger`` seconds more (for late duplicates), every shard's count against
        what was accepted: invocations lost and invocations executed twice, separately."""
        await asyncio.sleep(linger)
        client = Client("127.0.0.1", self.port)
        try:
            counts = {s: await self._sink_count(client, prefix, s) for s in expected}
        finally:
            client.close()
        return {
            "lost": sum(max(0, n - counts[s]) for s, n in expected.items()),
            "duplicated": sum(max(0, counts[s] - n) for s, n in expected.items()),
        }

    async def workload_f(self) -> dict[str, Any]:
        shards = self.cfg.send_shards
        accepted: dict[int, int] = dict.fromkeys(range(shards), 0)
        prefix = "f"

        def make(client: Client, w: int, i: int) -> tuple[bytes, loadgen.Check]:
            s = (w + i * self.cfg.concurrency) % shards

            def check(status: int, body: bytes) -> str | None:
                if status in (200, 202) and b"invocationId" in body:
                    accepted[s] += 1
                    return None
                return f"status {status}, body {body[:200]!r}"

            return client.format("POST", f"/Sink/{prefix}{s}/hit/send", b"1"), check

        t0 = self.sample()
        # No separate warm-up: the server is warm from the workloads before, and every
        # accepted send must be accounted for when waiting for completion.
        r = await loadgen.closed_loop(
            "127.0.0.1",
            self.port,
            make,
            self.cfg.concurrency,
            0.0,
            self.cfg.duration,
            self.sample,
        )
        sent_done = time.monotonic()
        total = sum(accepted.values())
        failures = r.failures
        samples = list(r.failure_samples)
        try:
            done = await self.sink_total(prefix, accepted, timeout=max(120.0, total / 20))
        except (TimeoutError, RuntimeError, OSError, loadgen.HttpError) as exc:
            failures += 1
            samples.append(f"completion: {exc}")
            done = float("nan")
        t1 = self.sample()
        audit = await self.sink_audit(prefix, accepted)
        if audit["lost"] or audit["duplicated"]:
            failures += audit["lost"] + audit["duplicated"]
            samples.append(f"{audit['lost']} lost, {audit['duplicated']} executed twice")
        out = {
            "accepted": total,
            **audit,
            "accepted_per_s": len(r.latencies_ms) / r.window_s,
            "p50_ms": loadgen.percentile(r.latencies_ms, 50),
            "p99_ms": loadgen.percentile(r.latencies_ms, 99),
            "drain_s": done - sent_done,
            "completed_per_s": total / (done - t0["wall"]),
            "failures": failures,
            "failure_samples": samples,
            # Per accepted invocation, over sending and completing everything.
            **cpu_metrics(t0, t1, total),
        }
        # The ingestion window alone: what accepting a send costs the server.
        send_cpu = cpu_metrics(r.cpu_before, r.cpu_after, len(r.latencies_ms))
        out["send_window_server_cpu_ms"] = send_cpu["server_cpu_ms"]
        out["send_window_loadgen_cpu_ms"] = send_cpu["loadgen_cpu_ms"]
        return out

    async def workload_g(self) -> dict[str, Any]:
        cfg = self.cfg
        shards = cfg.g_shards

        def sender(prefix: str, deadline_ms: float, counts: dict[int, int]):
            def make(client: Client, w: int, i: int) -> tuple[bytes, loadgen.Check]:
                s = (w + i * cfg.concurrency) % shards
                if cfg.g_mode == "delay":
                    delay = max(0, int(deadline_ms - time.time() * 1000))
                    path = f"/Sink/{prefix}{s}/hit/send?delay={delay}ms"
                    body = b"1"
                else:
                    path = "/Bench/sleepUntil/send"
                    body = json.dumps({"deadline": deadline_ms, "shard": f"{prefix}{s}"}).encode()

                def check(status: int, body: bytes) -> str | None:
                    if status in (200, 202) and b"invocationId" in body:
                        counts[s] += 1
                        return None
                    return f"status {status}, body {body[:200]!r}"

                return client.format("POST", path, body), check

            return make

        marks: list[float] = []

        async def send_n(
            make: loadgen.MakeRequest, n: int, stop_at: float = float("inf")
        ) -> tuple[float, int, int]:
            """Closed-loop sends until n were issued or stop_at (monotonic) passed.

            Returns (seconds, issued, failures); `marks` gets the time of every tenth of n.
            """
            issued = 0
            failures = 0
            start = time.monotonic()
            step = max(1, n // 10)

            async def worker(w: int) -> None:
                nonlocal issued, failures
                client = Client("127.0.0.1", self.port)
                i = 0
                try:
                    while issued < n and time.monotonic() < stop_at:
                        issued += 1
                        if issued % step == 0:
                            marks.append(time.monotonic())
                        request, check = make(client, w, i)
                        i += 1
                        try:
                            status, body = await client.send(request)
                            err = check(status, body)
                        except (OSError, loadgen.HttpError, TimeoutError) as exc:
                            err = str(exc)
                        if err is not None:
                            failures += 1
                finally:
                    client.close()

            await asyncio.gather(*(worker(w) for w in range(cfg.concurrency)))
            return time.monotonic() - start, issued, failures

        # Calibrate: the common deadline must lie after the last of the n is pending, so
        # the ingestion rate is measured first on a small batch that fires at once.
        cal_n = min(2000, max(200, cfg.g_count // 50))
        cal_counts = dict.fromkeys(range(shards), 0)
        cal_start = time.monotonic()
        cal_s, _, _ = await send_n(sender("gcal", time.time() * 1000 + 1000, cal_counts), cal_n)
        cal_done = await self.sink_total("gcal", cal_counts, timeout=300)
        # Delayed sends are pending once accepted; sleeping handlers only once they ran
        # up to their ctx.sleep, so there the end-to-end rate (a lower bound) is used.
        rate = cal_n / (cal_s if cfg.g_mode == "delay" else cal_done - cal_start)
        lead_s = cfg.g_lead or cfg.g_count / rate * 1.5 + 15

        await asyncio.sleep(1.0)
        rss_idle = procstat.tree_rss_bytes(self.server.proc.pid)
        counts = dict.fromkeys(range(shards), 0)
        deadline_wall = time.time() + lead_s
        deadline_mono = time.monotonic() + lead_s
        c0 = self.sample()
        marks.clear()
        marks.append(time.monotonic())
        send_s, issued, failures = await send_n(
            sender("g", deadline_wall * 1000, counts), cfg.g_count, stop_at=deadline_mono - 3.0
        )
        c1 = self.sample()
        total = sum(counts.values())
        # Does ingestion slow down as timers pile up? Rate per tenth of the sends.
        step = max(1, cfg.g_count // 10)
        rate_by_tenth = [round(step / (b - a)) for a, b in itertools.pairwise(marks)]
        if issued < cfg.g_count:
            # Ingestion slowed down as timers piled up, and the deadline came before all
            # were sent: the caller retries on a fresh server with a lead from this rate.
            return {
                "failures": 1,
                "failure_samples": [
                    f"deadline {lead_s:.0f}s ahead came after {issued} of {cfg.g_count} sends"
                ],
                "lead_s": lead_s,
                "accepted_per_s_by_tenth": rate_by_tenth,
                "sent_before_deadline": issued,
                "accepted_per_s": total / send_s,
                # Quadratic extrapolation: on a server whose cost per insert grows with
                # the number pending, the time to send n grows like n squared.
                "retry_lead_s": send_s * (cfg.g_count / max(issued, 1)) ** 2 * 1.2 + 20,
            }
        margin_s = deadline_mono - time.monotonic()
        # Let in-flight work settle (sleep mode: invocations still running up to their
        # suspension), then take the memory high-water mark while all are pending.
        rss_pending = 0
        settle: dict[str, float] | None = None
        while time.monotonic() < deadline_mono - 0.5:
            if settle is None and time.monotonic() >= deadline_mono - 3.0:
                settle = self.sample()
            rss_pending = max(rss_pending, procstat.tree_rss_bytes(self.server.proc.pid))
            await asyncio.sleep(min(0.5, max(0.0, deadline_mono - 0.5 - time.monotonic())))
        await asyncio.sleep(max(0.0, deadline_mono - time.monotonic()))
        c2 = self.sample()
        # Server + service still busy just before the deadline means not everything was
        # pending yet (sleep mode) and the memory figure undercounts.
        settle_m = cpu_metrics(settle or c1, c2, 1)
        busy_before = settle_m["server_cores"] + settle_m["service_cores"]
        samples = []
        try:
            done = await self.sink_total("g", counts, timeout=max(600.0, total / 50))
        except (TimeoutError, RuntimeError, OSError, loadgen.HttpError) as exc:
            failures += 1
            samples.append(f"completion: {exc}")
            done = float("nan")
        c3 = self.sample()
        fire_s = done - deadline_mono
        audit = await self.sink_audit("g", counts)
        if audit["lost"] or audit["duplicated"]:
            failures += audit["lost"] + audit["duplicated"]
            samples.append(f"{audit['lost']} lost, {audit['duplicated']} executed twice")
        return {
            **audit,
            "mode": cfg.g_mode,
            "lead_s": lead_s,
            "accepted_per_s_by_tenth": rate_by_tenth,
            "pending": total,
            "failures": failures,
            "failure_samples": samples,
            "accepted_per_s": total / send_s,
            "deadline_margin_s": margin_s,  # < 0: the deadline passed while still sending
            "rss_idle_mb": rss_idle / 2**20,
            "rss_pending_mb": rss_pending / 2**20,
            "rss_per_pending_bytes": (rss_pending - rss_idle) / max(total, 1),
            "fire_s": fire_s,
            "fired_per_s": total / fire_s if fire_s > 0 else float("nan"),
            "ingest_server_cpu_ms": cpu_metrics(c0, c1, total)["server_cpu_ms"],
            "busy_cores_before_deadline": busy_before,
            **cpu_metrics(c2, c3, total),
        }


async def run_one(cfg: Config, kind: str, workers: int, workdir: Path) -> dict[str, Any]:
    """Fresh server + fresh deployment, all selected workloads."""
    workdir.mkdir(parents=True)
    out: dict[str, Any] = {"server": kind, "workers": workers, "workloads": {}}
    if kind == "pyrestate":
        out["source"] = source_version()
    server = start_server(kind, workdir)
    service: Proc | None = None
    try:
        service, port = start_service(workers, workdir)
        register(server, port, service)
        runner = Runner(cfg, server, service)
        # What the server burns doing nothing (background tasks) over a short window.
        idle0 = runner.sample()
        await asyncio.sleep(2.0)
        idle = cpu_metrics(idle0, runner.sample(), 1)
        out["idle_server_cores"] = idle["server_cores"]
        out["server_rss_mb_start"] = procstat.tree_rss_bytes(server.proc.pid) / 2**20
        await warm_up(cfg, server)
        for w in cfg.workloads:
            t = time.monotonic()
            try:
                quiet = await runner.wait_quiet()
                res = await runner.run(w)
                res.update(quiet)
            except Exception as exc:
                res = {
                    "failures": 1,
                    "failure_samples": [f"{type(exc).__name__}: {exc}"],
                    "crashed": True,
                }
            out["workloads"][w] = res
            waited = res.get("quiet_wait_s", 0.0)
            quiet_note = f", {waited:.0f}s waiting for quiet" if waited > 2 else ""
            print(
                f"    {w} {WORKLOAD_NAMES[w]:<16} {report.one_line(w, res)} "
                f"[{time.monotonic() - t:.0f}s{quiet_note}]",
                flush=True,
            )
            if res.get("crashed"):
                # A dead server or service invalidates the rest of this run.
                try:
                    server.proc.check()
                    service.check()
                except RuntimeError as exc:
                    print(f"    aborting this run: {exc}", flush=True)
                    break
            await asyncio.sleep(0.5)
        out["server_rss_mb_end"] = procstat.tree_rss_bytes(server.proc.pid) / 2**20
    finally:
        if service is not None:
            service.stop()
        server.proc.stop()
    return out


def write_results(cfg: Config, meta: dict[str, Any], runs: list[dict[str, Any]]) -> Path:
    results = BENCH_DIR / "results"
    results.mkdir(exist_ok=True)
    data = {"meta": meta, "config": asdict(cfg), "runs": runs}
    tmp = results / f"{cfg.output}.json.tmp"
    tmp.write_text(json.dumps(data, indent=1, default=_json_default) + "\n")
    tmp.replace(results / f"{cfg.output}.json")
    md = report.render(data)
    tmp = results / f"{cfg.output}.md.tmp"
    tmp.write_text(md)
    target = results / f"{cfg.output}.md"
    tmp.replace(target)
    return target


def _clip(text: str) -> str:
    # Keep the head (what failed) and the tail (the exception at the end of a log).
    return text if len(text) <= 2000 else f"{text[:400]}\n...\n{text[-1500:]}"


def _json_default(o: Any) -> Any:
    raise TypeError(f"not JSON serializable: {o!r}")


def source_version() -> dict[str, Any]:
    """Which pyrestate code a run measured: the working tree changes under our feet."""
    digest = hashlib.sha256()
    for path in sorted((REPO_ROOT / "src" / "pyrestate").rglob("*.py")):
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    return {"src_sha256": digest.hexdigest()[:12]}


def git_state() -> dict[str, Any]:
    """The commit measured, what differs from it, and where the servers import pyrestate."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=True
        ).stdout

    # Result files are the benchmarks' output, not what they measure.
    dirty = [
        line[3:]
        for line in git("status", "--porcelain", "--untracked-files=all").splitlines()
        if not line[3:].startswith("bench/results/")
    ]
    # The servers import pyrestate as this interpreter does (PYTHONPATH may point elsewhere).
    origin = subprocess.run(
        [sys.executable, "-c", "import pyrestate; print(pyrestate.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {
        "commit": git("rev-parse", "HEAD").strip(),
        "dirty": dirty,
        "pyrestate_imported_from": origin,
        **source_version(),
    }


def require_clean(state: dict[str, Any], allow_dirty: bool) -> None:
    if state["dirty"] and not allow_dirty:
        raise SystemExit(
            "uncommitted changes (a figure must name the commit it measured): "
            + ", ".join(state["dirty"][:10])
            + "; commit them or pass --allow-dirty"
        )


def machine_info() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "official_version": OFFICIAL_VERSION,
    }


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, help="rounds, servers alternating (default 5)")
    p.add_argument("--duration", type=float, help="measured seconds per workload (default 10)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds before each (default 2)")
    p.add_argument("--concurrency", type=int, default=32, help="closed-loop clients (32)")
    p.add_argument("--workloads", help=f"subset of {ALL_WORKLOADS} (default {DEFAULT_WORKLOADS})")
    p.add_argument("--servers", default="pyrestate,official")
    p.add_argument("--workers", help="hypercorn worker counts (default 1,2)")
    p.add_argument("--object-keys", type=int, default=10_000, help="keys for (c)")
    p.add_argument("--send-shards", type=int, default=32, help="counter keys for (f)")
    p.add_argument("--g-count", type=int, help="pending timers for (g) (default 100000)")
    p.add_argument(
        "--g-mode",
        choices=["delay", "sleep"],
        default="delay",
        help="(g): delayed /send (default) or handlers suspended in ctx.sleep",
    )
    p.add_argument("--g-shards", type=int, default=64, help="counter keys for (g)")
    p.add_argument(
        "--g-lead", type=float, help="(g): seconds from first send to the deadline (calibrated)"
    )
    p.add_argument("--output", help="results file name under bench/results (default latest)")
    p.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    p.add_argument(
        "--quiet-cores",
        type=float,
        default=0.2,
        help="before each workload, wait until other processes use at most this many "
        "cores (0: do not wait) (0.2)",
    )
    p.add_argument("--quiet-wait", type=float, default=60, help="wait at most this long (60)")
    p.add_argument(
        "--load-mismatch",
        type=float,
        default=0.1,
        help="flag, and leave out of the ratios, a round whose two servers' windows saw "
        "background load differing by more than this many cores (0.1)",
    )
    p.add_argument("--allow-dirty", action="store_true", help="run on uncommitted changes")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 2 rounds, 3 s, 1 worker, g with 5000 timers",
    )
    a = p.parse_args(argv)
    quick = a.quick
    workloads = (a.workloads or DEFAULT_WORKLOADS).replace(",", "")
    if not workloads or any(w not in ALL_WORKLOADS for w in workloads):
        p.error(f"--workloads must be letters from {ALL_WORKLOADS}")
    servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    if not servers or any(s not in ("pyrestate", "official") for s in servers):
        p.error("--servers takes pyrestate and/or official")
    workers = [int(x) for x in (a.workers or ("1" if quick else "1,2")).split(",")]
    return Config(
        rounds=a.rounds or (2 if quick else 5),
        duration=a.duration or (3.0 if quick else 10.0),
        warmup=a.warmup if a.warmup is not None else (1.0 if quick else 2.0),
        concurrency=a.concurrency,
        workloads=workloads,
        servers=servers,
        workers=workers,
        object_keys=a.object_keys,
        send_shards=a.send_shards,
        g_count=a.g_count or (5000 if quick else 100_000),
        g_mode=a.g_mode,
        g_shards=a.g_shards,
        g_lead=a.g_lead,
        output=a.output or ("quick" if quick else "latest"),
        keep=a.keep,
        quiet_cores=a.quiet_cores,
        quiet_wait=a.quiet_wait,
        load_mismatch=a.load_mismatch,
        allow_dirty=a.allow_dirty,
    )


async def main_async(cfg: Config) -> None:
    git = git_state()
    require_clean(git, cfg.allow_dirty)
    if "official" in cfg.servers:
        ensure_official()
    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join([".venv/bin/python", "bench/run.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "git": git,
    }
    runs: list[dict[str, Any]] = []
    base = Path(tempfile.mkdtemp(prefix="pyrestate-bench-"))
    print(f"data and logs under {base}", flush=True)
    try:
        for rnd in range(cfg.rounds):
            order = cfg.servers if rnd % 2 == 0 else cfg.servers[::-1]
            for workers in cfg.workers:
                for kind in order:
                    print(
                        f"round {rnd + 1}/{cfg.rounds}, {kind}, hypercorn --workers {workers}",
                        flush=True,
                    )
                    workdir = base / f"r{rnd + 1}-{kind}-w{workers}"
                    t = time.monotonic()
                    try:
                        run = await run_one(cfg, kind, workers, workdir)
                        g = run["workloads"].get("g") or {}
                        attempts = [g]
                        while "retry_lead_s" in g and len(attempts) < 3:
                            lead = g["retry_lead_s"]
                            print(
                                f"    retrying (g) on a fresh server, deadline {lead:.0f}s ahead",
                                flush=True,
                            )
                            again = await run_one(
                                replace(cfg, workloads="g", g_lead=lead),
                                kind,
                                workers,
                                workdir.with_name(f"{workdir.name}-g{len(attempts)}"),
                            )
                            g = again["workloads"].get("g") or {}
                            attempts.append(g)
                        if len(attempts) > 1:
                            run["workloads"]["g"] = {**g, "earlier_attempts": attempts[:-1]}
                    except Exception as exc:
                        traceback.print_exc()
                        print(f"    run failed: {exc}", flush=True)
                        run = {
                            "server": kind,
                            "workers": workers,
                            "workloads": {},
                            "error": _clip(f"{type(exc).__name__}: {exc}"),
                        }
                    run["round"] = rnd + 1
                    run["seconds"] = time.monotonic() - t
                    runs.append(run)
                    write_results(cfg, meta, runs)
                    if not cfg.keep:
                        shutil.rmtree(workdir / "data", ignore_errors=True)
                        for retry in workdir.parent.glob(f"{workdir.name}-g*"):
                            shutil.rmtree(retry / "data", ignore_errors=True)
    finally:
        if not cfg.keep:
            # Logs of failed runs are worth keeping; data dirs are not.
            if not any("error" in r for r in runs):
                shutil.rmtree(base, ignore_errors=True)
            else:
                print(f"logs kept under {base}", flush=True)
    target = write_results(cfg, meta, runs)
    print()
    print(target.read_text())
    print(f"written to {target} and {target.with_suffix('.json')}")


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    loadgen.install_fast_loop()
    asyncio.run(main_async(cfg))


# --- pyrestate against itself in two modes (bench/inprocess.py, bench/tracing.py)

OneMode = Callable[["Config", str, Path], Awaitable[dict[str, Any]]]
ModesTable = Callable[[dict[str, Any], list[dict[str, Any]], str], str]


def mode_median(
    runs: list[dict[str, Any]], mode: str, w: str, value: Callable[[dict[str, Any]], Any]
) -> float | None:
    """The median of ``value`` of workload ``w`` in ``mode`` over the rounds without
    failures (None where it has none)."""
    values = [
        value(r[mode][w])
        for r in runs
        if r[mode].get(w) and not r[mode][w].get("failures") and value(r[mode][w]) is not None
    ]
    return statistics.median(values) if values else None


def mode_medians(
    runs: list[dict[str, Any]],
    modes: tuple[str, str],
    w: str,
    value: Callable[[dict[str, Any]], Any],
) -> tuple[float | None, float | None]:
    """``mode_median`` of both modes."""
    first, second = (mode_median(runs, m, w, value) for m in modes)
    return first, second


def compared(
    runs: list[dict[str, Any]],
    modes: tuple[str, str],
    w: str,
    value: Callable[[dict[str, Any]], Any],
    fmt: str,
) -> list[str]:
    """Table cells: the median of each mode, then the second as a multiple of the first."""
    first, second = mode_medians(runs, modes, w, value)
    return [cell(first, fmt), cell(second, fmt), times(first, second)]


def modes_heading(title: str, meta: dict[str, Any], runs: list[dict[str, Any]]) -> list[str]:
    """The first lines of a two-mode table: its title, what ran, and the command."""
    return [
        f"# {title}",
        "",
        f"Commit {meta['git']['commit'][:7]}, {meta['machine']['cpus']} CPUs, "
        f"{len(runs)} rounds (order alternating), {meta['duration']:g} s per workload, "
        f"{meta['concurrency']} closed-loop clients. Command: `{meta['command']}`.",
        "",
    ]


def cell(x: float | None, fmt: str) -> str:
    return format(x, fmt) if x is not None else "-"


def times(a: float | None, b: float | None) -> str:
    """``b`` as a multiple of ``a``."""
    return f"{b / a:.2f}x" if a and b else "-"


def modes_main(
    doc: str | None,
    name: str,
    modes: tuple[str, str],
    one: OneMode,
    table: ModesTable,
    workloads: str,
) -> None:
    """Parse ``--rounds --duration --workloads --allow-dirty``; run ``one`` for each mode,
    in alternating order round by round, on the workloads (letters of ``workloads``); write
    bench/results/<name>.{json,md}."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--workloads", default=workloads)
    p.add_argument("--allow-dirty", action="store_true", help="run on uncommitted changes")
    a = p.parse_args()
    if any(w not in workloads for w in a.workloads):
        p.error(f"--workloads: letters of {workloads}")
    loadgen.install_fast_loop()
    asyncio.run(_modes(a, name, modes, one, table))


async def _modes(
    a: argparse.Namespace, name: str, modes: tuple[str, str], one: OneMode, table: ModesTable
) -> None:
    git = git_state()
    require_clean(git, a.allow_dirty)
    cfg = parse_args(
        ["--servers", "pyrestate", "--workloads", a.workloads, "--duration", str(a.duration)]
    )
    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join([".venv/bin/python", f"bench/{name}.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "git": git,
        "duration": cfg.duration,
        "concurrency": cfg.concurrency,
    }
    base = Path(tempfile.mkdtemp(prefix=f"pyrestate-bench-{name}-"))
    runs: list[dict[str, Any]] = []
    for rnd in range(a.rounds):
        order = modes if rnd % 2 == 0 else modes[::-1]
        result: dict[str, Any] = {"round": rnd + 1}
        for mode in order:
            print(f"round {rnd + 1}/{a.rounds}, {mode}", flush=True)
            result[mode] = await one(cfg, mode, base / f"r{rnd + 1}-{mode}")
        runs.append(result)
    out = BENCH_DIR / "results"
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    (out / f"{name}.md").write_text(table(meta, runs, cfg.workloads))
    print(table(meta, runs, cfg.workloads))


if __name__ == "__main__":
    main()
