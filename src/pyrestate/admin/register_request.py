"""The body of ``POST /deployments``, checked the way the official server types it.

Officially it is an untagged enum of an HTTP variant (``uri``) and a Lambda variant
(``arn``): anything that fits neither is one 422 with the same message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyrestate.admin.errors import AdminError
from pyrestate.admin.payload_rules import HEADER_VALUE
from pyrestate.admin.web import PlainError


@dataclass(slots=True)
class RegisterRequest:
    uri: str
    additional_headers: dict[str, str]
    metadata: dict[str, str]
    use_http_11: bool
    breaking: bool
    force: bool | None
    dry_run: bool
    auth: bool  # whether it asks for per-deployment authentication


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
URI_BAD_CHARS = re.compile(r'[\x00-\x20\x7f"<>\\^`{|}]')
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_UNTAGGED = (
    "Failed to deserialize the JSON body into the target type: "
    "data did not match any variant of untagged enum RegisterDeploymentRequest"
)


def uri_problem(uri: str) -> str | None:
    """'invalid' if the official URI parser refuses it, 'relative' if not absolute."""
    if not uri or URI_BAD_CHARS.search(uri):
        return "invalid"
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return "relative"
    if not _SCHEME.fullmatch(scheme) or len(scheme) > 64:
        return "invalid"
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if not authority:
        return "invalid"
    host_port = authority.rpartition("@")[2]
    port = host_port.rpartition("]")[2].rpartition(":")
    if port[1] and port[2] and (not port[2].isdigit() or int(port[2]) > 65535):
        return "invalid"
    return None


def invalid_field(name: str, reason: str) -> AdminError:
    return AdminError(400, f"The request field '{name}' is invalid. Reason: {reason}")


def _valid_headers(headers: Any) -> bool:
    return isinstance(headers, dict) and all(
        isinstance(v, str) and _TOKEN.fullmatch(k) and HEADER_VALUE.fullmatch(v)
        for k, v in headers.items()
    )


def _http_variant(d: Mapping[str, Any]) -> RegisterRequest | None:
    uri = d.get("uri")
    if not isinstance(uri, str) or uri_problem(uri) == "invalid":
        return None
    headers = d.get("additional_headers")
    if headers is not None and not _valid_headers(headers):
        return None
    metadata = d.get("metadata", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        return None
    flags = {name: d.get(name, False) for name in ("use_http_11", "breaking", "dry_run")}
    if not all(isinstance(flag, bool) for flag in flags.values()):
        return None
    force = d.get("force")
    if force is not None and not isinstance(force, bool):
        return None
    return RegisterRequest(
        uri=uri,
        additional_headers=dict(headers or {}),
        metadata=dict(metadata),
        force=force,
        auth=d.get("auth") is not None,
        **flags,
    )


def parse_register_request(value: Any) -> RegisterRequest | Mapping[str, Any]:
    """The HTTP variant, or the raw Lambda variant (``arn``); PlainError 422 otherwise."""
    if isinstance(value, dict):
        http = _http_variant(value)
        if http is not None:
            return http
        arn = value.get("arn")
        assume = value.get("assume_role_arn")
        headers = value.get("additional_headers")
        if (
            isinstance(arn, str)
            and (assume is None or isinstance(assume, str))
            and (headers is None or _valid_headers(headers))
        ):
            return value
    raise PlainError(422, _UNTAGGED)
