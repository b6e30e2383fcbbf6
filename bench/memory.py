"""Memory and restart time with history: pyrestate and the official server, side by side.

    .venv/bin/python bench/memory.py [--n 1000000] [--servers pyrestate,official]
                                     [--allow-dirty] [--keep]

For each server, with the same bench/services.py deployment (official Python SDK under
hypercorn) and each server's default retention (1 day):

(A) calls: on a fresh data dir, the RSS of the freshly started server with nothing
    registered ("empty"); then register the service and make N calls to Bench/noop with
    the closed-loop load generator; RSS right after and after --settle idle seconds.
(C) restart: stop that server (SIGTERM, SIGKILL after 10 s), start it again on the same
    data dir and ports, and time from process start to the first successful
    Bench/noop call through the ingress (polled every 20 ms).
(B) timers: on another fresh data dir, N one-way sends Bench/noop/send?delay=1d (all
    accepted, none due for a day); accept rate and RSS after, against empty.

Results: bench/results/memory.md (the table, also printed) and memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import loadgen  # noqa: E402
import procstat  # noqa: E402
import run  # noqa: E402

MiB = 2**20
POLL_S = 0.02
STOP_TIMEOUT_S = 10  # run.Proc.stop: SIGTERM, then SIGKILL after this long
RESTART_TIMEOUT_S = 600


@dataclass
class Config:
    n: int
    servers: list[str]
    workers: int
    concurrency: int
    settle: float
    idle: float
    allow_dirty: bool
    keep: bool


# ---------------------------------------------------------------- servers


def launch(kind: str, workdir: Path, ports: list[int]) -> tuple[run.Server, float]:
    """Start a server on workdir/data and these ports; also returns its start time."""
    argv, env = run.server_command(kind, workdir / "data", *ports)
    started = time.monotonic()
    proc = run.Proc(f"{kind} server", argv, workdir / "server.log", env, run.REPO_ROOT)
    return run.Server(kind, proc, ports[0], ports[1]), started


def start_fresh(kind: str, workdir: Path) -> tuple[run.Server, list[int]]:
    (workdir / "data").mkdir(parents=True)
    ports = run.free_ports(3)
    server, _ = launch(kind, workdir, ports)
    try:
        run.wait_for(f"{kind} health", lambda: run.server_ready(server), [server.proc], 90)
    except BaseException:
        server.proc.stop()
        raise
    return server, ports


def stop(server: run.Server) -> dict[str, Any]:
    t = time.monotonic()
    server.proc.stop()
    rc = server.proc.popen.returncode
    return {"stop_s": time.monotonic() - t, "stop_returncode": rc, "killed": rc == -signal.SIGKILL}


def first_call(server: run.Server, started: float) -> dict[str, Any]:
    """Poll Bench/noop every POLL_S until it answers right; seconds since process start."""
    url = f"http://127.0.0.1:{server.ingress_port}/Bench/noop"
    attempts = 0
    seen: dict[str, int] = {}  # what the ingress said before it worked
    # One client: creating one per attempt costs milliseconds of CPU (SSL context).
    with httpx.Client(timeout=10) as client:
        while time.monotonic() - started < RESTART_TIMEOUT_S:
            server.proc.check()
            attempts += 1
            t = time.monotonic()
            try:
                r = client.post(url, content=b"1", headers={"content-type": "application/json"})
                if r.status_code == 200 and r.content.strip() == b"1":
                    return {
                        "restart_s": time.monotonic() - started,
                        "attempts": attempts,
                        "seen": seen,
                    }
                what = str(r.status_code)
            except httpx.TransportError as exc:
                what = type(exc).__name__
            seen[what] = seen.get(what, 0) + 1
            time.sleep(max(0.0, POLL_S - (time.monotonic() - t)))
    raise TimeoutError(f"no successful call within {RESTART_TIMEOUT_S}s of restart")


def rss_mib(server: run.Server, peak: bool = False) -> float:
    return procstat.tree_rss_bytes(server.proc.pid, peak) / MiB


def disk_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / MiB


# ---------------------------------------------------------------- workloads


async def drive(
    cfg: Config,
    server: run.Server,
    service: run.Proc,
    make: loadgen.MakeRequest,
) -> dict[str, Any]:
    """N requests closed-loop; RSS and rate at every tenth, then RSS after settling."""
    sample = run.sampler(server, service)
    marks: list[tuple[float, float]] = [(time.perf_counter(), rss_mib(server))]

    def progress(done: int) -> None:
        marks.append((time.perf_counter(), rss_mib(server)))

    step = max(1, cfg.n // 10)
    before = sample()
    res = await loadgen.closed_loop_count(
        "127.0.0.1",
        server.ingress_port,
        make,
        cfg.concurrency,
        cfg.n,
        progress,
        every=step,
    )
    after = sample()
    server.proc.check()
    rss_end = rss_mib(server)
    await asyncio.sleep(cfg.settle)
    return {
        "ok": res.ok,
        "failures": res.failures,
        "failure_samples": res.failure_samples,
        "seconds": res.seconds,
        "rate_per_s": res.ok / res.seconds,
        "rate_per_s_by_tenth": [round(step / (b[0] - a[0])) for a, b in itertools.pairwise(marks)],
        "rss_mib_by_tenth": [round(m[1], 1) for m in marks],
        "rss_mib_end": rss_end,
        "rss_mib_settled": rss_mib(server),
        "rss_mib_peak": rss_mib(server, peak=True),
        **run.cpu_metrics(before, after, res.ok),
    }


async def calls_and_restart(
    cfg: Config, kind: str, workdir: Path, service: run.Proc, service_port: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(A) then (C) on the same data dir."""
    server, ports = start_fresh(kind, workdir)
    try:
        a = await empty_then_registered(cfg, server, service, service_port)
        check = run.expect_json(1)
        a.update(
            await drive(
                cfg,
                server,
                service,
                lambda client, w, i: (client.format("POST", "/Bench/noop", b"1"), check),
            )
        )
    finally:
        c = stop(server)
    a["disk_mib"] = disk_mib(workdir / "data")
    print(f"  (A) {summary(a)}", flush=True)
    server, started = launch(kind, workdir, ports)
    try:
        c.update(first_call(server, started))
        c["rss_mib_first_call"] = rss_mib(server)
        await asyncio.sleep(cfg.settle)
        c["rss_mib_settled"] = rss_mib(server)
    finally:
        server.proc.stop()
    print(
        f"  (C) stop {c['stop_s']:.2f}s (rc {c['stop_returncode']}), first call after "
        f"{c['restart_s']:.2f}s, RSS {c['rss_mib_settled']:.0f} MiB",
        flush=True,
    )
    return a, c


async def timers(
    cfg: Config, kind: str, workdir: Path, service: run.Proc, service_port: int
) -> dict[str, Any]:
    """(B): N delayed one-way sends, pending for a day."""
    server, _ = start_fresh(kind, workdir)
    try:
        b = await empty_then_registered(cfg, server, service, service_port)

        def check(status: int, body: bytes) -> str | None:
            if status in (200, 202) and b"invocationId" in body:
                return None
            return f"status {status}, body {body[:200]!r}"

        b.update(
            await drive(
                cfg,
                server,
                service,
                lambda client, w, i: (
                    client.format("POST", "/Bench/noop/send?delay=1d", b"1"),
                    check,
                ),
            )
        )
    finally:
        server.proc.stop()
    b["disk_mib"] = disk_mib(workdir / "data")
    print(f"  (B) {summary(b)}", flush=True)
    return b


async def empty_then_registered(
    cfg: Config, server: run.Server, service: run.Proc, service_port: int
) -> dict[str, Any]:
    # Idle a moment first: both servers finish starting up in the background.
    await asyncio.sleep(cfg.idle)
    out = {"rss_mib_empty": rss_mib(server)}
    run.register(server, service_port, service)
    await asyncio.sleep(1.0)
    out["rss_mib_registered"] = rss_mib(server)
    return out


def summary(r: dict[str, Any]) -> str:
    delta = r["rss_mib_settled"] - r["rss_mib_empty"]
    fails = f", {r['failures']} FAILED" if r["failures"] else ""
    return (
        f"{r['ok']} in {r['seconds']:.0f}s ({r['rate_per_s']:.0f}/s), RSS "
        f"{r['rss_mib_empty']:.0f} -> {r['rss_mib_settled']:.0f} MiB "
        f"(+{delta:.0f}, {delta * MiB / max(r['ok'], 1):.0f} B each){fails}"
    )


async def measure(cfg: Config, kind: str, workdir: Path) -> dict[str, Any]:
    print(f"{kind}:", flush=True)
    workdir.mkdir(parents=True)
    t = time.monotonic()
    out: dict[str, Any] = {"server": kind}
    service, port = run.start_service(cfg.workers, workdir)
    try:
        out["calls"], out["restart"] = await calls_and_restart(
            cfg, kind, workdir / "calls", service, port
        )
        if not cfg.keep:
            shutil.rmtree(workdir / "calls" / "data", ignore_errors=True)
        out["timers"] = await timers(cfg, kind, workdir / "timers", service, port)
    except Exception as exc:
        print(f"  failed: {type(exc).__name__}: {exc}", flush=True)
        out["error"] = f"{type(exc).__name__}: {exc}"[-2000:]
    finally:
        service.stop()
        if not cfg.keep:
            for sub in ("calls", "timers"):
                shutil.rmtree(workdir / sub / "data", ignore_errors=True)
    out["seconds"] = time.monotonic() - t
    return out


# ---------------------------------------------------------------- report


ROWS: list[tuple[str, str, Callable[[dict[str, Any]], float], str]] = [
    # (section, label, value, format)
    ("A", "RSS empty (MiB)", lambda r: r["calls"]["rss_mib_empty"], ".1f"),
    ("A", "RSS registered (MiB)", lambda r: r["calls"]["rss_mib_registered"], ".1f"),
    ("A", "RSS right after N calls (MiB)", lambda r: r["calls"]["rss_mib_end"], ".1f"),
    ("A", "RSS after N calls, settled (MiB)", lambda r: r["calls"]["rss_mib_settled"], ".1f"),
    ("A", "peak RSS (MiB)", lambda r: r["calls"]["rss_mib_peak"], ".1f"),
    ("A", "delta settled - empty (MiB)", lambda r: delta(r["calls"]), ".1f"),
    ("A", "bytes per invocation", lambda r: per_item(r["calls"]), ".0f"),
    ("A", "calls/s", lambda r: r["calls"]["rate_per_s"], ".0f"),
    ("A", "server CPU ms/call", lambda r: r["calls"]["server_cpu_ms"], ".3f"),
    ("A", "data dir (MiB)", lambda r: r["calls"]["disk_mib"], ".1f"),
    ("A", "other cores during load", lambda r: r["calls"]["other_cores"], ".2f"),
    ("C", "stop, SIGTERM to exit (s)", lambda r: r["restart"]["stop_s"], ".2f"),
    ("C", "restart to first call (s)", lambda r: r["restart"]["restart_s"], ".2f"),
    ("C", "RSS after restart, settled (MiB)", lambda r: r["restart"]["rss_mib_settled"], ".1f"),
    (
        "C",
        "delta restarted - empty (MiB)",
        lambda r: r["restart"]["rss_mib_settled"] - r["calls"]["rss_mib_empty"],
        ".1f",
    ),
    ("B", "RSS empty (MiB)", lambda r: r["timers"]["rss_mib_empty"], ".1f"),
    ("B", "RSS right after N sends (MiB)", lambda r: r["timers"]["rss_mib_end"], ".1f"),
    ("B", "RSS N pending, settled (MiB)", lambda r: r["timers"]["rss_mib_settled"], ".1f"),
    ("B", "peak RSS (MiB)", lambda r: r["timers"]["rss_mib_peak"], ".1f"),
    ("B", "delta settled - empty (MiB)", lambda r: delta(r["timers"]), ".1f"),
    ("B", "bytes per pending timer", lambda r: per_item(r["timers"]), ".0f"),
    ("B", "accepted/s", lambda r: r["timers"]["rate_per_s"], ".0f"),
    ("B", "accepted/s, first tenth", lambda r: r["timers"]["rate_per_s_by_tenth"][0], ".0f"),
    ("B", "accepted/s, last tenth", lambda r: r["timers"]["rate_per_s_by_tenth"][-1], ".0f"),
    ("B", "server CPU ms/send", lambda r: r["timers"]["server_cpu_ms"], ".3f"),
    ("B", "data dir (MiB)", lambda r: r["timers"]["disk_mib"], ".1f"),
    ("B", "other cores during load", lambda r: r["timers"]["other_cores"], ".2f"),
]
SECTIONS = {
    "A": "(A) N completed calls to Bench/noop",
    "C": "(C) restart on the data dir of (A)",
    "B": "(B) N pending `Bench/noop/send?delay=1d`",
}


def delta(w: dict[str, Any]) -> float:
    return w["rss_mib_settled"] - w["rss_mib_empty"]


def per_item(w: dict[str, Any]) -> float:
    return delta(w) * MiB / max(w["ok"], 1)


def value(row: Callable[[dict[str, Any]], float], r: dict[str, Any] | None) -> float:
    try:
        return float(row(r)) if r is not None else math.nan
    except (KeyError, IndexError):
        return math.nan


def render(data: dict[str, Any]) -> str:
    meta = data["meta"]
    runs = {r["server"]: r for r in data["runs"]}
    py, off = runs.get("pyrestate"), runs.get("official")
    lines = [
        f"# Memory and restart: pyrestate vs official {meta['machine']['official_version']}",
        "",
        f"N = {data['config']['n']:,}; {meta['started']}; commit {meta['git']['commit'][:12]}"
        + (" (dirty: " + ", ".join(meta["git"]["dirty"]) + ")" if meta["git"]["dirty"] else ""),
        "",
        f"`{meta['command']}`",
        "",
        f"pyrestate imported from `{meta['git']['pyrestate_imported_from']}`",
        "",
        "| | pyrestate | official | pyrestate/official |",
        "| --- | ---: | ---: | ---: |",
    ]
    section = ""
    for sec, label, row, fmt in ROWS:
        if sec != section:
            section = sec
            lines.append(f"| **{SECTIONS[sec]}** | | | |")
        a, b = value(row, py), value(row, off)
        ratio = a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan
        lines.append(
            f"| {label} | {fmt_num(a, fmt)} | {fmt_num(b, fmt)} | {fmt_num(ratio, '.2f')} |"
        )
    lines += [
        "",
        "RSS (MiB) at every tenth of N (first column: before the first request):",
        "",
        "| | " + " | ".join(str(i) for i in range(11)) + " |",
        "| --- |" + " ---: |" * 11,
    ]
    for kind, r in (("pyrestate", py), ("official", off)):
        for key, name in (("calls", "A"), ("timers", "B")):
            series = ((r or {}).get(key) or {}).get("rss_mib_by_tenth")
            if series:
                lines.append(
                    f"| {kind} ({name}) | " + " | ".join(f"{x:.0f}" for x in series) + " |"
                )
    lines += ["", "Notes:", ""]
    lines += [f"- {note}" for note in notes(data)]
    return "\n".join(lines) + "\n"


def fmt_num(x: float, fmt: str) -> str:
    return "-" if math.isnan(x) else format(x, fmt)


def notes(data: dict[str, Any]) -> list[str]:
    meta = data["meta"]
    cfg = data["config"]
    out = [
        f"Both servers at log level warn (pyrestate `--log-level warning`, official "
        f"`RESTATE_LOG_FILTER={run.OFFICIAL_LOG_FILTER}`), default retention otherwise "
        "(official: journal, idempotency and workflow retention 1d).",
        f"RSS: sum of VmRSS over the server's process tree; settled = after {cfg['settle']:g} s "
        "idle; empty = started, nothing registered, after "
        f"{cfg['idle']:g} s idle; peak = VmHWM. Delta = settled - empty.",
        f"Load: closed loop of {cfg['concurrency']} connections; service: hypercorn "
        f"--workers {cfg['workers']}. Restart: SIGTERM (SIGKILL after {STOP_TIMEOUT_S} s), "
        f"same data dir and ports, Bench/noop polled every {POLL_S * 1000:.0f} ms "
        "from process start.",
        f"Machine: {meta['machine']['cpus']} cores, {meta['machine']['cpu_model']}; loadavg "
        f"{meta['loadavg_start']} at start, {meta.get('loadavg_end', '?')} at the end. "
        "'other cores' is the busy time of everything but server, service and load generator.",
    ]
    for r in data["runs"]:
        kind = r["server"]
        if "error" in r:
            out.append(f"{kind}: run failed: {r['error'][-300:]}")
        for key in ("calls", "timers"):
            w = r.get(key) or {}
            if w.get("failures"):
                out.append(f"{kind} {key}: {w['failures']} failed, e.g. {w['failure_samples'][:2]}")
        rs = r.get("restart") or {}
        if rs.get("killed"):
            out.append(f"{kind}: did not exit within {STOP_TIMEOUT_S} s of SIGTERM, killed")
        if rs.get("seen"):
            out.append(f"{kind} restart: before the first successful call: {rs['seen']}")
    return out


# ---------------------------------------------------------------- main


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def write(cfg: Config, meta: dict[str, Any], runs: list[dict[str, Any]]) -> Path:
    data = {"meta": meta, "config": asdict(cfg), "runs": runs}
    results = BENCH_DIR / "results"
    results.mkdir(exist_ok=True)
    for name, text in (
        ("memory.json", json.dumps(data, indent=1) + "\n"),
        ("memory.md", render(data)),
    ):
        tmp = results / f"{name}.tmp"
        tmp.write_text(text)
        tmp.replace(results / name)
    return results / "memory.md"


async def main_async(cfg: Config, git: dict[str, Any]) -> None:
    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join([".venv/bin/python", "bench/memory.py", *sys.argv[1:]]),
        "git": git,
        "machine": run.machine_info(),
        "loadavg_start": loadavg(),
    }
    # SIGTERM to this script: cancel, unwinding through the finally blocks that stop the
    # servers (like SIGINT under asyncio.run). An exception raised from a plain signal
    # handler can land in a uvloop transport callback, which swallows it.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    base = Path(tempfile.mkdtemp(prefix="pyrestate-memory-"))
    print(f"data and logs under {base}", flush=True)
    runs: list[dict[str, Any]] = []
    try:
        for kind in cfg.servers:
            runs.append(await measure(cfg, kind, base / kind))
            meta["loadavg_end"] = loadavg()
            target = write(cfg, meta, runs)
    finally:
        if cfg.keep or any("error" in r for r in runs):
            print(f"logs kept under {base}", flush=True)
        else:
            shutil.rmtree(base, ignore_errors=True)
    print()
    print(target.read_text())
    print(f"written to {target} and {target.with_suffix('.json')}")


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="invocations per workload (1000000)")
    p.add_argument("--servers", default="pyrestate,official", help="in this order")
    p.add_argument("--workers", type=int, default=1, help="hypercorn workers (1)")
    p.add_argument("--concurrency", type=int, default=32, help="closed-loop connections (32)")
    p.add_argument("--settle", type=float, default=10, help="idle seconds before RSS (10)")
    p.add_argument("--idle", type=float, default=2, help="idle seconds before empty RSS (2)")
    p.add_argument("--allow-dirty", action="store_true", help="run on uncommitted changes")
    p.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    a = p.parse_args(argv)
    servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    if not servers or any(s not in ("pyrestate", "official") for s in servers):
        p.error("--servers takes pyrestate and/or official")
    if a.n < 10:
        p.error("--n must be at least 10 (RSS is sampled at every tenth)")
    return Config(
        n=a.n,
        servers=servers,
        workers=a.workers,
        concurrency=a.concurrency,
        settle=a.settle,
        idle=a.idle,
        allow_dirty=a.allow_dirty,
        keep=a.keep,
    )


def main() -> None:
    cfg = parse_args()
    git = run.git_state()
    run.require_clean(git, cfg.allow_dirty)
    if "official" in cfg.servers:
        run.ensure_official()
    loadgen.install_fast_loop()
    try:
        asyncio.run(main_async(cfg, git))
    except asyncio.CancelledError:
        sys.exit("stopped by SIGTERM; servers stopped")


if __name__ == "__main__":
    main()
