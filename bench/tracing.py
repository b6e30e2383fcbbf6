"""What tracing costs: pyrestate with tracing off vs on (OTLP/gRPC to a collector that
counts spans and keeps none, bench/otlp_sink.py, in a process of its own).

    .venv/bin/python bench/tracing.py [--rounds 4] [--duration 10] [--workloads ab]

Each round runs, in alternating order, ``pyrestate server`` without and with
``RESTATE_TRACING_ENDPOINT``, bench/services.py under hypercorn (one worker, HTTP/2), and
bench/run.py's closed-loop workloads: (a) no-op call (the greet workload), (b) 3 ctx.run
steps. Reported: throughput and server CPU per request, medians over the rounds, their
ratio (on/off), and the spans the collector received per request. Writes
bench/results/tracing.{json,md}.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import procstat  # noqa: E402
import run  # noqa: E402
from report import NAMES  # noqa: E402

MODES = ("off", "on")


def start_sink(workdir: Path) -> tuple[run.Proc, int, Path]:
    """The collector, at the lowest CPU priority: it stands for a collector on another
    machine, so it takes the cores the measured processes leave idle (its CPU is reported
    on its own, and a span it could not take in time would show as missing)."""
    (port,) = run.free_ports(1)
    count = workdir / "spans"
    argv = ["nice", "-n", "19", sys.executable, str(BENCH_DIR / "otlp_sink.py"), str(port)]
    argv.append(str(count))
    proc = run.Proc("otlp sink", argv, workdir / "sink.log", run.services_env(), BENCH_DIR)
    try:
        run.wait_for("otlp sink", lambda: _listening(port), [proc], 30)
    except BaseException:
        proc.stop()
        raise
    return proc, port, count


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def spans_received(count: Path) -> int:
    try:
        return int(count.read_text() or 0)
    except FileNotFoundError:
        return 0


async def one(cfg: run.Config, mode: str, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True)
    sink: run.Proc | None = None
    env: dict[str, str] = {}
    count = workdir / "spans"
    if mode == "on":
        sink, port, count = start_sink(workdir)
        env["RESTATE_TRACING_ENDPOINT"] = f"http://127.0.0.1:{port}"
    server = run.start_server("pyrestate", workdir, env)
    service: run.Proc | None = None
    try:
        service, port = run.start_service(1, workdir)
        run.register(server, port, service)
        runner = run.Runner(cfg, server, service)
        await run.warm_up(cfg, server)
        out: dict[str, Any] = {}
        for w in cfg.workloads:
            quiet = await runner.wait_quiet()
            before = spans_received(count)
            sink_cpu = procstat.tree_cpu_seconds(sink.pid) if sink else 0.0
            res = await runner.run(w)
            if sink is not None and res["requests"]:
                used = procstat.tree_cpu_seconds(sink.pid) - sink_cpu
                res["collector_cpu_ms"] = used * 1000 / res["requests"]
            await asyncio.sleep(6)  # the last batches of spans (every 5 s) arrive
            res.update(quiet)
            res["spans"] = spans_received(count) - before
            # About: the load generator's ramp adds requests outside the measured window.
            res["spans_per_request"] = res["spans"] / res["requests"] if res["requests"] else None
            out[w] = res
            print(
                f"    tracing {mode:<3} {w} {res['throughput']:8.0f} req/s  "
                f"server {res['server_cpu_ms']:5.2f} CPU ms/req  spans {res['spans']}  "
                f"failures {res['failures']}",
                flush=True,
            )
        return out
    finally:
        if service is not None:
            service.stop()
        server.proc.stop()
        if sink is not None:
            sink.stop()


def table(meta: dict[str, Any], runs: list[dict[str, Any]], workloads: str) -> str:
    lines = run.modes_heading("Tracing off vs on (pyrestate)", meta, runs)
    lines += [
        "On: `RESTATE_TRACING_ENDPOINT=http://127.0.0.1:PORT` (OTLP/gRPC) to "
        "bench/otlp_sink.py in its own process at `nice -n 19` (a collector elsewhere: it "
        "uses the cores left idle; its CPU is the collector column); every span exported "
        "(no sampling). Medians over the rounds; rounds with failures left out. Every round "
        "is in tracing.json.",
        "",
        "| workload | off req/s | on req/s | on/off | server CPU ms/req off / on | "
        "service CPU ms/req off / on | collector CPU ms/req | spans per request |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    for w in workloads:
        cells = [NAMES[w], *run.compared(runs, MODES, w, lambda r: r["throughput"], ".0f")]
        for party in ("server_cpu_ms", "service_cpu_ms"):
            off, on = run.mode_medians(runs, MODES, w, lambda r, p=party: r[p])
            cells.append(f"{run.cell(off, '.2f')} / {run.cell(on, '.2f')}")
        for key, fmt in (("collector_cpu_ms", ".3f"), ("spans_per_request", ".1f")):
            cells.append(run.cell(run.mode_median(runs, "on", w, lambda r, k=key: r.get(k)), fmt))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    run.modes_main(__doc__, "tracing", MODES, one, table, "ab")


if __name__ == "__main__":
    main()
