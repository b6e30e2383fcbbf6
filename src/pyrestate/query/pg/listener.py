"""The PostgreSQL listener: accepts connections, bounds them, routes cancel requests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from pyrestate.config import split_bind
from pyrestate.query.pg.session import Query, Session
from pyrestate.query.pg.wire import ProtocolError

log = logging.getLogger("pyrestate.pgsql")


class PgServer:
    def __init__(
        self,
        query: Query,
        *,
        server_version: str,
        max_connections: int = 64,
        startup_timeout_s: float = 30.0,
    ) -> None:
        self._query = query
        self._version = server_version
        self._max = max_connections
        self._startup_timeout_s = startup_timeout_s
        self._server: asyncio.Server | None = None
        self._sessions: dict[int, Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_pid = 1

    async def start(self, bind: str) -> None:
        host, port = split_bind(bind)
        self._server = await asyncio.start_server(self._accept, host, port)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        # Connections being refused count too, up to the same number again.
        if len(self._tasks) >= 2 * self._max:
            writer.close()
            return
        self._tasks.add(task)
        pid = self._next_pid
        self._next_pid += 1
        session = Session(
            reader,
            writer,
            self._query,
            pid=pid,
            secret=secrets.randbits(31),
            server_version=self._version,
        )
        try:
            await self._run(session, pid)
        except ProtocolError as e:
            log.info("pgsql connection closed: %s", e)
            with contextlib.suppress(ConnectionError):
                await session.fail_and_close("08P01", str(e))
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away, or never finished its startup
        except asyncio.CancelledError:
            # Shutdown. This task is the connection's outermost frame: ending it quietly
            # keeps asyncio from reporting the cancelled connection callback as an error.
            pass
        except Exception:
            log.exception("pgsql connection failed")
        finally:
            self._sessions.pop(pid, None)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _run(self, session: Session, pid: int) -> None:
        started = await asyncio.wait_for(session.startup(), self._startup_timeout_s)
        if isinstance(started, tuple):
            target = self._sessions.get(started[0])
            if target is not None and target.secret == started[1]:
                target.cancel()
            return
        if len(self._sessions) >= self._max:
            await session.fail_and_close("53300", "sorry, too many clients already")
            return
        self._sessions[pid] = session
        await session.greet(started)
        await session.serve()
