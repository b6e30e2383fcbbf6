"""Time per journal step over one long invocation: flat, or growing with its history?

Drives the partition writer in process (real SQLite store, fsync on every commit as in
production, no deployment): one invocation, then N steps of one ``ctx.run`` each (the
RunCommand and its proposed completion), each awaited until committed as an SDK awaits
its ack. Prints the mean time per step in each tenth and last/first.

    .venv/bin/python bench/steps.py [--steps 10000]

Run it with PYTHONPATH pointing at another checkout's src/ to compare versions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path

from pyrestate.core.commands import AppendCommand, Attach, Invoke, ProposeRunCompletion
from pyrestate.core.effects import Effect
from pyrestate.core.ids import InvocationId
from pyrestate.core.model import JournalEntry, Output, ServiceType, Target
from pyrestate.core.notifications import completion
from pyrestate.partition.processor import PartitionProcessor
from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import MessageType
from pyrestate.storage.sqlite import SqlitePartitionStore


class _NoInvoker:
    def handle(self, effect: Effect) -> None:
        pass


async def run(steps: int, data: Path) -> list[float]:
    store = SqlitePartitionStore(data / "p.db")
    p = PartitionProcessor(store)
    p.invoker = _NoInvoker()
    await p.start()
    inv = InvocationId(1, bytes(16))
    target = Target("Bench", "long", None, ServiceType.SERVICE, None)
    await p.request(lambda t: Invoke(inv, target, b"", reply=t))
    per_step: list[float] = []
    for cid in range(1, steps + 1):
        run_msg = pb.RunCommandMessage(result_completion_id=cid, name="step")
        entry = JournalEntry(MessageType.RUN_COMMAND, run_msg.SerializeToString())
        done = completion(MessageType.RUN_COMPLETION, cid, Output(value=b"1"))
        started = time.perf_counter()
        p.submit(AppendCommand(inv, 1, "dp", entry, run_msg))
        p.submit(ProposeRunCompletion(inv, 1, "dp", cid, done))
        await p.request(lambda t: Attach(inv, t, wait=False))  # answered after the commit
        per_step.append(time.perf_counter() - started)
    await p.stop()
    store.close()
    return per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        per_step = asyncio.run(run(args.steps, Path(d)))
    tenth = len(per_step) // 10
    means = [sum(per_step[i * tenth : (i + 1) * tenth]) / tenth * 1e3 for i in range(10)]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    import pyrestate

    print(
        json.dumps(
            {
                "commit": commit,
                "pyrestate_from": str(Path(pyrestate.__file__).parent),
                "steps": args.steps,
                "ms_per_step_by_tenth": [round(m, 3) for m in means],
                "last_over_first": round(means[-1] / means[0], 2),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
