"""Wiring and lifecycle: storage, partition, invoker, ingress and admin in one process."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import uvicorn

from pyrestate import __version__
from pyrestate.admin.app import AdminApp
from pyrestate.admin.app import overloaded as admin_overloaded
from pyrestate.admin.discovery import discover
from pyrestate.admin.in_process import AdminApi, ApiError
from pyrestate.admin.invocations import add_invocation_routes
from pyrestate.admin.registry_store import RegistryStore
from pyrestate.admin.state import add_state_routes
from pyrestate.config import Settings, split_bind
from pyrestate.http_front import FrontLimits, start_front_door
from pyrestate.identity import IdentityKeyError, load_signer
from pyrestate.ingress.app import IngressApp
from pyrestate.ingress.app import overloaded as ingress_overloaded
from pyrestate.invoker import inprocess
from pyrestate.invoker.service import Invoker
from pyrestate.logs import AttemptFailureLog, humantime, redact_uri
from pyrestate.partition.processor import PartitionProcessor, now_ms
from pyrestate.query.pg import PgServer
from pyrestate.query.routes import add_query_routes, registry_snapshot
from pyrestate.query.service import QueryService
from pyrestate.schemas import RegistryHolder, SchemaView
from pyrestate.storage.sqlite import SqlitePartitionStore
from pyrestate.subscriptions.admin import add_subscription_routes
from pyrestate.subscriptions.catalog import Catalog
from pyrestate.subscriptions.manager import SubscriptionManager
from pyrestate.subscriptions.store import SubscriptionStore
from pyrestate.telemetry.metrics import Metrics, add_metrics_route
from pyrestate.ui.routes import add_ui_routes

if TYPE_CHECKING:
    from pyrestate.telemetry.tracing import Tracer

log = logging.getLogger("pyrestate.server")

SHUTDOWN_TIMEOUT_S = 10.0
# What psql and drivers are told; they pick their SQL dialect from it.
_PG_VERSION = f"16.0 (pyrestate {__version__})"


class Server:
    """``clock``: epoch ms the partition measures time by (tests skip ahead with theirs)."""

    def __init__(self, settings: Settings, clock: Callable[[], int] = now_ms) -> None:
        self.settings = settings
        inprocess.allow_imports = settings.asgi_import
        self.signer = None
        if settings.request_identity_private_key_pem_file is not None:
            self.signer = load_signer(settings.request_identity_private_key_pem_file)
            log.info("Loaded request identity key kid=%s", self.signer.public_key_string())
        data = settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.registry_store = RegistryStore(data / "metadata.db")
        self.registry = RegistryHolder(self.registry_store.load())
        self.store = SqlitePartitionStore(data / "partition-0.db", settings.sqlite_synchronous)
        self.partition = PartitionProcessor(self.store, clock)
        self.partition.observers.append(AttemptFailureLog(clock))
        self.schemas = SchemaView(self.registry)
        self.tracer = _tracer(settings)
        if self.tracer is not None:
            self.partition.observers.append(self.tracer.observe)
        # From here on it observes the partition's commits and committed effects.
        self.metrics = Metrics(self.partition, transports=lambda: self.invoker.transports())
        skew = None if clock is now_ms else (lambda: clock() - now_ms())
        self.invoker = Invoker(
            self.partition,
            self.store,
            self.schemas,
            self.signer,
            skew,
            self.tracer,
            self.metrics.attempt_ended,
        )
        self.partition.invoker = self.invoker
        self.ingress = self.metrics.wrap_ingress(
            IngressApp(self.partition, self.schemas, tracer=self.tracer)
        )
        self.admin = AdminApp(
            self.registry,
            save=self.registry_store.save,
            ingress_url=self._ingress_url(),
            discover=functools.partial(discover, signer=self.signer),
        )
        add_invocation_routes(self.admin, self.partition, self.registry)
        # Every partition's store; one today.
        self.query = QueryService(
            [self.store.path],
            lambda: registry_snapshot(self.registry.current, __version__),
            restate_version=__version__,
        )
        add_query_routes(self.admin, self.query)
        self.pgsql = PgServer(
            lambda sql: self.query.query(sql, as_json=False), server_version=_PG_VERSION
        )
        add_state_routes(self.admin, self.partition, self.registry)
        self.catalog = Catalog(SubscriptionStore(data / "metadata.db"), settings.kafka_clusters)
        add_subscription_routes(self.admin, self.catalog, self.registry)
        self.subscriptions = SubscriptionManager(
            self.catalog, self.partition, self.schemas, self.tracer
        )
        self.catalog.on_change(self.subscriptions.reconcile)
        add_ui_routes(self.admin, ingress_url=self._ingress_url())
        add_metrics_route(self.admin, self.metrics)
        self._http: list[uvicorn.Server] = []
        self._loops: list[asyncio.Task[None]] = []

    def _ingress_url(self) -> str:
        host, port = split_bind(self.settings.ingress_bind)
        return f"http://{host}:{port}/"

    async def start(self, listen: bool = True) -> None:
        """``listen``: serve the ingress, admin and psql ports (else only in-process)."""
        await self.partition.start()
        self.subscriptions.start()
        if not listen:
            return
        await self.query.warm_up()
        ingress_limits = FrontLimits(
            max_in_flight=self.settings.ingress_max_in_flight,
            header_timeout_s=self.settings.ingress_header_timeout_s,
        )
        for app, overloaded, bind, limits in (
            (
                self.ingress,
                # The in-flight limit's 503s are counted too.
                self.metrics.wrap_ingress(ingress_overloaded),
                self.settings.ingress_bind,
                ingress_limits,
            ),
            (self.admin, admin_overloaded, self.settings.admin_bind, FrontLimits()),
        ):
            server = await start_front_door(app, bind, overloaded=overloaded, limits=limits)
            self._http.append(server)
            # The main loop refreshes the Date header and notices should_exit.
            self._loops.append(asyncio.create_task(server.main_loop()))
        await self.pgsql.start(self.settings.pgsql_bind)
        log.info(
            "pyrestate %s: ingress on %s, admin on %s, psql on %s, data in %s "
            "(sqlite synchronous=%s)",
            __version__,
            self.settings.ingress_bind,
            self.settings.admin_bind,
            self.settings.pgsql_bind,
            self.settings.data_dir,
            self.store.synchronous,
        )

    async def register_in_process(self, uri: str) -> None:
        """Register (or update) an in-process deployment through the admin API; ApiError
        if it refuses."""
        await AdminApi(self.admin).call("POST", "/deployments", {"uri": uri, "force": True})

    async def stop(self) -> None:
        await self.subscriptions.aclose()
        for server in self._http:
            server.should_exit = True
        await asyncio.gather(*self._loops, return_exceptions=True)
        # Together: each waits a fixed 0.1 s for its connections to wind down.
        await asyncio.gather(*(server.shutdown() for server in self._http), return_exceptions=True)
        await self.pgsql.aclose()
        await self.invoker.aclose()
        await self.query.aclose()
        await self.partition.stop()
        self.store.close()
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.shutdown)  # what is queued goes out


def _tracer(settings: Settings) -> Tracer | None:
    if settings.tracing_endpoint is None:
        return None
    # Imported only here: a server without tracing loads neither it nor gRPC.
    from pyrestate.telemetry.tracing import tracer_for

    log.info("tracing to %s", redact_uri(settings.tracing_endpoint))
    headers = dict(settings.tracing_headers)
    return tracer_for(
        settings.tracing_endpoint, headers, settings.tracing_journal_spans, os.environ
    )


async def serve(settings: Settings, in_process: Sequence[str] = ()) -> None:
    """Run until SIGINT/SIGTERM, then shut down cleanly; a failed writer ends it non-zero.

    ``in_process``: asgi:// URIs of mounted apps to register once the server is up.
    """
    log.info(
        "Starting Restate Server %s (pyrestate)",
        __version__,
        extra={"fields": {"base_dir": str(settings.data_dir), "cpus": os.cpu_count()}},
    )
    try:
        server = Server(settings)
    except IdentityKeyError as e:
        raise SystemExit(f"error: {e}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def handle_signals() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

    handle_signals()
    inprocess.reclaim_signals = handle_signals
    await server.start()
    try:
        for uri in in_process:
            await server.register_in_process(uri)
    except ApiError as e:
        await server.stop()
        raise SystemExit(f"error: cannot register an in-process deployment: {e}") from None
    stopped = asyncio.create_task(stop.wait())
    writer = server.partition.writer
    try:
        await asyncio.wait([stopped, writer], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        failure = writer.exception() if writer.done() and not writer.cancelled() else None
        if failure is not None:
            log.critical("partition writer failed, stopping", exc_info=failure)
        log.info("shutting down")
        stopping = time.monotonic()
        try:
            # A second signal, or a shutdown that does not finish, must not keep us alive.
            await asyncio.wait_for(server.stop(), SHUTDOWN_TIMEOUT_S)
        except TimeoutError:
            log.error("shutdown did not finish within %ss", SHUTDOWN_TIMEOUT_S)
        else:
            elapsed_ms = round((time.monotonic() - stopping) * 1000)
            log.info("Restate has gracefully shutdown in %s", humantime(elapsed_ms))
    if failure is not None:
        # Memory is ahead of what is committed: only a restart from disk is safe.
        raise SystemExit(f"partition writer failed: {failure!r}")
