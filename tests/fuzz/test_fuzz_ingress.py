"""Ingress fuzz (:8080): random paths, methods, headers, bodies and query strings.

Requests go out as raw bytes, so that odd bytes in paths and malformed HTTP are possible
too. A well-formed request must get an answer in time and never a 5xx of the server's
own making (a handler's failure, `x-restate-error-source: invocation`, is fine); nothing
may log a traceback; and after every batch the server must still serve the Greeter.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import string
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from fuzzkit import (
    REQUEST_TIMEOUT,
    Findings,
    budget,
    case_rng,
    exchange,
    http_request,
    running_target,
    shorten,
)

from pyrestate.core.ids import IdError, InvocationId

PART = "ingress"
SHARE = 0.35
BATCH = 25
U32 = 2**32 - 1

DELAYS = (
    "200000000000d",
    "1e400s",
    "-1s",
    "1.5s",
    "0",
    "0s",
    "",
    "9" * 400 + "s",
    "1" + "0" * 309 + "ms",
    "PT1H",
    "P99999999999999D",
    "PT-1S",
    "1d 1d 1d",
    "nan s",
    "inf s",
    "10 s",
    "0.0000001ns",
    "P",
    "PT",
    "1x",
    "%00",
    "1" + "s" * 1000,
    f"{2**64}ms",
    "292471209y",
    "PT0.5S",
    "1h,2m",
    "99999999999999999999999w",
    "P1DT",
    "0.000000000000000000001s",
    "1" * 5000 + "ms",
)
SERVICES = ("Greeter", "Visits", "greeter", "Nope", "", "restate", "Gr%65eter", "%00")
HANDLERS = ("greet", "visit", "Greet", "", "send", "%67reet", "nope")
CONTENT_TYPES = (
    b"application/json",
    b"",
    b"text/plain",
    b"application/json; charset=utf-8",
    b"application/octet-stream",
    b"application/json;;;",
    b"*/*",
    b"APPLICATION/JSON",
    b"application/json, text/plain",
    b"a" * 10_000,
    b"\xe9\xff",
)
METHODS = (
    (b"POST", 55),
    (b"GET", 15),
    (b"PUT", 5),
    (b"DELETE", 5),
    (b"PATCH", 5),
    (b"HEAD", 5),
    (b"OPTIONS", 3),
    (b"TRACE", 2),
    (b"FOO", 2),
    (b"post", 2),
)
_B62 = string.digits + string.ascii_letters


@dataclass(frozen=True, slots=True)
class Request:
    kind: str  # which template, for grouping failures
    data: bytes
    well_formed: bool  # valid HTTP/1.1: the server owes an answer
    # A send without delay or idempotency key: its id is safe to attach to later.
    quick_send: bool = False

    @property
    def label(self) -> str:
        return f"{self.kind}: {shorten(self.data, 600)}"


# --- path pieces


def _odd_segment(rng: random.Random) -> tuple[bytes, bool]:
    """A path segment with odd content; False when it is not valid in a request line."""
    pick = rng.randrange(12)
    if pick == 0:
        return "".join(f"%{b:02X}" for b in rng.randbytes(rng.randrange(1, 40))).encode(), True
    options: tuple[bytes, ...] = (
        b"",
        "ключ-🙂".encode(),
        b"%00",
        b"%2F..%2F",
        b"%",
        b"%G1%ZZ",
        b"%C3%28",
        b"..",
        b"a" * rng.choice((256, 8192, 100_000)),
        b"+%20",
    )
    if pick <= len(options):
        return options[pick - 1], True
    return b"\xff\xfe" + rng.randbytes(3), False


def _inv_id(rng: random.Random, known: list[str]) -> bytes:
    r = rng.random()
    if known and r < 0.4:
        return rng.choice(known).encode()
    if r < 0.7:
        return ("inv_1" + "".join(rng.choices(_B62, k=33))).encode()
    return rng.choice(
        (
            b"inv_",
            b"inv_1",
            b"inv_2" + b"0" * 33,
            b"inv_1" + b"!" * 33,
            b"inv_1" + b"0" * 1000,
            b"inv_1" + b"z" * 33,
            b"inv_1" + b"Z" * 33,
            b"x",
        )
    )


def _awakeable_id(rng: random.Random, known: list[str]) -> bytes:
    prefix = rng.choice((b"sign_1", b"sign_1", b"prom_1", b"sign_2", b"sign_", b"xyz_1"))
    raw = rng.randbytes(24)
    if known and rng.random() < 0.5:
        with contextlib.suppress(IdError):
            raw = InvocationId.parse(rng.choice(known)).to_bytes()
    index = rng.choice((0, 1, 2**31, U32)).to_bytes(4, "big")
    payload = (raw + index)[: rng.choice((28, 28, 27, 5))] + rng.choice((b"", b"\x00" * 8))
    return prefix + base64.urlsafe_b64encode(payload).rstrip(b"=")


def _path(rng: random.Random, known: list[str]) -> tuple[str, bytes, bool, bool]:
    """(template, path, valid in a request line, is a send)."""
    svc = rng.choice(SERVICES).encode()
    handler = rng.choice(HANDLERS).encode()
    key, clean = _odd_segment(rng)
    send = rng.random() < 0.4
    tail = [b"send"] if send else []
    inv = _inv_id(rng, known)
    templates: list[tuple[str, list[bytes]]] = [
        ("service call", [svc, handler, *tail]),
        ("object call", [svc, key, handler, *tail]),
        ("restate/call", [b"restate", b"call", svc, key, handler]),
        ("restate/send", [b"restate", b"send", svc, handler]),
        ("invocation", [b"restate", b"invocation", inv, rng.choice((b"attach", b"output"))]),
        ("invocation", [b"restate", b"invocation", inv, key]),
        ("idempotent", [b"restate", b"invocation", svc, handler, key, b"output"]),
        ("idempotent", [b"restate", b"invocation", svc, key, handler, key, b"attach"]),
        ("workflow", [b"restate", b"workflow", svc, key, rng.choice((b"attach", b"output"))]),
        (
            "awakeable",
            [
                b"restate",
                b"awakeables",
                _awakeable_id(rng, known),
                rng.choice((b"resolve", b"reject", key)),
            ],
        ),
        ("awakeable", [b"restate", b"awakeables", key]),
        ("health", [b"restate", b"health"]),
        ("misc", [b"restate"]),
        ("misc", [b""]),
        ("misc", [key] * rng.randrange(1, 7)),
    ]
    kind, segments = rng.choice(templates)
    path = b"/" + b"/".join(segments)
    if rng.random() < 0.05:
        path = path.replace(b"/", b"//")
    return kind, path, clean, send and kind in ("service call", "object call")


def _query(rng: random.Random) -> tuple[bytes, bool]:
    """(query string, has a delay)."""
    r = rng.random()
    if r < 0.5:
        return b"", False
    if r < 0.8:
        return b"?delay=" + quote(rng.choice(DELAYS), safe="").encode(), True
    return (
        rng.choice(
            (
                b"?delay=1s&delay=bogus",
                b"?delay",
                b"?=",
                b"?%ZZ=1",
                b"?&&&",
                b"?delay=%FF%FE",
                b"?" + b"a" * 100_000,
                b"?x=1#frag",
            )
        ),
        True,
    )


def _body(rng: random.Random) -> bytes:
    pick = rng.randrange(14)
    if pick == 0:
        return rng.randbytes(rng.randrange(1, 4096))
    if pick == 1:
        # Huge-ish now and then: 1 to 4 MiB, under the 32 MiB limit.
        return rng.randbytes(1024) * rng.randrange(1024, 4096) if rng.random() < 0.25 else b""
    if pick == 2:
        return json.dumps("".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(20))).encode()
    return (
        b"",
        b'"Ada"',
        b'"Ada"',
        b"{",
        b"\xff\xfe",
        b"1e400",
        b"[" * 100_000,
        b"\x00" * 100,
        b'{"a":' * 1000,
        b"9" * 5000,
        b"null",
    )[pick - 3]


def _headers(
    rng: random.Random, index: int, is_send: bool
) -> tuple[list[tuple[bytes, bytes]], bool]:
    """(headers, valid HTTP)."""
    h: list[tuple[bytes, bytes]] = []
    valid = True
    if rng.random() < 0.8:
        h.append((b"content-type", rng.choice(CONTENT_TYPES)))
    if rng.random() < 0.1:
        h.append((b"content-type", rng.choice(CONTENT_TYPES)))
    if rng.random() < 0.3:
        value = rng.choice((b"", b"k", b" spaced ", b"a" * 100_000, b"\xe9\xff\xfe", b"idem"))
        if is_send and rng.random() < 0.5:
            value = b"pool-%d" % rng.randrange(5)
        elif value:
            # A call must not share a key with a delayed send: it would wait for it.
            value = b"call-%d-" % index + value
        h.append((b"idempotency-key", value))
        if rng.random() < 0.15:
            h.append((b"idempotency-key", b"other-%d" % index))
    if rng.random() < 0.05:
        h.append((b"x-fuzz-big", b"a" * rng.choice((65_536, 1 << 20))))
    if rng.random() < 0.05:
        h += [(b"x-f%d" % n, b"v") for n in range(300)]
    if rng.random() < 0.05:
        h.append((b"expect", b"100-continue"))
    if rng.random() < 0.1:
        h.append(
            rng.choice(
                (
                    (b"traceparent", b"00-zz-zz-99"),
                    (b"x-restate-id", b"inv_1x"),
                    (b"x-\xe9", b"\xe9"),
                )
            )
        )
    if rng.random() < 0.03:
        h.append((b"x-ctl", b"a\x01b"))
        valid = False
    return h, valid


def _delay_request(index: int) -> Request:
    """The listed delays on a valid send, always run first."""
    delay = quote(DELAYS[index % len(DELAYS)], safe="").encode()
    path = b"/Greeter/greet/send" if index < len(DELAYS) else b"/Visits/k/visit/send"
    data = http_request(
        b"POST", path + b"?delay=" + delay, [(b"content-type", b"application/json")], b'"Ada"'
    )
    return Request("send with delay", data, True)


def _malformed(rng: random.Random) -> Request:
    ok_head = b"POST /Greeter/greet HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    data = rng.choice(
        (
            rng.randbytes(rng.randrange(1, 2000)),
            b"GET /\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"POST /Greeter/greet HTTP/1.0\r\n\r\n",
            ok_head + b"no-colon-here\r\n\r\n",
            ok_head + b' folded: continuation\r\ncontent-length: 5\r\n\r\n"Ada"',
            ok_head + b'content-length: -1\r\n\r\n"Ada"',
            ok_head + b'content-length: 1180591620717411303424\r\n\r\n"Ada"',
            ok_head + b'content-length: abc\r\n\r\n"Ada"',
            ok_head + b'content-length: 5\r\ncontent-length: 6\r\n\r\n"Ada"',
            ok_head
            + b'content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\n"Ada"\r\n0\r\n\r\n',
            ok_head + b'transfer-encoding: chunked\r\n\r\nzz\r\n"Ada"\r\n0\r\n\r\n',
            ok_head + b'transfer-encoding: chunked\r\n\r\nffffffffffffffff\r\n"Ada"\r\n',
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + rng.randbytes(64),
            ok_head + b"x-never: ending",
            ok_head + b"content-length: 100\r\n\r\n0123456789",
            b"POST /Greeter/gr\x00eet HTTP/1.1\r\nhost: x\r\n\r\n",
            b"POST /Visits/\xff\xfe\x80/visit HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
            ok_head + b"bad name: x\r\n\r\n",
            b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\nhost: x\r\n\r\n",
            (ok_head + b'content-length: 5\r\n\r\n"Ada"') * 2,
        )
    )
    return Request("malformed HTTP", data, False)


def make_request(index: int, rng: random.Random, known: list[str]) -> Request:
    if index < 2 * len(DELAYS):
        return _delay_request(index)
    if rng.random() < 0.12:
        return _malformed(rng)
    method = rng.choices([m for m, _ in METHODS], [w for _, w in METHODS])[0]
    kind, path, clean, is_send = _path(rng, known)
    query, has_delay = _query(rng)
    headers, valid = _headers(rng, index, is_send)
    body = _body(rng)
    chunked = rng.random() < 0.05
    if chunked:
        headers.append((b"transfer-encoding", b"chunked"))
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    data = http_request(method, path + query, headers, body, content_length=not chunked)
    quick = is_send and not has_delay and all(k != b"idempotency-key" for k, _ in headers)
    return Request(kind, data, clean and valid and method != b"CONNECT", quick_send=quick)


def _check_reply(findings: Findings, req: Request, port: int) -> str | None:
    """Send one request, record what is wrong with its answer; the id of a quick send."""
    reply = exchange(port, req.data, half_close=not req.well_formed)
    if req.well_formed and reply.timed_out:
        findings.add(
            "hang", f"no answer within {REQUEST_TIMEOUT:g}s to a {req.kind}", req.label, ""
        )
        return None
    if req.well_formed and reply.status is None:
        findings.add(
            "no answer",
            f"connection closed without an answer to a {req.kind}",
            req.label,
            f"error: {reply.error}; received: {shorten(reply.body)}",
        )
        return None
    status = reply.status or 0
    if status >= 500 and reply.headers.get("x-restate-error-source") != "invocation":
        text = reply.body.decode("utf-8", "replace")
        findings.add(f"HTTP {status}", f"{req.kind}: {shorten(text, 160)}", req.label, text)
    if req.quick_send and status == 202:
        try:
            return json.loads(reply.body)["invocationId"]
        except (ValueError, KeyError, TypeError):
            return None
    return None


def test_ingress_fuzz(tmp_path: Path, seed: int) -> None:
    findings = Findings(seed, PART)
    known: list[str] = []  # ids of finished sends, to attach to and signal
    with running_target(tmp_path, findings) as target:
        end = time.monotonic() + budget(SHARE)
        index = 0
        previous = "(none)"
        while time.monotonic() < end:
            labels = []
            for _ in range(BATCH):
                req = make_request(index, case_rng(seed, PART, index), known)
                labels.append(shorten(req.label, 160))
                inv_id = _check_reply(findings, req, target.ingress_port)
                if inv_id is not None and len(known) < 50:
                    known.append(inv_id)
                # uvicorn may log a moment after answering: name the previous request too.
                target.observe(f"{req.label}\n    (or the one before: {previous})")
                previous = shorten(req.label, 300)
                index += 1
            target.check(f"ingress requests {index - BATCH}..{index - 1}: " + " | ".join(labels))
    assert not findings, findings.report()
