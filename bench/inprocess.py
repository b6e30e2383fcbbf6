"""In-process services vs the same services over HTTP/2, both on pyrestate.

    .venv/bin/python bench/inprocess.py [--rounds 4] [--duration 10] [--workloads abd]

Each round runs, in alternating order, (1) ``pyrestate server`` with bench/services.py
served by hypercorn (one worker, HTTP/2 bidi streams) and (2) ``pyrestate run
services:app``, the same app driven in the server's process (no sockets between them).
The workloads are bench/run.py's, with its closed-loop load generator: (a) no-op call,
(b) 3 ctx.run steps, (d) fan-out 10. Reported: throughput and CPU per request of server
plus service (for in-process, the one process), medians over the rounds, and their ratio.
Writes bench/results/inprocess.{json,md}.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import run  # noqa: E402
from report import NAMES  # noqa: E402

MODES = ("http2", "inprocess")


def start_in_process(workdir: Path) -> run.Server:
    ingress, admin, pgsql = run.free_ports(3)
    data = workdir / "data"
    data.mkdir(parents=True)
    env = run.services_env()
    argv = [
        sys.executable,
        "-m",
        "pyrestate",
        "run",
        "services:app",
        "--ingress-bind",
        f"127.0.0.1:{ingress}",
        "--admin-bind",
        f"127.0.0.1:{admin}",
        "--pgsql-bind",
        f"127.0.0.1:{pgsql}",
        "--data-dir",
        str(data),
        "--log-level",
        "warning",
    ]
    proc = run.Proc("pyrestate run", argv, workdir / "server.log", env, BENCH_DIR)
    server = run.Server("pyrestate", proc, ingress, admin)
    try:
        run.wait_for("in-process server health", lambda: run.server_ready(server), [proc], 90)
    except BaseException:
        proc.stop()
        raise
    return server


async def one(cfg: run.Config, mode: str, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True)
    service: run.Proc | None = None
    if mode == "inprocess":
        server = start_in_process(workdir)
    else:
        server = run.start_server("pyrestate", workdir)
    try:
        if mode == "http2":
            service, port = run.start_service(1, workdir)
            run.register(server, port, service)
        runner = run.Runner(cfg, server, service)
        await run.warm_up(cfg, server)
        out: dict[str, Any] = {}
        for w in cfg.workloads:
            quiet = await runner.wait_quiet()
            res = await runner.run(w)
            res.update(quiet)
            out[w] = res
            cpu = res["server_cpu_ms"] + res["service_cpu_ms"]
            print(
                f"    {mode:<9} {w} {res['throughput']:8.0f} req/s  {cpu:5.2f} CPU ms/req  "
                f"failures {res['failures']}",
                flush=True,
            )
        return out
    finally:
        if service is not None:
            service.stop()
        server.proc.stop()


def _throughput(res: dict[str, Any]) -> float:
    return float(res["throughput"])


def _cpu(res: dict[str, Any]) -> float:
    return float(res["server_cpu_ms"] + res["service_cpu_ms"])


def table(meta: dict[str, Any], runs: list[dict[str, Any]], workloads: str) -> str:
    lines = run.modes_heading("In-process services vs HTTP/2 (both pyrestate)", meta, runs)
    lines += [
        "HTTP/2: `pyrestate server` + bench/services.py under hypercorn (1 worker); "
        "in-process: `pyrestate run services:app`. CPU is server + service per request "
        "(in-process: the one process). Medians over the rounds; rounds with failures left "
        "out.",
        "",
        "| workload | HTTP/2 req/s | in-process req/s | ratio | HTTP/2 CPU ms/req | "
        "in-process CPU ms/req | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for w in workloads:
        cells = [NAMES[w], *run.compared(runs, MODES, w, _throughput, ".0f")]
        cells += run.compared(runs, MODES, w, _cpu, ".2f")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    run.modes_main(__doc__, "inprocess", MODES, one, table, "abd")


if __name__ == "__main__":
    main()
