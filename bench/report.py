"""Markdown tables from the raw per-round results of bench/run.py.

Regenerate a table from a JSON file: `python bench/report.py bench/results/latest.json`.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

NAMES = {
    "a": "(a) no-op call",
    "b": "(b) 3 ctx.run steps",
    "c": "(c) object get+set",
    "d": "(d) fan-out 10, gather",
    "e": "(e) ctx.sleep 10 ms",
    "f": "(f) one-way /send",
    "g": "(g) pending timers",
}

# (key in the per-workload result, label, decimals)
CALL_METRICS = [
    ("throughput", "throughput, req/s", 0),
    ("p50_ms", "p50 latency, ms", 1),
    ("p99_ms", "p99 latency, ms", 1),
    ("server_cpu_ms", "server CPU, ms/req", 2),
    ("service_cpu_ms", "service CPU, ms/req", 2),
]
METRICS: dict[str, list[tuple[str, str, int]]] = {
    **dict.fromkeys("abcde", CALL_METRICS),
    "f": [
        ("accepted_per_s", "accepted, req/s", 0),
        ("p50_ms", "p50 accept latency, ms", 1),
        ("p99_ms", "p99 accept latency, ms", 1),
        ("drain_s", "after last accept, all done in s", 1),
        ("completed_per_s", "completed, inv/s (end to end)", 0),
        ("server_cpu_ms", "server CPU, ms/inv", 2),
        ("service_cpu_ms", "service CPU, ms/inv", 2),
    ],
    "g": [
        ("pending", "timers pending", 0),
        ("accepted_per_s", "accepted, req/s", 0),
        ("accepted_per_s_first_tenth", "accepted, req/s, first tenth", 0),
        ("accepted_per_s_last_tenth", "accepted, req/s, last tenth", 0),
        ("rss_idle_mb", "server RSS before, MiB", 0),
        ("rss_pending_mb", "server RSS all pending, MiB", 0),
        ("rss_per_pending_bytes", "RSS growth per timer, bytes", 0),
        ("fire_s", "deadline to all fired, s", 1),
        ("fired_per_s", "fired, inv/s", 0),
        ("server_cpu_ms", "server CPU while firing, ms/inv", 2),
    ],
}


def _ok(res: dict[str, Any] | None, key: str) -> float | None:
    """The metric of one run's workload, or None if it failed or is missing."""
    if not res or res.get("failures", 0) or res.get("crashed"):
        return None
    v = res.get(key)
    if key.startswith("accepted_per_s_") and key.endswith("_tenth"):
        tenths = res.get("accepted_per_s_by_tenth") or [None]
        v = tenths[0] if key == "accepted_per_s_first_tenth" else tenths[-1]
    if not isinstance(v, int | float) or math.isnan(v):
        return None
    return float(v)


def _fmt(v: float | None, dec: int) -> str:
    if v is None:
        return "—"
    return f"{v:,.{dec}f}"


def _cell(values: list[float], dec: int) -> str:
    """Median, with the spread over rounds as ± half the min-max range, in percent."""
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) < 2 or med == 0:
        return _fmt(med, dec)
    spread = (max(values) - min(values)) / 2 / abs(med) * 100
    return f"{_fmt(med, dec)} ±{spread:.0f}%"


def _ratio_cell(pairs: list[tuple[float, float]]) -> str:
    ratios = [p / o for p, o in pairs if o]
    if not ratios:
        return "—"
    med = statistics.median(ratios)
    if len(ratios) == 1:
        return f"{med:.2f}"
    return f"{med:.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def _runs_by(runs: list[dict[str, Any]], workers: int, server: str) -> dict[int, dict[str, Any]]:
    return {r["round"]: r for r in runs if r["workers"] == workers and r["server"] == server}


def _load_mismatches(
    per: dict[str, dict[int, dict[str, Any]]], w: str, threshold: float
) -> dict[int, tuple[float, float]]:
    """Rounds whose two windows of workload ``w`` saw different background load."""
    out = {}
    for rnd, pr in per["pyrestate"].items():
        orun = per["official"].get(rnd)
        p = (pr["workloads"].get(w) or {}).get("other_cores")
        o = ((orun or {}).get("workloads", {}).get(w) or {}).get("other_cores")
        if p is not None and o is not None and abs(p - o) > threshold:
            out[rnd] = (p, o)
    return out


def render(data: dict[str, Any]) -> str:
    runs: list[dict[str, Any]] = data["runs"]
    cfg = data["config"]
    meta = data["meta"]
    servers = ["pyrestate", "official"]
    git = meta.get("git") or {}
    dirty = git.get("dirty") or []
    lines = [
        f"Run {meta['started']}: `{meta['command']}`",
        "",
        f"Commit {git.get('commit', '?')[:12]}"
        + (f" with uncommitted changes to {', '.join(dirty)}" if dirty else "")
        + ".",
        "",
        f"{meta['machine']['cpus']} CPUs ({meta['machine']['cpu_model']}), official server "
        f"{meta['machine']['official_version']}, {cfg['rounds']} rounds alternating servers, "
        f"{cfg['duration']:g} s measured per workload after {cfg['warmup']:g} s warm-up, "
        f"{cfg['concurrency']} closed-loop connections.",
        "",
        "Cells: median over rounds ±half the min-max spread. Ratio: pyrestate/official per "
        "round, median (min-max); above 1 means pyrestate is higher (better for throughput, "
        "worse for latency, CPU and memory).",
        "",
    ]
    for workers in cfg["workers"]:
        per = {s: _runs_by(runs, workers, s) for s in servers}
        if not any(per.values()):
            continue
        lines += [
            f"### Service under hypercorn --workers {workers}",
            "",
            "| workload | metric | pyrestate | official | pyrestate/official |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        notes: list[str] = []
        for w in cfg["workloads"]:
            noisy = _load_mismatches(per, w, cfg.get("load_mismatch", 0.1))
            for rnd, (p_other, o_other) in sorted(noisy.items()):
                notes.append(
                    f"- {NAMES[w]}, round {rnd}: background load {p_other:.2f} cores during "
                    f"pyrestate's window, {o_other:.2f} during the official's: left out"
                )
            first = True
            for key, label, dec in METRICS[w]:
                vals: dict[str, list[float]] = {}
                for s in servers:
                    vals[s] = [
                        v
                        for rnd, r in per[s].items()
                        if rnd not in noisy and (v := _ok(r["workloads"].get(w), key)) is not None
                    ]
                pairs = []
                for rnd, pr in per["pyrestate"].items():
                    orun = per["official"].get(rnd)
                    if orun is None or rnd in noisy:
                        continue
                    p = _ok(pr["workloads"].get(w), key)
                    o = _ok(orun["workloads"].get(w), key)
                    if p is not None and o is not None:
                        pairs.append((p, o))
                name = NAMES[w] if first else ""
                first = False
                lines.append(
                    f"| {name} | {label} | {_cell(vals['pyrestate'], dec)} | "
                    f"{_cell(vals['official'], dec)} | {_ratio_cell(pairs)} |"
                )
            for s in servers:
                bad = [
                    (rnd, r["workloads"][w], None)
                    for rnd, r in sorted(per[s].items())
                    if (r["workloads"].get(w) or {}).get("failures", 0)
                ]
                for rnd, r in sorted(per[s].items()):
                    g = r["workloads"].get("g") if w == "g" else None
                    if g and not g.get("crashed"):
                        if g.get("deadline_margin_s", 0) < 0:
                            notes.append(f"- (g), {s}, round {rnd}: deadline passed while sending")
                        if g.get("busy_cores_before_deadline", 0) > 0.3:
                            notes.append(
                                f"- (g), {s}, round {rnd}: still busy "
                                f"({g['busy_cores_before_deadline']:.2f} cores) just before the "
                                "deadline: not all timers were pending yet"
                            )
                for rnd, res, err in bad:
                    what = err or "; ".join((res or {}).get("failure_samples", [])[:2])
                    n = (res or {}).get("failures", "run failed")
                    notes.append(f"- {NAMES[w]}, {s}, round {rnd}: {n} errors — {what[:300]}")
        for s in servers:
            for rnd, r in sorted(per[s].items()):
                if r.get("error"):
                    notes.append(f"- {s}, round {rnd}: the run failed: {_summary(r['error'])}")
        lines.append("")
        lines += _cost_table(cfg, per)
        if notes:
            lines += [
                "Notes (rounds with errors or unequal background load are left out of the "
                "numbers above):",
                "",
                *notes,
                "",
            ]
    return "\n".join(lines) + "\n"


def _summary(error: str) -> str:
    """First line of an error, and its last line (the exception of a traceback in a log)."""
    rows = [x.strip(" │|") for x in error.splitlines() if x.strip(" │|")]
    if len(rows) <= 1:
        return rows[0] if rows else "?"
    return f"{rows[0]} ... {rows[-1]}"[:400]


def _cost_table(cfg: dict[str, Any], per: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """Load generator's own CPU and what else ran on the machine, to judge the numbers."""
    lines = [
        "Load generator CPU per request, and CPU used by anything else on the machine during "
        "the measured windows (cores):",
        "",
        "| workload | loadgen ms/req (pyrestate / official) | other cores (pyrestate / official) |",
        "| --- | ---: | ---: |",
    ]
    for w in cfg["workloads"]:
        if w == "g":
            continue
        cells = []
        for key, dec in (("loadgen_cpu_ms", 3), ("other_cores", 2)):
            parts = []
            for s in ("pyrestate", "official"):
                vals = [
                    v for r in per[s].values() if (v := _ok(r["workloads"].get(w), key)) is not None
                ]
                parts.append(_fmt(statistics.median(vals), dec) if vals else "—")
            cells.append(" / ".join(parts))
        lines.append(f"| {NAMES[w]} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        "Server footprint (median over rounds):",
        "",
        "| | pyrestate | official |",
        "| --- | ---: | ---: |",
    ]
    for key, label, dec in (
        ("idle_server_cores", "idle CPU after registration, cores", 3),
        ("server_rss_mb_start", "RSS after registration, MiB", 0),
        ("server_rss_mb_end", "RSS after the workloads, MiB", 0),
    ):
        cells = []
        for s in ("pyrestate", "official"):
            vals = [float(r[key]) for r in per[s].values() if isinstance(r.get(key), int | float)]
            cells.append(_fmt(statistics.median(vals), dec) if vals else "—")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return [*lines, ""]


def one_line(w: str, res: dict[str, Any]) -> str:
    """A progress line while running."""
    try:
        return _one_line(w, res)
    except (KeyError, IndexError, TypeError, ValueError):
        # A failed workload lacks the usual numbers: show why it failed instead.
        return f"FAILED {'; '.join(res.get('failure_samples', []))[:300]}"


def _one_line(w: str, res: dict[str, Any]) -> str:
    if res.get("crashed"):
        return f"CRASHED {res['failure_samples'][0][:200]}"
    errors = res.get("failures", 0)
    tail = f" ERRORS {errors}: {res['failure_samples'][:1]}" if errors else ""
    if w == "g":
        return (
            f"{res['pending']} pending, {res['accepted_per_s']:.0f} acc/s, "
            f"RSS {res['rss_idle_mb']:.0f}->{res['rss_pending_mb']:.0f} MiB, "
            f"fired in {res['fire_s']:.1f}s (margin {res['deadline_margin_s']:.0f}s){tail}"
        )
    if w == "f":
        return (
            f"{res['accepted']} sent, {res['accepted_per_s']:.0f} acc/s, "
            f"drain {res['drain_s']:.1f}s, {res['completed_per_s']:.0f} done/s, "
            f"srv {res['server_cpu_ms']:.2f} svc {res['service_cpu_ms']:.2f} ms/inv{tail}"
        )
    return (
        f"{res['throughput']:.0f} req/s p50 {res['p50_ms']:.1f} p99 {res['p99_ms']:.1f} ms, "
        f"srv {res['server_cpu_ms']:.2f} svc {res['service_cpu_ms']:.2f} "
        f"lg {res['loadgen_cpu_ms']:.3f} ms/req, other {res['other_cores']:.2f} cores{tail}"
    )


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results/latest.json")
    sys.stdout.write(render(json.loads(path.read_text())))
