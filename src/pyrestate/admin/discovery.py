"""Discovery: ``GET {uri}/discover`` on a deployment, checked the way the official does.

The request carries the same ``accept`` list as the official server (manifest versions
1 to 4), the deployment's additional headers and the cluster name. Transient failures
(connection errors, 408/429/5xx answers) are retried a few times with exponential
backoff, about 1.5 s in total, like the official. Every failure becomes an `AdminError`
with the official status (500), ``restate_code`` and message; coded discovery errors
carry the code twice in the message, as the official prints them.

A deployment is not trusted: the whole discovery, retries included, ends after
``timeout`` seconds, a response over ``max_body`` bytes is refused, and errors quote at
most `EXCERPT_CHARS` characters of what it answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Literal

from pyrestate.admin.errors import AdminError
from pyrestate.admin.manifest import ManifestError, decode_manifest
from pyrestate.admin.model import (
    SUPPORTED_PROTOCOL_VERSIONS,
    DiscoveredEndpoint,
    HttpVersion,
    normalize_uri,
    protocol_versions_acceptable,
)
from pyrestate.identity import RequestSigner
from pyrestate.invoker.transport import (
    Response,
    ResponseTooLarge,
    Transport,
    TransportError,
    open_transport,
)
from pyrestate.official_format import rust_debug_str

MANIFEST_CONTENT_TYPES = {
    f"application/vnd.restate.endpointmanifest.v{n}+json": n for n in (1, 2, 3, 4)
}
ACCEPT = ", ".join(MANIFEST_CONTENT_TYPES)
# Total about 1.5 s, as the official (exponential from 100 ms, 4 retries).
RETRY_DELAYS = (0.1, 0.2, 0.4, 0.8)
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_MAX_I32 = 2**31 - 1
# Real manifests are kilobytes; this leaves room for huge JSON schemas.
MAX_DISCOVERY_BODY = 10 * 1024 * 1024
# How much of a deployment's answer an error message quotes.
EXCERPT_CHARS = 512
# Old TypeScript SDKs announced a wrong maximum; the official pins it to 1 for them.
_BROKEN_TS_SDKS = ("restate-sdk-typescript/1.0.", "restate-sdk-typescript/1.1.")
_BROKEN_TS_SDKS += ("restate-sdk-typescript/1.2.",)

TransportFactory = Callable[[str, Literal["HTTP/2.0", "HTTP/1.1"]], Transport]


def discovery_error(code: str | None, message: str) -> AdminError:
    # The official wraps an already code-prefixed error and prefixes it again.
    if code is None:
        return AdminError(500, message)
    return AdminError(500, f"[{code}] [{code}] {message}", code)


class _Retryable(Exception):
    def __init__(self, error: AdminError) -> None:
        self.error = error


def _headers_debug(headers: Mapping[str, str]) -> str:
    fields = (f"{rust_debug_str(k)}: {rust_debug_str(v)}" for k, v in headers.items())
    return "{" + ", ".join(fields) + "}"


def _excerpt(body: bytes) -> str:
    text = body[: EXCERPT_CHARS * 4].decode("utf-8", "replace")
    if len(text) <= EXCERPT_CHARS and len(body) <= EXCERPT_CHARS * 4:
        return text
    return f"{text[:EXCERPT_CHARS]}… ({len(body)} bytes in all)"


def _status_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} <unknown status code>"


def _transport_error(exc: TransportError, uri: str, http_version: HttpVersion) -> AdminError:
    text = str(exc)
    if text.startswith("connection refused"):
        # The wording the official client uses for the most common failure.
        if http_version == "HTTP/2.0":
            detail = "h2 pool connection error: Connection refused (os error 111)"
        else:
            detail = (
                "unable to reach the remote endpoint.\nReason: client error (Connect) caused "
                "by: tcp connect error caused by: Connection refused (os error 111)"
            )
        return discovery_error("META0003", f"error when calling '{uri}': {detail}")
    if http_version == "HTTP/2.0" and _looks_http1_only(text):
        return discovery_error(
            "META0014",
            f"error when calling '{uri}': server possibly supports only HTTP1.1, "
            "consider discovery with --use-http1.1.",
        )
    return discovery_error("META0003", f"error when calling '{uri}': {text}")


def _looks_http1_only(text: str) -> bool:
    # An HTTP/1.x server answers the h2c preface with an HTTP/1 response (h2 sees a bad
    # frame) or just hangs up before any SETTINGS frame.
    lowered = text.lower()
    return lowered.startswith("cannot connect to") and (
        "protocol error" in lowered or " lost" in lowered or "closed" in lowered
    )


def _check_response(resp: Response) -> None:
    if 200 <= resp.status < 300:
        return
    body = _excerpt(resp.body)
    if resp.status == 404:
        raise discovery_error(
            "META0003",
            "got status code '404'. Make sure the provided URI has the correct path where the "
            f"Restate SDK endpoint is mounted. Response headers: {_headers_debug(resp.headers)}. "
            f"Body: {body}",
        )
    error = discovery_error(
        "META0003",
        f"got status code '{_status_text(resp.status)}'. Response headers: "
        f"{_headers_debug(resp.headers)}. Body: {body}",
    )
    if resp.status in _RETRYABLE_STATUS:
        raise _Retryable(error)
    raise error


def parse_discovery_response(resp: Response, http_version: HttpVersion) -> DiscoveredEndpoint:
    """Check a successful discovery answer and turn it into a `DiscoveredEndpoint`."""
    expected = ", ".join(MANIFEST_CONTENT_TYPES)
    content_type = resp.headers.get("content-type")
    if content_type is None:
        raise discovery_error(
            "META0013",
            "received a bad response from the SDK: No content type header was specified. "
            f"Expected one of '\"{expected}\"' content type.",
        )
    if content_type not in MANIFEST_CONTENT_TYPES:
        raise discovery_error(
            "META0013",
            f"received a bad response from the SDK: Bad content type header: "
            f"{rust_debug_str(content_type)}. Expected one of '\"{expected}\"'",
        )
    try:
        manifest = decode_manifest(resp.body)
    except ManifestError as e:
        raise discovery_error(
            None,
            f"received a bad response from the SDK that cannot be decoded: {e}. "
            f"Discovery response: {_excerpt(resp.body)}",
        ) from None

    def bad(reason: str) -> AdminError:
        return discovery_error("META0013", f"received a bad response from the SDK: {reason}")

    mode = manifest.get("protocolMode")
    if mode is None:
        raise bad("missing protocol mode")
    lo, hi = manifest["minProtocolVersion"], manifest["maxProtocolVersion"]
    if lo > _MAX_I32:
        raise bad(f"min protocol version must be in [1, {_MAX_I32}]")
    if hi > _MAX_I32:
        raise bad(f"max protocol version must be in [1, {_MAX_I32}]")
    if lo > hi:
        raise bad(
            "Expected min protocol version to be <= max protocol version. Received min "
            f"protocol version '{lo}', max protocol version '{hi}'"
        )
    sdk_version = resp.headers.get("x-restate-server")
    if sdk_version is not None and sdk_version.startswith(_BROKEN_TS_SDKS):
        hi = 1
    if not protocol_versions_acceptable(lo, hi):
        supported = SUPPORTED_PROTOCOL_VERSIONS
        raise discovery_error(
            "META0012",
            f"unsupported service protocol versions: [{lo}, {hi}]. Supported versions by this "
            f"runtime are [{supported[0]}, {supported[-1]}]. Please upgrade the SDK and try "
            "registering again.",
        )
    return DiscoveredEndpoint(
        protocol_type="BidiStream" if mode == "BIDI_STREAM" else "RequestResponse",
        http_version=http_version,
        min_protocol_version=lo,
        max_protocol_version=hi,
        services=tuple(manifest["services"]),
        sdk_version=sdk_version,
    )


async def discover(
    uri: str,
    *,
    use_http_11: bool = False,
    additional_headers: Mapping[str, str] | None = None,
    transport_factory: TransportFactory = open_transport,
    retry_delays: Sequence[float] = RETRY_DELAYS,
    timeout: float = 30.0,
    cluster_name: str = "localcluster",
    signer: RequestSigner | None = None,
    max_body: int = MAX_DISCOVERY_BODY,
) -> DiscoveredEndpoint:
    """Discover the deployment at ``uri``; raises AdminError like the official server.

    HTTP/2 with prior knowledge unless ``use_http_11``; the version used is what the
    deployment will be invoked with. ``timeout`` bounds the whole discovery.
    """
    http_version: HttpVersion = "HTTP/1.1" if use_http_11 else "HTTP/2.0"
    shown = normalize_uri(uri)
    headers = [("accept", ACCEPT)]
    headers += [(k.lower(), v) for k, v in (additional_headers or {}).items()]
    headers.append(("x-restate-cluster-name", cluster_name))
    if signer is not None:
        headers += signer.headers("/discover")
    try:
        transport = transport_factory(uri, http_version)
    except TransportError as e:
        raise discovery_error("META0003", f"error when calling '{shown}': {e}") from None
    try:
        async with asyncio.timeout(timeout):
            return await _attempts(
                transport, headers, shown, http_version, retry_delays, timeout, max_body
            )
    except TimeoutError:
        raise discovery_error(
            "META0003", f"error when calling '{shown}': no complete answer within {timeout}s"
        ) from None
    finally:
        await transport.aclose()


async def _attempts(
    transport: Transport,
    headers: list[tuple[str, str]],
    shown: str,
    http_version: HttpVersion,
    retry_delays: Sequence[float],
    timeout: float,
    max_body: int,
) -> DiscoveredEndpoint:
    delays = iter(retry_delays)
    while True:
        try:
            try:
                resp = await transport.request(
                    "GET", "/discover", headers, timeout=timeout, max_body=max_body
                )
            except ResponseTooLarge as e:
                raise discovery_error(
                    "META0003", f"error when calling '{shown}': the discovery response: {e}"
                ) from None
            except TransportError as e:
                error = _transport_error(e, shown, http_version)
                if error.restate_code == "META0014":
                    raise error from None
                raise _Retryable(error) from None
            _check_response(resp)
            return parse_discovery_response(resp, http_version)
        except _Retryable as r:
            delay = next(delays, None)
            if delay is None:
                raise r.error from None
            await asyncio.sleep(delay)
