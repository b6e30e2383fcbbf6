"""The Kafka admin API: ``/kafka-clusters`` and ``/subscriptions``, as the official
server 1.7.12 answers them (see docs/official-1.7.12-probe-kafka.md).

Bodies are typed here (422 text/plain for what does not fit, as the official framework
answers) and bounded (400); the rules about clusters and subscriptions are the
`Catalog`'s. Secrets in properties and options are never shown.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote

from pyrestate.admin.errors import AdminError
from pyrestate.admin.ids import subscription_id_error
from pyrestate.admin.manifest import shown
from pyrestate.admin.register_request import URI_BAD_CHARS, uri_problem
from pyrestate.admin.registry import Registry
from pyrestate.admin.web import PlainError, Request, Response, json_response, read_json_body
from pyrestate.official_format import format_timestamp
from pyrestate.subscriptions.catalog import Catalog
from pyrestate.subscriptions.kafka_options import redacted
from pyrestate.subscriptions.model import STATIC_CLUSTER_INFO, KafkaCluster, Subscription

Handler = Callable[[Request], Awaitable[Response]]

MAX_URI = 4096
MAX_NAME = 256
MAX_OPTIONS = 256
MAX_OPTION_TEXT = 4096
_STATIC_CREATED_AT = "1970-01-01T00:00:00Z"
_SEGMENT_SAFE = "!$&'()*+,;=:@"


class Routes(Protocol):
    def route(self, method: str, path: str, handler: Handler) -> None: ...


class RegistryHolder(Protocol):
    current: Registry


def add_subscription_routes(app: Routes, catalog: Catalog, registry: RegistryHolder) -> None:
    api = _KafkaAdmin(catalog, registry)
    app.route("GET", "/kafka-clusters", api.list_clusters)
    app.route("POST", "/kafka-clusters", api.create_cluster)
    app.route("GET", "/kafka-clusters/{cluster_name}", api.get_cluster)
    app.route("PATCH", "/kafka-clusters/{cluster_name}", api.update_cluster)
    app.route("DELETE", "/kafka-clusters/{cluster_name}", api.delete_cluster)
    app.route("GET", "/subscriptions", api.list_subscriptions)
    app.route("POST", "/subscriptions", api.create_subscription)
    app.route("GET", "/subscriptions/{subscription}", api.get_subscription)
    app.route("DELETE", "/subscriptions/{subscription}", api.delete_subscription)


# --- rendering


def render_cluster(
    cluster: KafkaCluster, subscriptions: list[Subscription] | None = None
) -> dict[str, Any]:
    """A cluster; ``subscriptions`` only in the answer to ``GET /kafka-clusters/{name}``."""
    out: dict[str, Any] = {
        "name": cluster.name,
        "properties": redacted(cluster.properties),
        "created_at": (
            _STATIC_CREATED_AT if cluster.static else format_timestamp(cluster.created_at)
        ),
    }
    if subscriptions is not None:
        out["subscriptions"] = [render_subscription(s) for s in subscriptions]
    if cluster.static:
        out["info"] = [{"message": STATIC_CLUSTER_INFO}]
    return out


def render_subscription(sub: Subscription) -> dict[str, Any]:
    return {"id": sub.id, "source": sub.source, "sink": sub.sink, "options": redacted(sub.options)}


# --- request bodies


def _refuse(reason: str) -> PlainError:
    return PlainError(422, f"Failed to deserialize the JSON body into the target type: {reason}")


def _field(body: Mapping[str, Any], name: str, kind: type, expected: str) -> Any:
    value = body.get(name)
    if value is None:
        raise _refuse(f"missing field `{name}`")
    if not isinstance(value, kind):
        raise _refuse(f"{name}: invalid type: {shown(value)}, expected {expected}")
    return value


def _string_map(name: str, value: dict[str, Any]) -> dict[str, str]:
    for key, item in value.items():
        if not isinstance(item, str):
            raise _refuse(
                f"{name}.{json.dumps(key)}: invalid type: {shown(item)}, expected a string"
            )
    if len(value) > MAX_OPTIONS:
        raise AdminError(400, f"at most {MAX_OPTIONS} {name} are allowed, not {len(value)}")
    for key, item in value.items():
        if len(key) > MAX_OPTION_TEXT or len(item) > MAX_OPTION_TEXT:
            raise AdminError(
                400,
                f"{name}: '{key[:64]}' is too long: names and values have at most "
                f"{MAX_OPTION_TEXT} characters",
            )
    return value


def _properties(body: Mapping[str, Any]) -> dict[str, str]:
    return _string_map("properties", _field(body, "properties", dict, "a map"))


def parse_cluster_request(value: Any) -> tuple[str, dict[str, str]]:
    """(name, properties) of a ``POST /kafka-clusters`` body."""
    if not isinstance(value, dict):
        raise _refuse("invalid type: expected struct CreateKafkaClusterRequest")
    name = _field(value, "name", str, "a string")
    properties = _properties(value)
    if not name or len(name) > MAX_NAME:
        raise AdminError(400, f"a Kafka cluster name has 1 to {MAX_NAME} characters")
    return name, properties


def parse_cluster_update(value: Any) -> dict[str, str]:
    """The properties of a ``PATCH /kafka-clusters/{name}`` body."""
    if not isinstance(value, dict):
        raise _refuse("invalid type: expected struct UpdateKafkaClusterRequest")
    return _properties(value)


def _uri(body: Mapping[str, Any], name: str) -> str:
    uri: str = _field(body, name, str, "a string")
    # The official types these as URIs: what cannot be one is refused as a bad body.
    if not uri.isascii() or URI_BAD_CHARS.search(uri):
        raise _refuse(f"{name}: invalid uri character")
    if uri_problem(uri) == "invalid":
        raise _refuse(f"{name}: invalid format")
    if len(uri) > MAX_URI:
        raise AdminError(400, f"the {name} URI is longer than {MAX_URI} characters")
    return uri


def parse_subscription_request(value: Any) -> tuple[str, str, dict[str, str]]:
    """(source, sink, options) of a ``POST /subscriptions`` body."""
    if not isinstance(value, dict):
        raise _refuse("invalid type: expected struct CreateSubscriptionRequest")
    source = _uri(value, "source")
    sink = _uri(value, "sink")
    options = value.get("options")
    if options is None:
        return source, sink, {}
    if not isinstance(options, dict):
        raise _refuse(f"options: invalid type: {shown(options)}, expected a map")
    return source, sink, _string_map("options", options)


# --- query strings


def _flag(req: Request, name: str) -> bool:
    found = False
    for key, value in req.query:
        if key == name:
            if value not in ("true", "false"):
                raise PlainError(
                    400,
                    f"Failed to deserialize query string: {name}: provided string was not "
                    "`true` or `false`",
                )
            found = value == "true"
    return found


def _subscription_id(req: Request) -> str:
    value = req.params["subscription"]
    problem = subscription_id_error(value)
    if problem is not None:
        raise PlainError(
            400, f"Invalid URL: Cannot parse `subscription` with value `{value}`: {problem}"
        )
    return value


# --- handlers


class _KafkaAdmin:
    def __init__(self, catalog: Catalog, registry: RegistryHolder) -> None:
        self._catalog = catalog
        self._registry = registry

    async def list_clusters(self, req: Request) -> Response:
        clusters = [render_cluster(c) for c in self._catalog.clusters()]
        return json_response(200, {"clusters": clusters})

    async def create_cluster(self, req: Request) -> Response:
        name, properties = read_json_body(req, parse_cluster_request)
        cluster = await self._catalog.create_cluster(name, properties)
        # Percent-encoded as a path segment: a name is free text (as officially).
        location = f"kafka-clusters/{quote(name, safe=_SEGMENT_SAFE)}"
        return json_response(201, render_cluster(cluster), [("location", location)])

    async def get_cluster(self, req: Request) -> Response:
        name = req.params["cluster_name"]
        include = _flag(req, "include_subscriptions")
        cluster = self._catalog.cluster(name)
        if cluster is None:
            raise AdminError(404, f"The requested Kafka cluster '{name}' does not exist")
        subscriptions = [s for s in self._catalog.subscriptions() if s.cluster == name]
        return json_response(200, render_cluster(cluster, subscriptions if include else []))

    async def update_cluster(self, req: Request) -> Response:
        properties = read_json_body(req, parse_cluster_update)
        cluster = await self._catalog.update_cluster(req.params["cluster_name"], properties)
        return json_response(200, render_cluster(cluster))

    async def delete_cluster(self, req: Request) -> Response:
        force = _flag(req, "force")
        await self._catalog.delete_cluster(req.params["cluster_name"], force=force)
        return Response(202)

    async def list_subscriptions(self, req: Request) -> Response:
        filters = [(k, v) for k, v in req.query if k in ("sink", "source")]
        found = [
            render_subscription(s)
            for s in self._catalog.subscriptions()
            if all(getattr(s, k) == v for k, v in filters)
        ]
        return json_response(200, {"subscriptions": found})

    async def create_subscription(self, req: Request) -> Response:
        source, sink, options = read_json_body(req, parse_subscription_request)
        sub = await self._catalog.create_subscription(
            source, sink, options, sink_exists=self._sink_exists
        )
        return json_response(
            201, render_subscription(sub), [("location", f"subscriptions/{sub.id}")]
        )

    async def get_subscription(self, req: Request) -> Response:
        sub_id = _subscription_id(req)
        sub = self._catalog.subscription(sub_id)
        if sub is None:
            raise AdminError(404, f"The requested subscription '{sub_id}' does not exist")
        return json_response(200, render_subscription(sub))

    async def delete_subscription(self, req: Request) -> Response:
        await self._catalog.delete_subscription(_subscription_id(req))
        return Response(202)

    def _sink_exists(self, service: str, handler: str) -> bool:
        try:
            self._registry.current.resolve(service, handler)
        except LookupError:
            return False
        return True
