"""The server side of SQL introspection: a small pool of query worker processes.

At most ``workers`` queries run at once, each in its own worker process; more wait for a
free one (503 if none frees up in time). A query that runs past its deadline has its
worker killed; a worker that dies (out of memory, a crash in native code) is replaced.
The event loop only writes requests and reads answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from pyrestate.query.engine import Answer, Limits, error_answer
from pyrestate.query.tables import RegistrySnapshot

log = logging.getLogger("pyrestate.query")

_LEN = struct.Struct(">I")
MAX_ANSWER_BYTES = 256 * 1024 * 1024  # a worker's answer beyond this is a broken worker


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def ask(self, request: bytes) -> Answer:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(_LEN.pack(len(request)) + request)
        await self.proc.stdin.drain()
        header = json.loads(await self._frame())
        body = await self._frame()
        return Answer(header["status"], header["content_type"], body, header["rows_read"])

    async def _frame(self) -> bytes:
        assert self.proc.stdout is not None
        (n,) = _LEN.unpack(await self.proc.stdout.readexactly(_LEN.size))
        if n > MAX_ANSWER_BYTES:
            raise ConnectionError(f"query worker sent {n} bytes")
        return await self.proc.stdout.readexactly(n)

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()


class QueryService:
    def __init__(
        self,
        partitions: Sequence[Path],
        registry: Callable[[], RegistrySnapshot],
        *,
        restate_version: str,
        workers: int = 4,
        limits: Limits | None = None,
        wait_for_worker_s: float = 10.0,
        address_space_bytes: int | None = 4 * 1024 * 1024 * 1024,
    ) -> None:
        self._registry = registry
        self._limits = limits = limits or Limits()
        self._wait_s = wait_for_worker_s
        self._slots = asyncio.Semaphore(workers)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._config = json.dumps(
            {
                "partitions": [str(p) for p in partitions],
                "restate_version": restate_version,
                "limits": asdict(limits),
                "address_space_bytes": address_space_bytes,
            }
        )

    async def _spawn(self) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pyrestate.query.worker",
            self._config,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return _Worker(proc)

    async def warm_up(self) -> None:
        """Start one worker ahead of the first query (its imports take a while)."""
        if not self._idle and not self._busy:
            self._idle.append(await self._spawn())

    async def query(self, sql: str, as_json: bool) -> Answer:
        try:
            await asyncio.wait_for(self._slots.acquire(), self._wait_s)
        except TimeoutError:
            return error_answer(503, "Too many queries at once; try again later")
        try:
            return await self._run(sql, as_json)
        finally:
            self._slots.release()

    async def _run(self, sql: str, as_json: bool) -> Answer:
        worker = self._idle.pop() if self._idle else await self._spawn()
        self._busy.add(worker)
        request = json.dumps(
            {"sql": sql, "json": as_json, "registry": asdict(self._registry())}
        ).encode()
        deadline = self._limits.seconds + 1.0  # the worker checks too; this is the backstop
        try:
            answer = await asyncio.wait_for(worker.ask(request), deadline)
        except TimeoutError:
            self._busy.discard(worker)
            await worker.kill()
            return error_answer(
                500,
                f"Datafusion error: Resources exhausted: the query took longer than "
                f"{self._limits.seconds:g}s",
            )
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as e:
            self._busy.discard(worker)
            await worker.kill()
            log.warning("query worker failed (%s) on: %.200s", e, sql)
            return error_answer(
                500,
                "Datafusion error: Resources exhausted: the query could not be completed "
                "(it ran out of memory or was too complex)",
            )
        except BaseException:
            # Cancelled (the client went away): the worker may still be busy; end it.
            self._busy.discard(worker)
            await worker.kill()
            raise
        self._busy.discard(worker)
        self._idle.append(worker)
        return answer

    async def aclose(self) -> None:
        workers = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        for w in workers:
            if w.proc.stdin is not None:
                w.proc.stdin.close()
        for w in workers:
            try:
                await asyncio.wait_for(w.proc.wait(), 2.0)
            except TimeoutError:
                await w.kill()
