"""What the three fuzz parts share: seeds and time budgets, raw HTTP exchanges, the server
under test with its health checks and recovery, log scanning, and the findings report.

A fuzz part does not stop at its first failure: it records a finding, restarts the
server and carries on, so that one run lists every distinct failure it can reach. The
test fails at the end if anything was found, with the seed needed to reproduce it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from harness import Deployment, ProcessDied, Server, register, wait_until

SEED_ENV = "PYRESTATE_FUZZ_SEED"
SECONDS_ENV = "PYRESTATE_FUZZ_SECONDS"
DEFAULT_SEED = 20261128
# Fuzzing time of the whole suite (the three parts share it); start-up comes on top.
DEFAULT_SECONDS = 60.0
# Every exchange with the server is bounded: a request that gets no answer in this time
# is a hang.
REQUEST_TIMEOUT = 10.0
TRACEBACK_MARK = "Traceback (most recent call last):"


def fuzz_seed() -> int:
    raw = os.environ.get(SEED_ENV, "").strip()
    return int(raw) if raw else DEFAULT_SEED


def budget(share: float) -> float:
    """Seconds of fuzzing for a part that takes `share` of the suite's time."""
    raw = os.environ.get(SECONDS_ENV, "").strip()
    return (float(raw) if raw else DEFAULT_SECONDS) * share


def case_rng(seed: int, part: str, index: int) -> random.Random:
    # One generator per case, so a case reads the same whatever ran before it.
    return random.Random(f"{seed}:{part}:{index}")


def shorten(value: object, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]}...<{len(text) - limit} more>...{text[-limit // 2 :]}"


# --- Raw HTTP/1.1 exchanges (they can carry what no HTTP client would send)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int | None  # None: no status line arrived
    headers: dict[str, str]
    body: bytes
    timed_out: bool
    error: str | None  # a socket error on the way, if any


def exchange(
    port: int, data: bytes, timeout: float = REQUEST_TIMEOUT, half_close: bool = False
) -> Reply:
    """Send `data` on a fresh connection and read until the server closes it.

    Requests carry `connection: close`, so the end of the answer is the end of the
    stream; a server that neither answers nor closes within `timeout` has hung.
    `half_close` ends our side after sending: a malformed request that leaves the
    server waiting for more (a short body) then ends at once instead of at `timeout`.
    A well-formed request must not do so: the server may take it as a disconnect.
    """
    deadline = time.monotonic() + timeout
    received = bytearray()
    error: str | None = None
    timed_out = False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            try:
                sock.sendall(data)
                if half_close:
                    sock.shutdown(socket.SHUT_WR)
            except OSError as e:
                # The server may answer (413, 400) and hang up before reading it all.
                error = f"send: {e!r}"
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                sock.settimeout(left)
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    timed_out = True
                    break
                except OSError as e:
                    error = f"recv: {e!r}"
                    break
                if not chunk:
                    break
                received += chunk
    except OSError as e:
        error = f"connect: {e!r}"
    status, headers, body = _parse_reply(bytes(received))
    return Reply(status, headers, body, timed_out, error)


def _parse_reply(raw: bytes) -> tuple[int | None, dict[str, str], bytes]:
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            return None, {}, raw
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return None, {}, raw
        status = int(parts[1])
        if 100 <= status < 200:
            raw = rest  # interim answer (100 Continue): the real one follows
            continue
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
        return status, headers, rest
    return None, {}, b""


def http_request(
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    content_length: bool = True,
) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers]
    if content_length:
        lines.append(b"content-length: " + str(len(body)).encode())
    lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# --- Server log: Python tracebacks


@dataclass(frozen=True, slots=True)
class Traceback:
    error: str  # the final "SomeError: message" line
    where: str  # innermost frame in pyrestate's own code (else the innermost at all)
    context: str  # the log line before the traceback (who logged it, which invocation)
    text: str

    @property
    def signature(self) -> str:
        error_type = self.error.split(":", 1)[0]
        return f"{error_type} at {self.where}"


_FRAME = re.compile(r'^\s+File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')


def find_tracebacks(text: str) -> list[Traceback]:
    lines = text.splitlines()
    found: list[Traceback] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != TRACEBACK_MARK:
            i += 1
            continue
        context = lines[i - 1] if i > 0 else ""
        start = i
        frames: list[tuple[str, str, str]] = []
        i += 1
        # Frames are indented; the exception line is the first one that is not.
        while i < len(lines) and (lines[i].startswith(" ") or not lines[i].strip()):
            m = _FRAME.match(lines[i])
            if m:
                frames.append((m["file"], m["line"], m["func"]))
            i += 1
        error = lines[i] if i < len(lines) else "<truncated>"
        # A chained exception ("During handling ...") is reported by its last block.
        ours = [f for f in frames if "/pyrestate/" in f[0]] or frames
        where = "?"
        if ours:
            path, line, func = ours[-1]
            where = f"{path.split('/src/')[-1]}:{line} in {func}"
        found.append(Traceback(error, where, context, "\n".join(lines[start : i + 1])))
        i += 1
    return found


class LogWatcher:
    """Reads what a log file gained since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def read_new(self) -> str:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return ""
        self.offset += len(data)
        return data.decode("utf-8", "replace")


# --- Findings


@dataclass(slots=True)
class Finding:
    kind: str
    signature: str
    case: str
    detail: str
    count: int = 1


@dataclass(slots=True)
class Findings:
    seed: int
    part: str
    distinct: dict[str, Finding] = field(default_factory=dict)

    def add(self, kind: str, signature: str, case: str, detail: str) -> None:
        key = f"{kind}: {signature}"
        if key in self.distinct:
            self.distinct[key].count += 1
        else:
            self.distinct[key] = Finding(kind, signature, case, detail)

    def __bool__(self) -> bool:
        return bool(self.distinct)

    def report(self) -> str:
        out = [
            f"{self.part} fuzz: {len(self.distinct)} distinct failure(s) with seed {self.seed} "
            f"(reproduce with {SEED_ENV}={self.seed})"
        ]
        for n, f in enumerate(self.distinct.values(), 1):
            out.append(f"\n[{n}] {f.kind}: {f.signature}  (seen {f.count}x)")
            out.append(f"    first input: {f.case}")
            out.append("    " + shorten(f.detail, 3000).replace("\n", "\n    "))
        return "\n".join(out)


def _normalize(text: str) -> str:
    # Ids, numbers and addresses differ between occurrences of the same failure.
    text = re.sub(r"(inv|sign|prom)_[0-9A-Za-z_-]+", r"\1_*", text)
    return re.sub(r"\d+", "#", text)[:160]


# --- The server under test


class Target:
    """A pyrestate server with the Greeter example registered; checked and revived.

    `extra_registrations` are deployments a part registers itself; they are registered
    again when the server has to start over on an empty data directory.
    """

    def __init__(self, workdir: Path, findings: Findings) -> None:
        self.workdir = workdir
        self.findings = findings
        self.server = Server("pyrestate", workdir / "server")
        self.greeter = Deployment("examples.demo:app", workdir, workdir)
        self.http = httpx.Client(timeout=httpx.Timeout(REQUEST_TIMEOUT))
        self.registrations: list[tuple[str, bool]] = []
        self.log = LogWatcher(self.server.log_path)
        self._greetings = 0

    @property
    def ingress_port(self) -> int:
        return self.server.ingress_port

    @property
    def admin_port(self) -> int:
        return self.server.admin_port

    def start(self) -> None:
        self.server.start(timeout=30)
        self.greeter.start()
        self.register(self.greeter.url)

    def register(self, uri: str, http1: bool = False) -> dict:
        resp = register(self.http, self.server.admin_url, uri, http1=http1)
        assert resp.status_code == 201, f"registering {uri}: {resp.status_code} {resp.text}"
        if (uri, http1) not in self.registrations:
            self.registrations.append((uri, http1))
        names = [s["name"] for s in resp.json()["services"]]

        def listed() -> bool:
            body = self.http.get(f"{self.server.admin_url}/services").json()
            return set(names) <= {s["name"] for s in body.get("services", [])}

        wait_until(listed, timeout=15, what=f"services {names} listed")
        return resp.json()

    def close(self) -> None:
        self.http.close()
        self.greeter.stop()
        self.server.stop()
        # A traceback logged while shutting down still counts.
        self.observe("(server shutdown)")

    # -- checks

    def observe(self, case: str, owners: dict[str, str] | None = None) -> None:
        """Record every traceback the server logged since the last look.

        `owners` maps invocation ids to the case that created them: a traceback whose
        log line names one is attributed to that case rather than to `case`.
        """
        for tb in find_tracebacks(self.log.read_new()):
            culprit = case
            for inv_id, owner in (owners or {}).items():
                if inv_id in tb.context or inv_id in tb.text:
                    culprit = owner
                    break
            self.findings.add("traceback in server log", tb.signature, culprit, tb.text)

    def check(self, case: str) -> bool:
        """Health after a batch: process alive, both health endpoints, a real call.

        On trouble, records a finding against `case` (the batch) and revives the server.
        """
        problem = self._problem()
        self.observe(case)
        if problem is None:
            return True
        kind, signature, detail = problem
        self.findings.add(kind, signature, case, f"{detail}\n{self.server.log_tail(40)}")
        self._revive(case)
        return False

    def _problem(self) -> tuple[str, str, str] | None:
        try:
            self.server.process.check_alive()
        except ProcessDied as e:
            first = str(e).splitlines()[0]
            return "server exited", first, str(e)
        try:
            health = self.http.get(f"{self.server.ingress_url}/restate/health")
            if health.status_code != 200:
                text = f"ingress health {health.status_code}: {health.text}"
                return "unhealthy", _normalize(text), text
            admin = self.http.get(f"{self.server.admin_url}/health")
            if admin.status_code != 200:
                text = f"admin health {admin.status_code}: {admin.text}"
                return "unhealthy", _normalize(text), text
        except httpx.TimeoutException as e:
            return "hang", "health check got no answer", repr(e)
        except httpx.HTTPError as e:
            return "unhealthy", f"health check failed: {type(e).__name__}", repr(e)
        return self._greeter_problem()

    def _greeter_problem(self) -> tuple[str, str, str] | None:
        self._greetings += 1
        name = f"fuzz-{self._greetings}"
        try:
            resp = self.http.post(f"{self.server.ingress_url}/Greeter/greet", json=name)
        except httpx.TimeoutException as e:
            return "hang", "Greeter/greet call got no answer", repr(e)
        except httpx.HTTPError as e:
            return "unhealthy", f"Greeter/greet call failed: {type(e).__name__}", repr(e)
        if resp.status_code != 200 or resp.content != json.dumps(f"Hello, {name}!").encode():
            text = f"Greeter/greet answered {resp.status_code}: {resp.text}"
            return "unhealthy", _normalize(text), text
        return None

    def _revive(self, case: str) -> None:
        """Restart on the same data; if that does not give a healthy server, start afresh."""
        self.server.kill()
        try:
            self.server.start(timeout=30)
            problem = self._problem()
        except AssertionError as e:  # the harness raises these when start-up fails
            problem = ("restart failed", type(e).__name__, str(e))
        self.observe(f"(restart after: {case})")
        if problem is None:
            return
        kind, signature, detail = problem
        self.findings.add(
            "no recovery on restart",
            f"{kind}: {signature}",
            case,
            f"{detail}\n{self.server.log_tail(40)}",
        )
        self.server.kill()
        shutil.rmtree(self.server.data_dir, ignore_errors=True)
        self.server.start(timeout=30)
        for uri, http1 in self.registrations:
            self.register(uri, http1)
        self.log.read_new()  # what a wiped start logs belongs to no case


@contextlib.contextmanager
def running_target(workdir: Path, findings: Findings) -> Iterator[Target]:
    target = Target(workdir, findings)
    try:
        target.start()
        yield target
    finally:
        target.close()
