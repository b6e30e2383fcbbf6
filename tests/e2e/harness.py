"""Process and polling helpers for the end-to-end tests.

Everything here is synchronous and stdlib/httpx only, so fixtures can use it from any
test (sync or async). Processes are started in their own session so that the whole
process group can be signalled (hypercorn and the official server spawn children).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]

# Which server the suite runs against: "pyrestate" (default) or "official" (the oracle).
TARGET_ENV = "PYRESTATE_E2E_TARGET"
OFFICIAL_BIN_ENV = "PYRESTATE_E2E_OFFICIAL_BIN"
# The interpreter that serves the example deployments: by default this one (the pinned
# SDK); scripts/test.sh runs the end-to-end tests again with a venv of the newest SDK.
SDK_PYTHON = os.environ.get("PYRESTATE_E2E_SDK_PYTHON") or sys.executable
DEFAULT_OFFICIAL_BIN = "/tmp/oracle/node_modules/.bin/restate-server"
# Examples find the directory for their file-based counters through this variable.
COUNT_DIR_ENV = "PYRESTATE_E2E_COUNT_DIR"

T = TypeVar("T")


TRANSPORT_ENV = "PYRESTATE_E2E_TRANSPORT"
# The start of a log record of the server: "2026-11-28 16:08:15,886 ERROR name: ...",
# and of one of the SDK's (logger "restate..."), when services run in the server.
_LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ")
_SDK_RECORD = re.compile(_LOG_RECORD.pattern + r"restate[.:]")


def transport() -> str:
    """How pyrestate reaches the example services: "http" (each its own process, served
    by hypercorn or uvicorn) or "inprocess" (imported into the server's process)."""
    value = os.environ.get(TRANSPORT_ENV, "http").strip().lower() or "http"
    if value not in ("http", "inprocess"):
        raise ValueError(f"{TRANSPORT_ENV} must be 'http' or 'inprocess', not {value!r}")
    return value


def target() -> str:
    value = os.environ.get(TARGET_ENV, "pyrestate").strip().lower() or "pyrestate"
    if value not in ("pyrestate", "official"):
        raise ValueError(f"{TARGET_ENV} must be 'pyrestate' or 'official', not {value!r}")
    return value


def official_binary() -> str | None:
    """Path of the official restate-server binary, or None when it is not installed.

    The npm package's `restate-server` is a node wrapper around a native binary; the
    native one is preferred so that SIGKILL hits the server itself.
    """
    for candidate in (os.environ.get(OFFICIAL_BIN_ENV), DEFAULT_OFFICIAL_BIN):
        if candidate and os.access(candidate, os.X_OK):
            return _native_official(candidate)
    found = shutil.which("restate-server")
    return _native_official(found) if found else None


def _native_official(path: str) -> str:
    real = Path(path).resolve()
    # .../node_modules/@restatedev/restate-server/lib/index.js
    scope = real.parent.parent.parent
    if real.suffix == ".js" and scope.name == "@restatedev":
        for native in sorted(scope.glob("restate-server-*/bin/restate-server")):
            if os.access(native, os.X_OK):
                return str(native)
    return path


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1.

    All sockets are held open until every port is chosen so the kernel cannot hand out
    the same port twice within one call.
    """
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


class WaitTimeout(AssertionError):
    """A polled condition did not hold before its deadline."""


class ProcessDied(AssertionError):
    """A child process we wait on exited; polling further cannot help."""


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll `predicate` until it returns a truthy value (which is returned).

    Exceptions raised by the predicate count as "not yet" (servers refuse connections
    while starting); the last one is reported if the deadline passes.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    last_value: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_value = value
        except ProcessDied:
            raise
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f"last exception: {last_exc!r}" if last_exc else f"last value: {last_value!r}"
            extra = f"\n{on_timeout()}" if on_timeout else ""
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; {detail}{extra}")
        time.sleep(interval)


async def answer_lifespan(receive: Any, send: Any) -> None:
    """What a test's own ASGI app says to hypercorn's lifespan events (it sets up nothing)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log at {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """A child process in its own process group, with output sent to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert not self.running, f"{self.name} already running"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Append, so the log of a killed run survives its restart.
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== starting {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _exited(self) -> bool:
        """Has the leader exited? Checked without reaping it.

        An unreaped (zombie) leader keeps its pid, and so our process group id, from being
        reused; so signalling the group afterwards cannot reach a stranger.
        """
        assert self.proc is not None
        if self.proc.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    @property
    def running(self) -> bool:
        return self.proc is not None and not self._exited()

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        if self.proc.returncode is not None:
            return  # reaped: the group id may no longer be ours
        # The child leads its own group (start_new_session), so pgid == pid; this reaches
        # grandchildren (the official server's binary under its node wrapper) too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def _group_alive(self) -> bool:
        """Does any process of our group still run (zombies aside)? Linux /proc only."""
        assert self.proc is not None
        pgid = self.proc.pid
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            # Fields after the parenthesised command name: state ppid pgrp ...
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
        return False

    def _reap(self) -> None:
        assert self.proc is not None
        # Wait for the whole group, not just the leader: a grandchild still dying would
        # keep its ports bound and could be mistaken for the restarted server.
        deadline = time.monotonic() + 10
        while self.proc.returncode is None and self._group_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the whole group and reap it: a crash, nothing gets to clean up."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self._reap()

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if the process has not exited within `grace` seconds."""
        if self.proc is None:
            return
        if not self._exited():
            self._signal_group(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while not self._exited() and time.monotonic() < deadline:
                time.sleep(0.02)
        # Also ends grandchildren that outlived a leader which exited on SIGTERM.
        self._signal_group(signal.SIGKILL)
        self._reap()

    def check_alive(self) -> None:
        if self.proc is not None and self._exited():
            self._signal_group(signal.SIGKILL)
            code = self.proc.wait()
            self.proc = None
            raise ProcessDied(
                f"{self.name} exited with code {code}\n"
                f"--- {self.log_path} ---\n{tail(self.log_path)}"
            )


class Server:
    """The server under test (pyrestate or the official one), restartable on one data dir."""

    def __init__(
        self,
        kind: str,
        workdir: Path,
        official_bin: str | None = None,
        *,
        extra_args: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
        bind_flags: bool = True,
    ) -> None:
        """`extra_args` go after the server's own arguments, `extra_env` over its env.

        With `bind_flags=False` pyrestate gets no address or data dir flags: the test
        hands it `ingress_port`, `admin_port` and `data_dir` some other way (a config file).
        """
        self.kind = kind
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.log_path = workdir / "server.log"
        ingress, admin, node, pgsql = free_ports(4)
        self.ingress_port = ingress
        self.admin_port = admin
        self.pgsql_port = pgsql  # PostgreSQL protocol (psql)
        self.ingress_url = f"http://127.0.0.1:{ingress}"
        self.admin_url = f"http://127.0.0.1:{admin}"
        env = dict(os.environ)
        if kind == "pyrestate":
            env["PYTHONUNBUFFERED"] = "1"
            argv = [sys.executable, "-m", "pyrestate", "server"]
            if transport() == "inprocess":
                # The examples run inside the server: it imports them when registered.
                argv.append("--asgi-import")
                env[COUNT_DIR_ENV] = str(workdir.parent / "counts")
                env["PYTHONPATH"] = _with_repo_root(env)
            if bind_flags:
                argv += [
                    "--ingress-bind",
                    f"127.0.0.1:{ingress}",
                    "--admin-bind",
                    f"127.0.0.1:{admin}",
                    "--data-dir",
                    str(self.data_dir),
                ]
            # Always on a free port: the default one would clash between test servers.
            argv += ["--pgsql-bind", f"127.0.0.1:{pgsql}"]
        else:
            assert official_bin, "official server binary not found"
            env.update(
                RESTATE_INGRESS__BIND_ADDRESS=f"127.0.0.1:{ingress}",
                RESTATE_ADMIN__BIND_ADDRESS=f"127.0.0.1:{admin}",
                RESTATE_BIND_ADDRESS=f"127.0.0.1:{node}",
                RESTATE_ADVERTISED_ADDRESS=f"http://127.0.0.1:{node}",
                # Older versions served psql there; 1.7.12 has no PostgreSQL endpoint.
                RESTATE_ADMIN__QUERY_ENGINE__PGSQL_BIND_ADDRESS=f"127.0.0.1:{pgsql}",
                # No telemetry or release checks from test runs.
                DO_NOT_TRACK="1",
                RESTATE_DISABLE_TELEMETRY="true",
                RESTATE_LOG_DISABLE_ANSI_CODES="true",
            )
            argv = [official_bin, "--base-dir", str(self.data_dir), "--node-name", "n1"]
        argv.extend(extra_args)
        env.update(extra_env or {})
        self.process = ManagedProcess(f"{kind} server", argv, self.log_path, env, REPO_ROOT)

    def start(self, timeout: float = 60.0) -> None:
        # A survivor of a previous run on these ports would answer the health checks
        # and make a restart look successful.
        for port in (self.ingress_port, self.admin_port):
            assert not port_open(port), f"port {port} still in use before starting the server"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            self.process.check_alive()
            health = httpx.get(f"{self.admin_url}/health", timeout=2)
            if health.status_code != 200:
                return False
            # The ingress may come up a moment after the admin API; any HTTP answer
            # from it is enough to know it is listening.
            httpx.get(f"{self.ingress_url}/restate/health", timeout=2)
            return True

        wait_until(
            ready,
            timeout=timeout,
            interval=0.1,
            what=f"{self.kind} server ready",
            on_timeout=self.log_tail,
        )

    def kill(self) -> None:
        """SIGKILL: a crash at an arbitrary instant. `start()` recovers on the same data."""
        self.process.kill()

    def restart(self, timeout: float = 60.0) -> None:
        self.kill()
        self.start(timeout)

    def stop(self) -> None:
        self.process.stop()

    @property
    def running(self) -> bool:
        return self.process.running

    def log_tail(self, lines: int = 80) -> str:
        return f"--- {self.kind} server log ({self.log_path}) ---\n{tail(self.log_path, lines)}"

    def log_problems(self) -> list[str]:
        """What pyrestate logged that no test should provoke: tracebacks, ERROR lines.

        Retried failures are logged and recovered from, so a test that checks only final
        results would pass over them; the fixture fails the test on these instead.
        """
        if self.kind != "pyrestate" or not self.log_path.exists():
            return []
        lines = self.log_path.read_text(errors="replace").splitlines()
        problems = []
        in_sdk_record = False
        for i, line in enumerate(lines):
            record = _json_record(line)
            if record is not None:
                # --log-format json: a traceback is a field of its record's line.
                target = str(record.get("target", ""))
                if record.get("level") == "ERROR" and not target.startswith("restate"):
                    problems.append(line)
                continue
            if _LOG_RECORD.match(line):
                # In-process services log through the server: their handlers' failures
                # (which tests provoke) are the SDK's records, not the server's.
                in_sdk_record = _SDK_RECORD.match(line) is not None
            if in_sdk_record:
                continue
            if (
                line.startswith("Traceback (most recent call last)")
                or " ERROR " in line
                or " CRITICAL " in line
                or line.startswith("ERROR:")  # uvicorn's own format
            ):
                problems.append("\n".join(lines[max(0, i - 1) : i + 12]))
        return problems


def _json_record(line: str) -> dict[str, Any] | None:
    """A record of the server's ``--log-format json`` (``{"level", "target", ...}``)."""
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _with_repo_root(env: Mapping[str, str]) -> str:
    return os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)


class Deployment:
    """One of our example apps served by hypercorn (HTTP/2) or uvicorn (HTTP/1.1 only);
    with the in-process transport, an ``asgi://`` URI the server imports instead."""

    def __init__(self, app: str, workdir: Path, count_dir: Path, http1: bool = False) -> None:
        self.app = app
        self.http1 = http1
        self.in_process = transport() == "inprocess"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if self.in_process:
            module, _, attribute = app.partition(":")
            self.url = f"asgi://{module}/{attribute}"
        # The admin API's answer to the registration, when the fixture registered it.
        self.registration: dict = {}
        self.log_path = workdir / f"deployment-{app.replace(':', '-')}-{self.port}.log"
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env[COUNT_DIR_ENV] = str(count_dir)
        env["PYTHONPATH"] = _with_repo_root(env)
        bind = f"127.0.0.1:{self.port}"
        if http1:
            # uvicorn only speaks HTTP/1.1, so the server must use request/response mode.
            argv = [
                SDK_PYTHON,
                "-m",
                "uvicorn",
                app,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ]
        else:
            # hypercorn accepts HTTP/2 prior knowledge on cleartext: bidi streaming.
            argv = [SDK_PYTHON, "-m", "hypercorn", app, "--bind", bind]
        self.process = ManagedProcess(f"deployment {app}", argv, self.log_path, env, REPO_ROOT)

    def start(self, timeout: float = 30.0) -> None:
        if self.in_process:
            return  # the server loads it when it is registered
        self.process.start()

        def up() -> bool:
            self.process.check_alive()
            return port_open(self.port)

        wait_until(
            up, timeout=timeout, what=f"deployment {self.app} listening", on_timeout=self.log_tail
        )

    def stop(self) -> None:
        if self.in_process:
            return  # it lives as long as the server
        # Deployments hold no durable state; no point waiting on keep-alive connections.
        self.process.stop(grace=1.0)

    def log_tail(self, lines: int = 40) -> str:
        return f"--- deployment log ({self.log_path}) ---\n{tail(self.log_path, lines)}"


def register(
    client: httpx.Client, admin_url: str, uri: str, *, http1: bool = False, force: bool = False
) -> httpx.Response:
    body: dict[str, object] = {"uri": uri}
    if http1:
        body["use_http_11"] = True
    if force:
        body["force"] = True
    return client.post(f"{admin_url}/deployments", json=body, timeout=30)


def sql_rows(http: httpx.Client, server: Server, sql: str) -> list[dict[str, Any]]:
    """Rows of an introspection query (``POST /query``, JSON answer)."""
    resp = http.post(
        f"{server.admin_url}/query", json={"query": sql}, headers={"accept": "application/json"}
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["rows"]


def count_lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def wait_services_ready(http: httpx.Client, server: Server, names: list[str]) -> None:
    """Wait until the admin API lists every service of a fresh registration.

    Registration is synchronous in both servers; this only guards against a short
    propagation delay to the ingress (schema updates travel through the metadata store
    in the official server).
    """

    def listed() -> bool:
        resp = http.get(f"{server.admin_url}/services")
        known = {s["name"] for s in resp.json().get("services", [])}
        return all(n in known for n in names)

    wait_until(listed, timeout=15, what=f"services {names} listed")


def load_e2e_conftest() -> Any:
    """tests/e2e/conftest.py as a module of its own name, for the suites that reuse its
    fixtures and failure-log hook (tests/cli, tests/ui) rather than copy them."""
    spec = importlib.util.spec_from_file_location(
        "e2e_conftest", Path(__file__).with_name("conftest.py")
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
