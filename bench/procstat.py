"""CPU time and resident memory of whole process trees, read from Linux /proc.

A server or a hypercorn deployment is several processes (hypercorn forks workers) and
many threads; /proc/<pid>/stat already sums a process's threads, so walking the ppid
links and summing is enough.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Stat:
    pid: int
    ppid: int
    state: str
    # utime + stime of the process itself, and cutime + cstime of children it reaped.
    cpu_ticks: int
    reaped_ticks: int


def _read_stat(pid: int) -> Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state) of proc(5), so field k is fields[k - 3].
    return Stat(
        pid=pid,
        ppid=int(fields[1]),
        state=fields[0].decode(),
        cpu_ticks=int(fields[11]) + int(fields[12]),
        reaped_ticks=int(fields[13]) + int(fields[14]),
    )


def tree_pids(root: int) -> list[int]:
    """root and all its live descendants."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _read_stat(int(name))
        if st is not None:
            children.setdefault(st.ppid, []).append(st.pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) used so far by the tree under root.

    Includes children that already exited and were reaped by a tree member, so a worker
    restarting mid-measurement does not make CPU disappear.
    """
    ticks = 0
    for pid in tree_pids(root):
        st = _read_stat(pid)
        if st is not None:
            ticks += st.cpu_ticks + st.reaped_ticks
    return ticks / CLK_TCK


def per_process_cpu_seconds(root: int) -> dict[int, float]:
    """CPU seconds per live process of the tree (to see how load spreads over workers)."""
    out = {}
    for pid in tree_pids(root):
        st = _read_stat(pid)
        if st is not None:
            out[pid] = (st.cpu_ticks + st.reaped_ticks) / CLK_TCK
    return out


def tree_rss_bytes(root: int, peak: bool = False) -> int:
    """Sum of VmRSS over the tree (shared pages of forked workers count once per process).

    peak: VmHWM instead, each process's high-water mark since it started.
    """
    key = b"VmHWM:" if peak else b"VmRSS:"
    total = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(key):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def self_cpu_seconds() -> float:
    """CPU seconds of this process, all threads (the load generator's own cost)."""
    t = os.times()
    return t.user + t.system
