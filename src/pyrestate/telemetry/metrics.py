"""Prometheus metrics, served as text at ``GET /metrics`` on the admin port.

The official server serves its metrics on the node port (5122), which pyrestate does not
have; the admin port is where pyrestate's operator surface lives. Every sample carries
``cluster_name`` and ``node_name``, as the official server's do. The registry is our
own: no process or platform collectors (the official server has no such families, and
they would cost every scrape for numbers any process exporter gives better).

Families named as the official server names them (1.7.12; it renders its histograms as
summaries, here they are histograms under the same base names):

- ``restate_ingress_requests_total`` counter {status, rpc_service, rpc_type}: requests
  for a registered service. ``status``: ``admitted`` on arrival (``rpc_service`` and
  ``rpc_type`` empty, as the official server leaves them out), then ``completed``,
  ``invocation_error`` (the handler failed: the error's source is the invocation),
  ``request_error`` (any other 4xx) or ``ingress_error`` (5xx). ``rpc_type``: ``call``
  or ``send``.
- ``restate_ingress_request_duration_seconds`` histogram {rpc_service, rpc_type}: those
  requests, from arrival until the response is sent.
- ``restate_invoker_invocation_tasks_total`` counter {status, transient, partition_id}:
  attempts ``started``; ``failed`` with ``transient="true"`` (a retry was scheduled) or
  ``"false"`` (the invocation paused); ``completed`` and ``suspended`` as the invoker
  reports them (``attempt_ended``). A failure that completes the invocation (terminal,
  or out of attempts) counts among the completed invocations, not here.
- ``restate_invoker_task_duration_seconds`` histogram: per attempt, as the invoker
  reports it (``attempt_ended``).

Families of pyrestate's own (the official server has nothing per service or outcome, no
queue depth, no connection gauge and no ingress status codes):

- ``restate_invocations`` gauge {service, status}: invocations not completed, by status
  as sys_invocation names them, read at scrape time: from the partition's memory, and
  ``scheduled`` (delayed) ones, which live only in storage, from an index of it.
- ``restate_invocations_completed_total`` counter {service, result}: ``success`` or
  ``failure`` (terminal errors, kills and cancellations).
- ``restate_invocation_duration_seconds`` histogram {service}: from creation to
  completion.
- ``restate_invocation_attempts_total`` counter {service}: attempts started.
- ``restate_invocation_retries_total`` counter {service}: failed attempts retried.
- ``restate_partition_queue_depth`` gauge {partition_id}: commands submitted and not yet
  taken into a batch by the partition's writer.
- ``restate_partition_commit_duration_seconds`` histogram {partition_id}: one batch's
  transaction (with its fsync), as the writer waits for it.
- ``restate_partition_commit_batch_size`` histogram {partition_id}: commands per
  committed batch (group commit).
- ``restate_deployment_connections`` gauge {address}: connections open to each
  deployment (its URI) at scrape time; in-process (``asgi://``) deployments have none.
- ``restate_ingress_http_requests_total`` counter {code}: every ingress response by HTTP
  status code (answers of the in-flight limit only if its app is wrapped too).

Hot path: the counters and histograms of a label set are looked up once and kept
(``labels()`` takes a lock and checks its arguments on every call); the gauges cost
nothing until a scrape.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from pyrestate.admin.web import Request, Response
from pyrestate.asgi import Receive, Scope, Send
from pyrestate.core.effects import AttemptFailureHandled, Completed, Effect, StartAttempt
from pyrestate.core.model import Status
from pyrestate.ingress.app import ADMIT_HOOK

if TYPE_CHECKING:
    from pyrestate.invoker.transport import Transport
    from pyrestate.partition.processor import PartitionProcessor

log = logging.getLogger(__name__)

# generate_latest writes the classic text format, whatever newer content types the
# library knows; Prometheus reads it under this type.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds, from a fast ingress call to a workflow that runs for an hour.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
# A commit is an fsync: tenths of a millisecond on fast disks, seconds on a stalled one.
COMMIT_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
# Commands per batch, up to the writer's largest batch (processor.MAX_BATCH).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)

# Every status an invocation shows until it completes (completed ones are counted apart).
_LIVE_STATUSES = tuple(s for s in Status if s is not Status.COMPLETED)

# Delayed invocations by service. The redundant ``!= 'completed'`` lets SQLite use the
# partial index of unfinished invocations (it cannot infer it from ``= 'scheduled'``),
# so this reads the scheduled ones only, not every invocation kept.
_SCHEDULED_SQL = (
    "SELECT service, count(*) FROM invocation "
    "WHERE status = 'scheduled' AND status != 'completed' GROUP BY service"
)


AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Handler = Callable[[Request], Awaitable[Response]]


class Routes(Protocol):
    def route(self, method: str, path: str, handler: Handler) -> None: ...


class _NodeRegistry(CollectorRegistry):
    """Adds the node's labels to every sample, and leaves out the ``_created`` series of
    counters and histograms (the official server has none; they only add lines)."""

    def __init__(self, labels: dict[str, str]) -> None:
        super().__init__()
        self._labels = labels

    def collect(self) -> Iterator[Metric]:
        node = self._labels
        for metric in super().collect():
            created = metric.name + "_created"
            metric.samples = [
                s._replace(labels={**node, **s.labels}) for s in metric.samples if s.name != created
            ]
            yield metric


class _ServiceMetrics:
    """The per-service children, looked up once per service."""

    __slots__ = ("attempts", "duration", "failure", "retries", "success")

    def __init__(self, m: Metrics, service: str) -> None:
        self.attempts = m._attempts.labels(service)
        self.retries = m._retries.labels(service)
        self.success = m._completed.labels(service, "success")
        self.failure = m._completed.labels(service, "failure")
        self.duration = m._duration.labels(service)


class Metrics:
    """The registry and what feeds it. It observes ``partition`` from construction on:
    its committed effects (``observers``) and its commits (``on_commit``).

    ``transports``: the invoker's transports by (deployment URI, HTTP version), read at
    scrape time for the connection gauge.
    """

    def __init__(
        self,
        partition: PartitionProcessor,
        *,
        transports: Callable[[], Mapping[tuple[str, str], Transport]] | None = None,
        cluster_name: str = "localcluster",
        node_name: str = "pyrestate",
        partition_id: int = 0,
    ) -> None:
        self._partition = partition
        self._transports = transports
        self._partition_id = str(partition_id)
        self.registry = _NodeRegistry({"cluster_name": cluster_name, "node_name": node_name})
        r = self.registry
        pid = self._partition_id

        self._ingress_requests = Counter(
            "restate_ingress_requests_total",
            "Ingress requests for a registered service, by outcome",
            ["status", "rpc_service", "rpc_type"],
            registry=r,
        )
        self._ingress_duration = Histogram(
            "restate_ingress_request_duration_seconds",
            "Ingress request latency, from arrival until the response is sent",
            ["rpc_service", "rpc_type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._admitted = self._ingress_requests.labels("admitted", "", "")
        self._http_requests = Counter(
            "restate_ingress_http_requests_total",
            "Ingress responses by HTTP status code",
            ["code"],
            registry=r,
        )
        tasks = Counter(
            "restate_invoker_invocation_tasks_total",
            "Invocation attempts: started, and how they ended",
            ["status", "transient", "partition_id"],
            registry=r,
        )
        self._task_started = tasks.labels("started", "", pid)
        self._task_retried = tasks.labels("failed", "true", pid)
        self._task_paused = tasks.labels("failed", "false", pid)
        self._task_completed = tasks.labels("completed", "", pid)
        self._task_suspended = tasks.labels("suspended", "", pid)
        self._task_duration = Histogram(
            "restate_invoker_task_duration_seconds",
            "Duration of one invocation attempt",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._completed = Counter(
            "restate_invocations_completed_total",
            "Invocations completed, by service and result",
            ["service", "result"],
            registry=r,
        )
        self._duration = Histogram(
            "restate_invocation_duration_seconds",
            "Invocation latency, from creation to completion",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._attempts = Counter(
            "restate_invocation_attempts_total",
            "Invocation attempts started, by service",
            ["service"],
            registry=r,
        )
        self._retries = Counter(
            "restate_invocation_retries_total",
            "Failed invocation attempts that are retried, by service",
            ["service"],
            registry=r,
        )
        self._commit_duration = Histogram(
            "restate_partition_commit_duration_seconds",
            "Duration of one batch's commit to storage",
            ["partition_id"],
            buckets=COMMIT_BUCKETS,
            registry=r,
        ).labels(pid)
        self._commit_size = Histogram(
            "restate_partition_commit_batch_size",
            "Commands per committed batch",
            ["partition_id"],
            buckets=BATCH_BUCKETS,
            registry=r,
        ).labels(pid)
        r.register(_Gauges(self))

        self._services: dict[str, _ServiceMetrics] = {}
        self._ingress_outcomes: dict[tuple[str, str, str], Any] = {}
        self._ingress_latencies: dict[tuple[str, str], Any] = {}
        self._http_codes: dict[int, Any] = {}
        # Delayed invocations per service at the last scrape (they live only in storage).
        self._scheduled: dict[str, int] = {}

        partition.observers.append(self.observe)
        partition.on_commit = self.committed

    # --- Feeding

    def _service(self, name: str) -> _ServiceMetrics:
        svc = self._services.get(name)
        if svc is None:
            svc = self._services[name] = _ServiceMetrics(self, name)
        return svc

    def observe(self, effects: list[Effect]) -> None:
        """A committed batch's effects (a partition observer)."""
        for effect in effects:
            match effect:
                case StartAttempt():
                    self._service(effect.target.service).attempts.inc()
                    self._task_started.inc()
                case Completed():
                    created = effect.created_at
                    if effect.target is None:
                        continue
                    svc = self._service(effect.target.service)
                    (svc.success if effect.output.failure is None else svc.failure).inc()
                    if created:  # 0: not given (the field's default)
                        svc.duration.observe(max(0, self._partition.now() - created) / 1000)
                case AttemptFailureHandled():
                    if effect.retry_at is None:
                        self._task_paused.inc()
                    else:
                        self._task_retried.inc()
                        self._service(effect.target.service).retries.inc()

    def committed(self, commands: int, seconds: float) -> None:
        """One batch was committed (the partition's ``on_commit``)."""
        self._commit_duration.observe(seconds)
        self._commit_size.observe(commands)

    def attempt_ended(self, outcome: str, seconds: float) -> None:
        """An attempt's exchange with its deployment ended after ``seconds`` (for the
        invoker to call): ``ended`` (the handler finished), ``suspended``, ``failed`` or
        ``aborted``. Failures are counted from the partition, which knows what follows."""
        self._task_duration.observe(seconds)
        if outcome == "ended":
            self._task_completed.inc()
        elif outcome == "suspended":
            self._task_suspended.inc()

    def wrap_ingress(self, app: AsgiApp) -> AsgiApp:
        """``app`` (the ingress) with its requests and responses counted."""
        return _MeteredIngress(app, self)

    def _answered(
        self, rpc: tuple[str, str] | None, status: str, code: int, seconds: float
    ) -> None:
        counter = self._http_codes.get(code)
        if counter is None:
            counter = self._http_codes[code] = self._http_requests.labels(str(code))
        counter.inc()
        if rpc is None:
            return
        key = (status, *rpc)
        outcome = self._ingress_outcomes.get(key)
        if outcome is None:
            outcome = self._ingress_outcomes[key] = self._ingress_requests.labels(*key)
        outcome.inc()
        latency = self._ingress_latencies.get(rpc)
        if latency is None:
            latency = self._ingress_latencies[rpc] = self._ingress_duration.labels(*rpc)
        latency.observe(seconds)

    # --- Scraping

    async def scrape(self) -> bytes:
        """The exposition text; storage is read off the event loop."""
        path = self._partition.store.path
        self._scheduled = await asyncio.to_thread(_scheduled_by_service, path)
        return generate_latest(self.registry)

    def _gauges(self) -> Iterator[Metric]:
        invocations = GaugeMetricFamily(
            "restate_invocations",
            "Invocations not completed, by service and status",
            labels=["service", "status"],
        )
        counts = collections.Counter(
            (st.target.service, st.status)
            for st in self._partition.machine.invocations.values()
            # Scheduled ones are counted from storage; memory holds some only while a
            # batch handles them (and completed ones until their batch commits).
            if st.status is not Status.SCHEDULED and st.status is not Status.COMPLETED
        )
        for service, n in self._scheduled.items():
            counts[service, Status.SCHEDULED] = n
        # Every status of every service known, so a series drops to 0 instead of vanishing.
        services = {s for s, _ in counts} | self._services.keys()
        for service in sorted(services):
            for status in _LIVE_STATUSES:
                invocations.add_metric([service, status.value], counts[service, status])
        yield invocations

        depth = GaugeMetricFamily(
            "restate_partition_queue_depth",
            "Commands waiting for the partition's writer to take them into a batch",
            labels=["partition_id"],
        )
        depth.add_metric([self._partition_id], self._partition.queue_depth())
        yield depth

        connections = GaugeMetricFamily(
            "restate_deployment_connections",
            "Connections open to each deployment",
            labels=["address"],
        )
        per_address: dict[str, int] = {}
        if self._transports is not None:
            for (uri, _version), transport in self._transports().items():
                per_address[uri] = per_address.get(uri, 0) + transport.open_connections()
        for uri, n in sorted(per_address.items()):
            connections.add_metric([uri], n)
        yield connections


class _Gauges:
    """The gauges computed at scrape time (a custom collector of the registry)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics._gauges()


def _scheduled_by_service(path: Path) -> dict[str, int]:
    """Delayed invocations per service, from committed storage (runs in a thread)."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return dict(db.execute(_SCHEDULED_SQL))
        finally:
            db.close()
    except sqlite3.Error as e:
        # A scrape during shutdown, or a damaged file (the partition reports that itself).
        log.warning("metrics: cannot count scheduled invocations: %s", e)
        return {}


class _MeteredIngress:
    """ASGI middleware: counts each response by status code and, for a request to a
    registered service, by outcome, with its latency."""

    def __init__(self, app: AsgiApp, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        rpc: tuple[str, str] | None = None

        def admit(service: str, kind: str) -> None:
            nonlocal rpc
            rpc = (service, kind)
            self._metrics._admitted.inc()

        scope[ADMIT_HOOK] = admit
        code = 0
        error_source = b""

        async def metered(message: dict[str, Any]) -> None:
            nonlocal code, error_source
            if message["type"] == "http.response.start":
                code = message["status"]
                if code >= 400:
                    for name, value in message.get("headers", ()):
                        if name == b"x-restate-error-source":
                            error_source = value
            await send(message)

        try:
            await self._app(scope, receive, metered)
        except Exception:
            code = code or 500  # what the HTTP server answers for an app that failed
            raise
        finally:
            # code 0: the client went away before any answer; nothing was answered.
            if code:
                if code < 400:
                    status = "completed"
                elif error_source == b"invocation":
                    status = "invocation_error"
                else:
                    status = "ingress_error" if code >= 500 else "request_error"
                self._metrics._answered(rpc, status, code, time.perf_counter() - started)


def add_metrics_route(app: Routes, metrics: Metrics) -> None:
    """``GET /metrics`` on the admin app."""

    async def scrape(_req: Request) -> Response:
        return Response(200, await metrics.scrape(), [("content-type", CONTENT_TYPE)])

    app.route("GET", "/metrics", scrape)
